package instances

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pollhook/pollhook/api"
	"github.com/pollhook/pollhook/connectors"
	"github.com/pollhook/pollhook/internal/jsondepth"
	"github.com/pollhook/pollhook/pollers"
)

// FieldError is one problem of a create or PATCH body: Field is its path in
// the body ("name", "element.key", "configuration.event.poller.refresh_interval",
// "configuration.event.poller.configuration.contacts.idField"; "" for the body
// itself) and Message says what is wrong in plain words. It is the api
// package's type, so a []FieldError goes straight into api.Invalid.
type FieldError = api.FieldError

// Configuration keys pollhook interprets. Every other key is stored as sent.
const (
	KeyEventsEnabled   = "event.notification.enabled"
	KeyCallbackURL     = "event.notification.callback.url"
	KeyBatchSize       = "event.notification.batch_size"
	KeySignatureKey    = "event.notification.signature.key"
	KeyRefreshInterval = "event.poller.refresh_interval"
	KeyPollerConfig    = "event.poller.configuration"
	KeyPollerURLs      = "event.poller.urls"
	KeyBaseURL         = "base.url"
	KeyEnvironment     = "environment"
)

// Defaults of the derived fields.
const (
	// DefaultRefreshInterval applies when event.poller.refresh_interval is
	// absent or "". ParseCreate and ApplyPatch raise it to
	// Rules.MinRefreshInterval when that is higher; Derive, which does not
	// know the minimum, leaves it at 15 minutes, so a scheduler must still
	// use max(RefreshInterval, minimum).
	DefaultRefreshInterval = 15 * time.Minute
	// DefaultBatchSize applies when event.notification.batch_size is absent.
	DefaultBatchSize = 10
	// MaxBatchSize is the largest event.notification.batch_size.
	MaxBatchSize = 100
	// maxRefreshMinutes bounds event.poller.refresh_interval: one year.
	maxRefreshMinutes = 365 * 24 * 60
)

const configPrefix = "configuration."

// Rules are the server settings that validation depends on.
type Rules struct {
	// Registry holds the connector definitions; element.key must name one.
	Registry *connectors.Registry
	// MinRefreshInterval is --min-refresh-interval; 0 means no minimum.
	MinRefreshInterval time.Duration
	// CheckCallback, when not nil, vets a syntactically valid callback URL
	// (e.g. refuses private addresses); its error text becomes the message.
	CheckCallback func(*url.URL) error
	// CheckCredentials, when not nil, vets the connector's credentials
	// without contacting the upstream (upstream.CheckCredentials); it sees
	// configuration and secrets merged. A Problem without a Field is
	// reported on "configuration".
	CheckCredentials func(def *connectors.Definition, cfg map[string]any) []connectors.Problem
	// Now is the clock; nil means time.Now. Parsing itself does not need it
	// (the caller stamps CreatedDate).
	Now func() time.Time
}

// ProviderData is the body's providerData: Code is the OAuth authorization
// code to exchange (empty when none was sent); Other holds every other key as
// sent, for connectors that need them.
type ProviderData struct {
	Code  string
	Other map[string]any
}

