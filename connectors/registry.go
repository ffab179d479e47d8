package connectors

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed definitions/*.yaml
var builtin embed.FS

// builtinPrefix starts the Source of built-in definitions.
const builtinPrefix = "builtin:"

// Registry holds every known connector definition. It does not change after
// Load and is safe for concurrent use.
type Registry struct{ defs map[string]*Definition }

// Load returns the built-in definitions plus those in dir (may be "": built-ins
// only). Every *.yaml and *.yml file directly in dir is one definition (other
// files and subdirectories are ignored); its key is its "key:" field, else
// its file name without the extension. A user definition whose key is a
// built-in's replaces it whole (fields are not merged). Load reads every
// file and returns every problem found, joined, each naming the file and
// the field ("connectors: /etc/pollhook/x.yaml: auth.type: ..."); it
// returns no registry then.
func Load(dir string) (*Registry, error) {
	builtins, err := loadFS(builtin, "definitions", builtinPrefix)
	if err != nil {
		return nil, err
	}
	defs := builtins
	if dir != "" {
		info, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("connectors: %w", err)
		}
		if !info.IsDir() {
			return nil, fmt.Errorf("connectors: %s is not a directory", dir)
		}
		user, err := loadFS(os.DirFS(dir), ".", dir+string(filepath.Separator))
		if err != nil {
			return nil, err
		}
		for k, d := range user {
			defs[k] = d
		}
	}
	return &Registry{defs: defs}, nil
}

// Get returns the definition with this key, as a copy the caller may change.
func (r *Registry) Get(key string) (*Definition, bool) {
	d, ok := r.defs[key]
	if !ok {
		return nil, false
	}
	return d.clone(), true
}

// Keys returns the key of every definition, sorted.
func (r *Registry) Keys() []string {
	keys := make([]string, 0, len(r.defs))
	for k := range r.defs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// loadFS parses every definition file directly in dir of fsys. prefix is
// prepended to file names in Source and in errors.
func loadFS(fsys fs.FS, dir, prefix string) (map[string]*Definition, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("connectors: read %s: %w", strings.TrimSuffix(prefix, string(filepath.Separator)), err)
	}
	defs := map[string]*Definition{}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		ext := path.Ext(name)
		if e.IsDir() || strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		source := prefix + name
		data, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			errs = append(errs, fmt.Errorf("connectors: %s: %w", source, err))
			continue
		}
		d, err := parseDefinition(source, strings.TrimSuffix(name, ext), data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := defs[d.Key]; dup {
			errs = append(errs, fmt.Errorf("connectors: %s: key: %q is already defined by %s", source, d.Key, prev.Source))
			continue
		}
		defs[d.Key] = d
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return defs, nil
}

// fileDefinition is the YAML form of a Definition.
type fileDefinition struct {
	Key               string            `yaml:"key"`
	Name              string            `yaml:"name"`
	Description       string            `yaml:"description"`
	BaseURLs          map[string]string `yaml:"baseURLs"`
	BaseURLFromConfig bool              `yaml:"baseURLFromConfig"`
	Auth              Auth              `yaml:"auth"`
	SecretKeys        []string          `yaml:"secretKeys"`
	RequiredConfig    []string          `yaml:"requiredConfig"`
	IDField           string            `yaml:"idField"`
	RateLimit         float64           `yaml:"rateLimit"`
	Pagination        map[string]any    `yaml:"pagination"`
	Resources         map[string]any    `yaml:"resources"`
}

var (
	keyPattern        = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)
	unknownFieldError = regexp.MustCompile(`^(line \d+): field (\S+) not found in type \S+$`)
)

// parseDefinition parses and validates one definition file. stem is the
// file name without its extension, the key when the file gives none. The
// error names source and the first field found wrong, or lists every
// problem, one per line.
func parseDefinition(source, stem string, data []byte) (*Definition, error) {
	fail := func(field, format string, args ...any) error {
		if field == "" {
			return fmt.Errorf("connectors: %s: %s", source, fmt.Sprintf(format, args...))
		}
		return fmt.Errorf("connectors: %s: %s: %s", source, field, fmt.Sprintf(format, args...))
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fail("", "empty file")
	}
	var f fileDefinition
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			var errs []error
			for _, msg := range te.Errors {
				if m := unknownFieldError.FindStringSubmatch(msg); m != nil {
					msg = fmt.Sprintf("%s: unknown field %q", m[1], m[2])
				}
				errs = append(errs, fail("", "%s", msg))
			}
			return nil, errors.Join(errs...)
		}
		return nil, fail("", "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, fail("", "more than one YAML document")
	}

	d := &Definition{
		Key:               f.Key,
		Name:              strings.TrimSpace(f.Name),
		Description:       strings.TrimSpace(f.Description),
		BaseURLs:          f.BaseURLs,
		BaseURLFromConfig: f.BaseURLFromConfig,
		Auth:              f.Auth,
		SecretKeys:        f.SecretKeys,
		RequiredConfig:    f.RequiredConfig,
		IDField:           strings.TrimSpace(f.IDField),
		RateLimit:         f.RateLimit,
		Source:            source,
	}
	var errs []error
	add := func(field, format string, args ...any) { errs = append(errs, fail(field, format, args...)) }

	if d.Key == "" {
		d.Key = stem
	}
	if !keyPattern.MatchString(d.Key) {
		field := "key"
		if f.Key == "" {
			field = "key (from the file name)"
		}
		add(field, "%q must be letters, digits, '-' and '_', starting with a letter or digit", d.Key)
	}
	if d.Name == "" {
		add("name", "required")
	}

	// Base URLs.
	for _, env := range sortedKeys(d.BaseURLs) {
		if env != EnvProduction && env != EnvSandbox {
			add("baseURLs."+env, "unknown environment (want %s or %s)", EnvProduction, EnvSandbox)
			continue
		}
		if err := checkURL(d.BaseURLs[env]); err != nil {
			add("baseURLs."+env, "%v", err)
		}
	}
	switch {
	case d.BaseURLFromConfig && len(d.BaseURLs) > 0:
		add("baseURLs", "not allowed with baseURLFromConfig: true")
	case !d.BaseURLFromConfig && d.BaseURLs[EnvProduction] == "":
		add("baseURLs.production", "required (or set baseURLFromConfig: true for connectors whose instances give base.url)")
	}

	// Auth.
	validateAuth(&d.Auth, add)

	// Configuration keys.
	for i, k := range d.SecretKeys {
		if strings.TrimSpace(k) == "" || k == secretPrefixWild {
			add(fmt.Sprintf("secretKeys[%d]", i), "must be a configuration key or a prefix ending in *")
		}
	}
	for i, k := range d.RequiredConfig {
		if strings.TrimSpace(k) == "" {
			add(fmt.Sprintf("requiredConfig[%d]", i), "must be a configuration key")
		}
	}

	if d.RateLimit < 0 {
		add("rateLimit", "must be 0 (no limit) or more requests per second, not %v", d.RateLimit)
	}

	if f.Pagination != nil {
		p, err := jsonObject(f.Pagination)
		if err != nil {
			add("pagination", "%v", err)
		} else if err := checkPagination(p); err != nil {
			add("pagination.type", "%s", strings.TrimPrefix(err.Error(), "type "))
		} else {
			d.Pagination = p
		}
	}

	if len(f.Resources) > 0 {
		d.Resources = map[string]map[string]any{}
	}
	for _, name := range sortedKeys(f.Resources) {
		field := "resources." + name
		r, err := jsonObject(f.Resources[name])
		if err != nil {
			add(field, "%v", err)
			continue
		}
		if u, _ := r["url"].(string); strings.TrimSpace(u) == "" {
			add(field+".url", "required (a path under the base URL or an absolute URL)")
			continue
		}
		d.Resources[name] = r
	}

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return d, nil
}

// validateAuth checks a and fills its defaults (type none, envelope
// defaults), reporting problems through add.
func validateAuth(a *Auth, add func(field, format string, args ...any)) {
	if a.Type == "" {
		a.Type = AuthNone
	}
	if !contains(authTypes, a.Type) {
		add("auth.type", "unknown auth type %q (want %s)", a.Type, oneOf(authTypes))
		return
	}
	if a.FromConfig && a.Type != AuthNone {
		add("auth.fromConfig", "requires auth.type none (configuration auth.type chooses the scheme)")
	}
	only := func(field string, present bool, typ string) {
		if present && a.Type != typ {
			add("auth."+field, "only allowed when auth.type is %s", typ)
		}
	}
	only("oauth2", a.OAuth2 != nil, AuthOAuth2)
	only("apikey", a.APIKey != nil, AuthAPIKey)
	only("headers", a.Headers != nil, AuthHeaders)
	only("envelope", a.Envelope != nil, AuthEnvelope)

	switch a.Type {
	case AuthOAuth2:
		o := a.OAuth2
		if o == nil {
			add("auth.oauth2", "required when auth.type is oauth2")
			return
		}
		if !contains(grants, o.Grant) {
			add("auth.oauth2.grant", "unknown grant %q (want %s)", o.Grant, oneOf(grants))
		}
		if o.TokenURL == "" {
			add("auth.oauth2.tokenURL", "required")
		} else if err := checkURL(o.TokenURL); err != nil {
			add("auth.oauth2.tokenURL", "%v", err)
		}
		if o.AuthorizationURL != "" {
			if err := checkURL(o.AuthorizationURL); err != nil {
				add("auth.oauth2.authorizationURL", "%v", err)
			}
		}
	case AuthAPIKey:
		k := a.APIKey
		if k == nil {
			add("auth.apikey", "required when auth.type is apikey")
			return
		}
		if (k.Header == "") == (k.Query == "") {
			add("auth.apikey", "give exactly one of header and query")
		} else if k.Header != "" && !validHeaderName(k.Header) {
			add("auth.apikey.header", "%q is not a valid header name", k.Header)
		}
	case AuthHeaders:
		if len(a.Headers) == 0 {
			add("auth.headers", "required when auth.type is headers (header name: configuration key)")
			return
		}
		for _, h := range sortedKeys(a.Headers) {
			if !validHeaderName(h) {
				add("auth.headers."+h, "not a valid header name")
			}
			if strings.TrimSpace(a.Headers[h]) == "" {
				add("auth.headers."+h, "must name a configuration key")
			}
		}
	case AuthEnvelope:
		if a.Envelope == nil {
			a.Envelope = &Envelope{}
		}
		e := a.Envelope
		if e.Version == "" {
			e.Version = defaultEnvVersion
		}
		if e.DataType == "" {
			e.DataType = envelopeDataJSON
		} else if e.DataType != envelopeDataJSON {
			add("auth.envelope.dataType", "only %s is supported, not %q", envelopeDataJSON, e.DataType)
		}
		if e.Padding == "" {
			e.Padding = PaddingPKCS1v15
		} else if !contains(paddings, e.Padding) {
			add("auth.envelope.padding", "unknown padding %q (want %s)", e.Padding, oneOf(paddings))
		}
		if e.SignatureAlgorithm == "" {
			e.SignatureAlgorithm = SigSHA256withRSA
		} else if !contains(sigAlgs, e.SignatureAlgorithm) {
			add("auth.envelope.signatureAlgorithm", "unknown signature algorithm %q (want %s)", e.SignatureAlgorithm, oneOf(sigAlgs))
		}
		if e.SuccessCode == "" {
			e.SuccessCode = defaultSuccess
		}
	}
}

// validHeaderName reports whether h is a valid, canonicalizable HTTP header
// field name.
func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for _, c := range h {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c) {
			return false
		}
	}
	return http.CanonicalHeaderKey(h) != ""
}

// jsonObject converts a YAML-decoded value to the JSON types a create body
// decodes to (float64 numbers, map[string]any, []any); it must be a mapping.
func jsonObject(v any) (map[string]any, error) {
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("must be a mapping")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("cannot be represented as JSON: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("cannot be represented as JSON: %v", err)
	}
	return m, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// clone returns a copy of d that shares nothing with it.
func (d *Definition) clone() *Definition {
	c := *d
	c.Auth = d.Auth.clone()
	if d.BaseURLs != nil {
		c.BaseURLs = make(map[string]string, len(d.BaseURLs))
		for k, v := range d.BaseURLs {
			c.BaseURLs[k] = v
		}
	}
	c.SecretKeys = append([]string(nil), d.SecretKeys...)
	c.RequiredConfig = append([]string(nil), d.RequiredConfig...)
	if d.Pagination != nil {
		c.Pagination = deepCopy(d.Pagination).(map[string]any)
	}
	if d.Resources != nil {
		c.Resources = make(map[string]map[string]any, len(d.Resources))
		for k, v := range d.Resources {
			c.Resources[k] = deepCopy(v).(map[string]any)
		}
	}
	return &c
}