// problems collects FieldErrors in the order they are found.
type problems []FieldError

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// ParseCreate reads a POST /instances body (SPEC §2, Open Connectors' shape)
// and returns the instance it describes, with its secrets in Secrets, its
// derived fields filled and Status active or disabled; ID, Token, CreatedDate
// and Revision are left for the caller. providerData is returned apart (nil
// when the body has none). When anything is wrong the instance is nil and
// every problem is listed, each with its field path; ParseCreate never
// panics, whatever the bytes.
//
// A connector on the OAuth 2.0 authorization code grant needs
// providerData.code (the caller exchanges it before storing the instance).
// Connector-dependent checks (resources, required configuration, base URL,
// environment) need a known connector: with a missing or unknown element.key
// only that and the connector-independent problems are reported.
func ParseCreate(body []byte, rules Rules) (*Instance, *ProviderData, []FieldError) {
	obj, errs := decodeObject(body)
	if errs != nil {
		return nil, nil, errs
	}
	var p problems
	in := &Instance{
		Configuration: map[string]any{},
		Secrets:       map[string]string{},
		Tags:          []string{},
	}

	in.Name = parseName(obj, &p, true)
	key, keyField, hasKey := elementKey(obj, &p)
	var def *connectors.Definition
	switch {
	case !hasKey:
		if keyField != "" { // present but not a string: already reported
			break
		}
		p.add("element.key", "is required: the connector key%s", knownConnectors(rules.Registry, ", one of: "))
	default:
		in.ElementKey = key
		def = lookupConnector(rules.Registry, key, keyField, &p)
	}
	pd := parseProviderData(obj, &p)
	if v, ok := obj["tags"]; ok {
		in.Tags = parseTags(v, &p)
	}
	if v, ok := obj["disabled"]; ok && v != nil {
		b, ok := asBool(v)
		if !ok {
			p.add("disabled", "must be true or false, got %s", describe(v))
		}
		in.Disabled = b
	}

	var cfg map[string]any
	switch v := obj["configuration"].(type) {
	case nil:
		cfg = map[string]any{}
	case map[string]any:
		cfg = v
	default:
		p.add("configuration", "must be an object, got %s", describe(v))
		cfg = map[string]any{}
	}
	legacy := mergeConfiguration(in, cfg, def, nil, &p)
	if _, ok := in.Configuration[KeyPollerConfig]; !ok && def != nil && len(def.Resources) > 0 {
		in.Configuration[KeyPollerConfig] = defaultResources(def)
	}

	// With a missing or unknown connector the connector-independent fields
	// are still checked; def == nil skips the rest.
	p = appendFollowing(p, relabelLegacy(in.derive(def), legacy))
	if def != nil && def.NeedsAuthorizationCode(in.ConnectorConfig()) && (pd == nil || strings.TrimSpace(pd.Code) == "") &&
		!slices.ContainsFunc(p, func(e FieldError) bool { return strings.HasPrefix(e.Field, "providerData") }) {
		p.add("providerData.code", "is required: connector %s uses the OAuth 2.0 authorization code grant; send the code the provider returned to oauth.callback.url", def.Key)
	}
	refreshSent := hasValue(in.Configuration, KeyRefreshInterval)
	checkRules(in, rules, &p, refreshSent, true)
	checkCredentials(in, rules, &p)

	if len(p) > 0 {
		return nil, nil, p
	}
	in.Status = StatusActive
	if in.Disabled {
		in.Status = StatusDisabled
	}
	return in, pd, nil
}

// Derive fills the derived fields (EventsEnabled, CallbackURL,
// RefreshInterval, BatchSize, Resources) from Configuration and Secrets, and
// returns what is invalid, checked against the instance's connector in reg.
// It does not apply Rules (minimum refresh interval, callback vetting): the
// store calls it on every instance it loads. Fields that cannot be read are
// left at their defaults, the rest are filled anyway.
func (in *Instance) Derive(reg *connectors.Registry) []FieldError {
	var def *connectors.Definition
	if reg != nil {
		def, _ = reg.Get(in.ElementKey)
	}
	if def == nil {
		probs := in.derive(nil)
		return append([]FieldError{{Field: "element.key", Message: fmt.Sprintf("unknown connector %q%s", in.ElementKey, knownConnectors(reg, "; known connectors: "))}}, probs...)
	}
	return in.derive(def)
}

// derive is the one interpretation of the configuration, shared by
// ParseCreate, ApplyPatch and Derive. def nil skips what needs a connector.
func (in *Instance) derive(def *connectors.Definition) []FieldError {
	var p problems
	cfg := in.Configuration
	if cfg == nil {
		cfg = map[string]any{}
	}

	in.EventsEnabled = false
	if v, ok := cfg[KeyEventsEnabled]; ok && !emptyValue(v) {
		b, ok := asBool(v)
		if !ok {
			p.add(configPrefix+KeyEventsEnabled, "must be true or false, got %s", describe(v))
		}
		in.EventsEnabled = b
	}

	in.CallbackURL = ""
	if v, ok := cfg[KeyCallbackURL]; ok && !emptyValue(v) {
		s, ok := v.(string)
		if !ok {
			p.add(configPrefix+KeyCallbackURL, "must be a string, got %s", describe(v))
		} else if msg := checkHTTPURL(s); msg != "" {
			p.add(configPrefix+KeyCallbackURL, "%s", msg)
		} else {
			in.CallbackURL = strings.TrimSpace(s)
		}
	} else if in.EventsEnabled {
		p.add(configPrefix+KeyCallbackURL, "is required when %s is true: the URL events are POSTed to", KeyEventsEnabled)
	}

	in.BatchSize = DefaultBatchSize
	if v, ok := cfg[KeyBatchSize]; ok && !emptyValue(v) {
		f, ok := asNumber(v)
		if !ok || f != math.Trunc(f) || f < 1 || f > MaxBatchSize {
			p.add(configPrefix+KeyBatchSize, "must be a whole number from 1 to %d, got %s", MaxBatchSize, describe(v))
		} else {
			in.BatchSize = int(f)
		}
	}

	in.RefreshInterval = DefaultRefreshInterval
	if v, ok := cfg[KeyRefreshInterval]; ok && !emptyValue(v) {
		f, ok := asNumber(v)
		switch {
		case !ok:
			p.add(configPrefix+KeyRefreshInterval, "must be a number of minutes, got %s", describe(v))
		case f <= 0:
			p.add(configPrefix+KeyRefreshInterval, "must be a positive number of minutes, got %s", describe(v))
		case f > maxRefreshMinutes:
			p.add(configPrefix+KeyRefreshInterval, "must be at most %d minutes (a year), got %s", maxRefreshMinutes, describe(v))
		default:
			d := time.Duration(math.Round(f * float64(time.Minute)))
			if d <= 0 {
				p.add(configPrefix+KeyRefreshInterval, "must be a positive number of minutes, got %s", describe(v))
			} else {
				in.RefreshInterval = d
			}
		}
	}

	// Resources.
	in.Resources = map[string]pollers.Resource{}
	resources, ok := resourceObject(cfg[KeyPollerConfig])
	if !ok {
		p.add(configPrefix+KeyPollerConfig, "must be an object of resources (or a JSON string of one), got %s", describe(cfg[KeyPollerConfig]))
	}
	var defaults pollers.Defaults
	if def != nil {
		defaults = pollers.Defaults{IDField: def.IDField, Pagination: def.Pagination, RateLimit: def.RateLimit}
		if pg, err := def.ResolvePagination(cfg); err == nil {
			defaults.Pagination = pg // configuration "pagination" wins; its errors are CheckConfig's
		}
	}
	names := sortedKeys(resources)
	relativeURL := "" // a resource whose url needs the base URL
	for _, name := range names {
		field := configPrefix + KeyPollerConfig + "." + name
		if strings.TrimSpace(name) == "" {
			p.add(configPrefix+KeyPollerConfig, "has a resource with an empty name; name each resource (e.g. \"contacts\")")
			continue
		}
		raw, isObj := resources[name].(map[string]any)
		if !isObj {
			p.add(field, "must be an object (the poller configuration of resource %q), got %s", name, describe(resources[name]))
			continue
		}
		if def == nil {
			// Without the connector's defaults only what does not depend
			// on them is checked here.
			if msg := hubsProblem(raw); msg != "" {
				p.add(field+".url", "%s", msg)
			}
			continue
		}
		res, probs := pollers.ParseResource(raw, defaults)
		for _, pr := range probs {
			f := field
			if pr.Field != "" {
				f += "." + pr.Field
			}
			p.add(f, "%s", pr.Message)
		}
		if len(probs) == 0 {
			in.Resources[name] = res
		}
		if u := resourceURL(raw); relativeURL == "" && u != "" && !isAbsoluteHTTP(u) {
			relativeURL = name
		}
	}
	if ok && in.EventsEnabled && len(resources) == 0 {
		p.add(configPrefix+KeyPollerConfig, "names no resource to poll, but %s is true", KeyEventsEnabled)
	}

	if def == nil {
		return p
	}

	// The connector's own checks (required keys, auth scheme, environment,
	// base URL, pagination) see secrets too.
	for _, k := range []string{KeyBaseURL, KeyEnvironment} {
		if v, ok := cfg[k]; ok && !emptyValue(v) {
			if _, isStr := v.(string); !isStr {
				p.add(configPrefix+k, "must be a string, got %s", describe(v))
			}
		}
	}
	for _, pr := range def.CheckConfig(in.ConnectorConfig()) {
		if !slices.ContainsFunc(p, func(e FieldError) bool { return e.Field == configPrefix+pr.Field }) {
			p.add(configPrefix+pr.Field, "%s", pr.Message)
		}
	}
	if def.BaseURLFromConfig && relativeURL != "" && !hasValue(cfg, KeyBaseURL) {
		p.add(configPrefix+KeyBaseURL, "is required: connector %s has no base URL of its own and resource %q has a relative url", def.Key, relativeURL)
	}
	return p
}

// ConnectorConfig is Configuration with the secrets filled in: what
// connectors.Definition's CheckConfig, ResolveAuth and ResolveBaseURL read
// (they need oauth.api.key, password, ... which Configuration never holds).
// Values are shared with in: do not change the result.
func (in *Instance) ConnectorConfig() map[string]any {
	if len(in.Secrets) == 0 {
		return in.Configuration
	}
	out := make(map[string]any, len(in.Configuration)+len(in.Secrets))
	for k, v := range in.Configuration {
		out[k] = v
	}
	for k, v := range in.Secrets {
		out[k] = v
	}
	return out
}

// appendFollowing appends the problems of a later stage, leaving out those
// at a field an earlier stage already found wrong (a refused value leaves
// its key unset, which the later stage would report again).
func appendFollowing(p problems, later []FieldError) problems {
	seen := map[string]bool{}
	for _, e := range p {
		seen[e.Field] = true
		if strings.HasPrefix(e.Field, configPrefix+KeyPollerURLs) {
			seen[configPrefix+KeyPollerConfig] = true // "names no resource" would follow
		}
	}
	for _, e := range later {
		if !seen[e.Field] {
			p = append(p, e)
		}
	}
	return p
}

// checkRules applies the server's rules that Derive leaves out: the minimum
// refresh interval (and raising a defaulted interval to it) and the callback
// vetting. checkCallback is false when a PATCH leaves the callback as it was.
func checkRules(in *Instance, rules Rules, p *problems, refreshSent, checkCallback bool) {
	if min := rules.MinRefreshInterval; min > 0 && in.RefreshInterval < min {
		if refreshSent {
			v := in.Configuration[KeyRefreshInterval]
			if _, ok := asNumber(v); ok && !slices.ContainsFunc(*p, func(e FieldError) bool { return e.Field == configPrefix+KeyRefreshInterval }) {
				p.add(configPrefix+KeyRefreshInterval, "must be at least %s (the server's --min-refresh-interval is %s), got %s",
					minutes(min), min, describe(v))
			}
		} else {
			in.RefreshInterval = min
		}
	}
	if checkCallback && rules.CheckCallback != nil && in.CallbackURL != "" {
		if u, err := url.Parse(in.CallbackURL); err == nil {
			if err := rules.CheckCallback(u); err != nil {
				p.add(configPrefix+KeyCallbackURL, "is refused: %s", err.Error())
			}
		}
	}
}

// checkCredentials adds what rules.CheckCredentials finds wrong with in's
// upstream credentials, when nothing else is wrong.
func checkCredentials(in *Instance, rules Rules, p *problems) {
	if len(*p) > 0 || rules.CheckCredentials == nil || rules.Registry == nil {
		return
	}
	if def, ok := rules.Registry.Get(in.ElementKey); ok {
		for _, pr := range rules.CheckCredentials(def, in.ConnectorConfig()) {
			field := strings.TrimSuffix(configPrefix, ".")
			if pr.Field != "" {
				field = configPrefix + pr.Field
			}
			p.add(field, "%s", pr.Message)
		}
	}
}

// minutes renders d in minutes, as event.poller.refresh_interval is written.
func minutes(d time.Duration) string {
	m := strconv.FormatFloat(d.Minutes(), 'f', -1, 64)
	if m == "1" {
		return "1 minute"
	}
	return m + " minutes"
}

// mergeConfiguration writes the body's configuration keys into in: secrets to
// in.Secrets, event.poller.configuration normalized to an object and merged
// resource by resource into what in already has, event.poller.urls converted
// and merged under it (resources named in event.poller.configuration win),
// null removing a key (and "" a secret), every other key stored as sent.
// stored holds the secrets a "********" may keep (nil on create, where
// "********" is refused).
// It returns the names of the resources that came from event.poller.urls.
func mergeConfiguration(in *Instance, cfg map[string]any, def *connectors.Definition, stored map[string]string, p *problems) map[string]bool {
	var fromConfig, fromURLs map[string]any
	configSent, urlsSent := false, false
	for _, k := range sortedKeys(cfg) {
		v := cfg[k]
		field := configPrefix + k
		switch {
		case k == KeyPollerConfig:
			if v == nil {
				delete(in.Configuration, KeyPollerConfig)
				continue
			}
			res, msg := normalizeResources(v)
			switch {
			case msg != "":
				p.add(field, "%s", msg)
			case res == nil: // "": none, as null
				delete(in.Configuration, KeyPollerConfig)
			default:
				fromConfig, configSent = res, true
			}
		case k == KeyPollerURLs:
			if emptyValue(v) {
				continue
			}
			s, ok := v.(string)
			if !ok {
				p.add(field, "must be a string of lines resource|url|xPathFilter|updatedDateField|...; got %s", describe(v))
				continue
			}
			res, probs := pollers.ParseLegacyURLs(s)
			for _, pr := range probs {
				f := field
				if pr.Field != "" {
					if strings.HasPrefix(pr.Field, "[") {
						f += pr.Field
					} else {
						f += "." + pr.Field
					}
				}
				p.add(f, "%s", pr.Message)
			}
			fromURLs, urlsSent = map[string]any{}, true
			idField := "id"
			if def != nil && def.IDField != "" {
				idField = def.IDField
			}
			for name, r := range res {
				if _, ok := r["idField"]; !ok {
					r["idField"] = idField
				}
				fromURLs[name] = map[string]any(r)
			}
		case v == nil:
			delete(in.Configuration, k)
			delete(in.Secrets, k)
		case IsSecretKey(k, def):
			s, ok := scalarString(v)
			switch {
			case !ok:
				p.add(field, "must be a string, got %s", describe(v))
			case s == Redacted:
				old, kept := stored[k]
				if !kept {
					p.add(field, "is %q, which only stands for a stored secret, and none is stored: send the value itself", Redacted)
				} else {
					in.Secrets[k] = old
				}
			case strings.TrimSpace(s) == "":
				delete(in.Secrets, k) // nothing to keep secret; as absent
			default:
				in.Secrets[k] = s
			}
			delete(in.Configuration, k)
		default:
			in.Configuration[k] = v
			delete(in.Secrets, k)
		}
	}
	if !configSent && !urlsSent {
		return nil
	}
	merged, _ := resourceObject(in.Configuration[KeyPollerConfig])
	merged = cloneMap(merged)
	if merged == nil {
		merged = map[string]any{}
	}
	legacy := map[string]bool{}
	for name, r := range fromURLs {
		if _, ok := fromConfig[name]; !ok {
			merged[name] = r
			legacy[name] = true
		}
	}
	for name, r := range fromConfig {
		if r == nil {
			delete(merged, name)
		} else {
			merged[name] = r
		}
	}
	in.Configuration[KeyPollerConfig] = merged
	return legacy
}

// normalizeResources reads event.poller.configuration as sent: an object, or
// a string holding one as JSON ("" stands for none). It returns nil, "" for
// an empty string and a message when the value is not usable.
func normalizeResources(v any) (map[string]any, string) {
	switch t := v.(type) {
	case map[string]any:
		return t, ""
	case string:
		if strings.TrimSpace(t) == "" {
			return nil, ""
		}
		if jsondepth.Exceeds([]byte(t), api.MaxDepth) {
			return nil, fmt.Sprintf("is a string whose JSON nests arrays and objects more than %d levels deep", api.MaxDepth)
		}
		var parsed any
		dec := json.NewDecoder(strings.NewReader(t))
		if err := dec.Decode(&parsed); err != nil {
			return nil, "is a string but not valid JSON: " + jsonErrorText(err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, "is a string but not valid JSON: it has more after the JSON value"
		}
		obj, ok := parsed.(map[string]any)
		if !ok {
			return nil, "must hold a JSON object of resources, got " + describe(parsed)
		}
		return obj, ""
	default:
		return nil, "must be an object of resources (or a JSON string of one), got " + describe(v)
	}
}

// resourceObject returns the stored event.poller.configuration; ok is false
// when it is neither absent nor an object (nor a JSON string of one).
func resourceObject(v any) (map[string]any, bool) {
	if v == nil {
		return nil, true
	}
	m, msg := normalizeResources(v)
	return m, msg == ""
}

// relabelLegacy moves problems of resources that came from event.poller.urls
// under that key, where the client wrote them.
func relabelLegacy(probs []FieldError, legacy map[string]bool) []FieldError {
	if len(legacy) == 0 {
		return probs
	}
	prefix := configPrefix + KeyPollerConfig + "."
	for i, pr := range probs {
		rest, ok := strings.CutPrefix(pr.Field, prefix)
		if !ok {
			continue
		}
		for name := range legacy {
			if rest == name || strings.HasPrefix(rest, name+".") {
				probs[i].Field = configPrefix + KeyPollerURLs + "." + rest
				break
			}
		}
	}
	return probs
}

// defaultResources is a copy of the connector's default resources.
func defaultResources(def *connectors.Definition) map[string]any {
	out := make(map[string]any, len(def.Resources))
	for name, r := range def.Resources {
		out[name] = cloneMap(r)
	}
	return out
}

// resourceURL is the resource's url as sent ("" when none is a string); the
// key is matched ignoring case, as pollers.ParseResource reads it.
func resourceURL(raw map[string]any) string {
	if s, ok := raw["url"].(string); ok {
		return strings.TrimSpace(s)
	}
	for k, v := range raw {
		if strings.EqualFold(k, "url") {
			if s, ok := v.(string); ok {
				return strings.TrimSpace(s)
			}
		}
	}
	return ""
}

// hubsProblem refuses a poller URL under Open Connectors' /hubs/ API. The
// pollers check this too (pollers.ParseResource); this copy serves bodies
// whose connector is unknown, where ParseResource is not run.
func hubsProblem(raw map[string]any) string {
	s := resourceURL(raw)
	path := s
	if u, err := url.Parse(s); err == nil {
		path = u.Path
	}
	if strings.HasPrefix(path, "/hubs/") || strings.Contains(path, "/elements/api-v2/hubs/") || path == "/hubs" {
		return "points at Open Connectors' /hubs/ API; pollhook polls the upstream's own API: give the upstream's path (e.g. /contacts) or an absolute URL"
	}
	return ""
}

// decodeObject parses the body as one JSON object.
func decodeObject(body []byte) (map[string]any, []FieldError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, []FieldError{{Field: "", Message: "the body is empty; send a JSON object"}}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, []FieldError{{Field: "", Message: "the body is not valid JSON: " + jsonErrorText(err)}}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, []FieldError{{Field: "", Message: "the body is not valid JSON: it has more after the JSON value"}}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, []FieldError{{Field: "", Message: "the body must be a JSON object, got " + describe(v)}}
	}
	return obj, nil
}

func jsonErrorText(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("%s (at byte %d)", syn.Error(), syn.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "it ends too early"
	}
	return err.Error()
}

func parseName(obj map[string]any, p *problems, required bool) string {
	v, ok := obj["name"]
	if !ok || v == nil {
		if required {
			p.add("name", "is required: a name for the instance")
		} else if ok {
			p.add("name", "must be a non-empty string, got null")
		}
		return ""
	}
	s, ok := v.(string)
	if !ok {
		p.add("name", "must be a string, got %s", describe(v))
		return ""
	}
	if strings.TrimSpace(s) == "" {
		p.add("name", "must not be empty")
		return ""
	}
	return s
}

// elementKey reads element.key, or the top-level key. field is where it was
// found (or where a bad value was); ok says a usable key string was found.
func elementKey(obj map[string]any, p *problems) (key, field string, ok bool) {
	var elemKey, topKey string
	var hasElem, hasTop bool
	if ev, present := obj["element"]; present && ev != nil {
		em, isObj := ev.(map[string]any)
		if !isObj {
			p.add("element", "must be an object such as {\"key\": \"infusionsoftrest\"}, got %s", describe(ev))
			field = "element"
		} else if kv, present := em["key"]; present && kv != nil {
			s, isStr := kv.(string)
			if !isStr {
				p.add("element.key", "must be a string, got %s", describe(kv))
				field = "element.key"
			} else {
				elemKey, hasElem = strings.TrimSpace(s), true
			}
		}
	}
	if kv, present := obj["key"]; present && kv != nil {
		s, isStr := kv.(string)
		if !isStr {
			p.add("key", "must be a string, got %s", describe(kv))
			field = "key"
		} else {
			topKey, hasTop = strings.TrimSpace(s), true
		}
	}
	switch {
	case hasElem && hasTop && elemKey != topKey:
		p.add("key", "is %q but element.key is %q; send one of them", topKey, elemKey)
		return "", "key", false
	case hasElem && elemKey != "":
		return elemKey, "element.key", true
	case hasTop && topKey != "":
		return topKey, "key", true
	case hasElem || hasTop:
		f := "element.key"
		if !hasElem {
			f = "key"
		}
		p.add(f, "must not be empty")
		return "", f, false
	}
	return "", field, false
}

func lookupConnector(reg *connectors.Registry, key, field string, p *problems) *connectors.Definition {
	if reg != nil {
		if def, ok := reg.Get(key); ok && def != nil {
			return def
		}
	}
	p.add(field, "unknown connector %q%s", key, knownConnectors(reg, "; known connectors: "))
	return nil
}

// knownConnectors lists the registry's keys after lead, or "" when none.
func knownConnectors(reg *connectors.Registry, lead string) string {
	if reg == nil {
		return ""
	}
	keys := reg.Keys()
	if len(keys) == 0 {
		return ""
	}
	keys = slices.Clone(keys)
	sort.Strings(keys)
	return lead + strings.Join(keys, ", ")
}

func parseProviderData(obj map[string]any, p *problems) *ProviderData {
	v, ok := obj["providerData"]
	if !ok || v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		p.add("providerData", "must be an object such as {\"code\": \"...\"}, got %s", describe(v))
		return nil
	}
	pd := &ProviderData{}
	for k, val := range m {
		if k == "code" {
			if val == nil {
				continue
			}
			s, ok := val.(string)
			if !ok {
				p.add("providerData.code", "must be a string, got %s", describe(val))
				continue
			}
			pd.Code = s
			continue
		}
		if pd.Other == nil {
			pd.Other = map[string]any{}
		}
		pd.Other[k] = val
	}
	return pd
}

func parseTags(v any, p *problems) []string {
	if v == nil {
		return []string{}
	}
	arr, ok := v.([]any)
	if !ok {
		p.add("tags", "must be an array of strings, got %s", describe(v))
		return []string{}
	}
	tags := make([]string, 0, len(arr))
	for i, t := range arr {
		s, ok := t.(string)
		if !ok {
			p.add(fmt.Sprintf("tags[%d]", i), "must be a string, got %s", describe(t))
			continue
		}
		tags = append(tags, s)
	}
	return tags
}

// asBool reads true/false, or the strings "true"/"false" in any case.
func asBool(v any) (bool, bool) {
	switch t := v.(type) {
	case bool:
		return t, true
	case string:
		switch strings.ToLower(strings.TrimSpace(t)) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	return false, false
}

var numberPattern = regexp.MustCompile(`^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$`)

// asNumber reads a finite number, typed or as a decimal string ("15", "0.5").
func asNumber(v any) (float64, bool) {
	var f float64
	switch t := v.(type) {
	case float64:
		f = t
	case int:
		f = float64(t)
	case int64:
		f = float64(t)
	case json.Number:
		g, err := t.Float64()
		if err != nil {
			return 0, false
		}
		f = g
	case string:
		s := strings.TrimSpace(t)
		if !numberPattern.MatchString(s) {
			return 0, false
		}
		g, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, false
		}
		f = g
	default:
		return 0, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// scalarString reads a secret value: a string, or a number or boolean
// written as one. Objects, arrays and null are refused.
func scalarString(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case bool:
		return strconv.FormatBool(t), true
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), true
	case json.Number:
		return t.String(), true
	}
	return "", false
}

// checkHTTPURL returns why s is not an absolute http(s) URL with a host, or "".
func checkHTTPURL(s string) string {
	t := strings.TrimSpace(s)
	u, err := url.Parse(t)
	if err != nil {
		return fmt.Sprintf("must be an absolute http or https URL, got %s (%s)", describe(s), urlErrorText(err))
	}
	if !u.IsAbs() {
		return fmt.Sprintf("must be an absolute http or https URL, got %s", describe(s))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Sprintf("must use http or https, got scheme %q", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Sprintf("must name a host, got %s", describe(s))
	}
	return ""
}

func urlErrorText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

func isAbsoluteHTTP(s string) bool {
	u, err := url.Parse(strings.TrimSpace(s))
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// describe renders a JSON value for a message: strings quoted (and cut at 60
// characters), other values by their kind or text.
func describe(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(t)
	case float64:
		return strconv.FormatFloat(t, 'g', -1, 64)
	case json.Number:
		return t.String()
	case int:
		return strconv.Itoa(t)
	case string:
		r := []rune(t)
		if len(r) > 60 {
			return strconv.Quote(string(r[:60]) + "...")
		}
		return strconv.Quote(t)
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// emptyValue is true for null and "" (Open Connectors clients send "" for
// settings they leave unset).
func emptyValue(v any) bool {
	if v == nil {
		return true
	}
	s, ok := v.(string)
	return ok && strings.TrimSpace(s) == ""
}

func hasValue(cfg map[string]any, key string) bool {
	v, ok := cfg[key]
	return ok && !emptyValue(v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// cloneMap deep-copies a decoded JSON object.
func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		return cloneMap(t)
	case map[string]string:
		out := make(map[string]string, len(t))
		for k, s := range t {
			out[k] = s
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = cloneValue(e)
		}
		return out
	case []string:
		return slices.Clone(t)
	}
	return v
}
