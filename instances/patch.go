package instances

import (
	"maps"
	"reflect"
	"slices"

	"github.com/pollhook/pollhook/connectors"
)

// ApplyPatch applies a PATCH /instances/{id} body to current and returns the
// new instance; current is not modified (maps and slices are copied). The
// caller keeps ID, Token, CreatedDate and Revision (copied from current) and
// the watermarks; ApplyPatch only produces the new configuration.
//
// The rules of SPEC §2: configuration merges key by key, and
// event.poller.configuration resource by resource (a resource object
// replaces that resource, null removes it; event.poller.urls lines are
// converted and merged the same way); null removes a configuration key, and
// null (or "") for event.poller.configuration removes every resource, so the
// connector's default resources apply again as on create; a secret sent as
// "********" keeps its stored value; name, tags and disabled are replaced
// when present; element.key (or key) may be sent only unchanged. The merged
// instance is validated as a whole and every problem is listed; then the
// result is nil. The minimum refresh interval is checked on every PATCH;
// Rules.CheckCallback runs only when the callback URL changed or events were
// switched on (it may depend on DNS, and an unrelated change should not fail
// because of it).
//
// Status: "disabled": true makes it disabled; otherwise new credentials
// (CredentialsChanged, or a providerData.code, which the caller must exchange
// before storing) turn reauthorization_required back into active; without
// them reauthorization_required stays.
func ApplyPatch(current *Instance, body []byte, rules Rules) (*Instance, *ProviderData, []FieldError) {
	obj, errs := decodeObject(body)
	if errs != nil {
		return nil, nil, errs
	}
	var p problems
	next := current.Clone()

	if _, ok := obj["name"]; ok {
		next.Name = parseName(obj, &p, false)
	}
	var kp problems
	key, keyField, hasKey := elementKey(obj, &kp)
	switch {
	case len(kp) > 0:
		p = append(p, kp...)
	case hasKey && key != current.ElementKey:
		p.add(keyField, "cannot change: this instance uses connector %q; create a new instance for %q", current.ElementKey, key)
	}
	var def *connectors.Definition
	if rules.Registry != nil {
		def, _ = rules.Registry.Get(current.ElementKey)
	}
	if def == nil {
		p.add("element.key", "connector %q is no longer defined%s", current.ElementKey, knownConnectors(rules.Registry, "; known connectors: "))
	}
	pd := parseProviderData(obj, &p)
	if v, ok := obj["tags"]; ok {
		next.Tags = parseTags(v, &p)
	}
	if v, ok := obj["disabled"]; ok {
		b, ok := asBool(v)
		if !ok {
			p.add("disabled", "must be true or false, got %s", describe(v))
		}
		next.Disabled = b
	}

	var legacy map[string]bool
	resourcesRemoved := false
	v, configSent := obj["configuration"]
	if configSent {
		cfg, isObj := v.(map[string]any)
		if !isObj {
			p.add("configuration", "must be an object of the keys to change (null removes a key), got %s", describe(v))
		} else {
			legacy = mergeConfiguration(next, cfg, def, current.Secrets, &p)
			if rv, sent := cfg[KeyPollerConfig]; sent && emptyValue(rv) && emptyValue(cfg[KeyPollerURLs]) {
				resourcesRemoved = true
			}
		}
	}
	if resourcesRemoved && def != nil && len(def.Resources) > 0 {
		next.Configuration[KeyPollerConfig] = defaultResources(def)
	}

	p = appendFollowing(p, relabelLegacy(next.derive(def), legacy))
	callbackChanged := next.CallbackURL != current.CallbackURL || (next.EventsEnabled && !current.EventsEnabled)
	checkRules(next, rules, &p, hasValue(next.Configuration, KeyRefreshInterval), callbackChanged)
	if configSent { // a PATCH without configuration (e.g. disabled) never fails on stored credentials
		checkCredentials(next, rules, &p)
	}
	if len(p) > 0 {
		return nil, nil, p
	}

	newCredentials := CredentialsChanged(current, next) || (pd != nil && pd.Code != "")
	switch {
	case next.Disabled:
		next.Status, next.StatusMessage = StatusDisabled, ""
	case current.Status == StatusReauthorizationRequired && !newCredentials:
		// stays until new credentials arrive, "disabled": false or not
	default:
		next.Status, next.StatusMessage = StatusActive, ""
	}
	return next, pd, nil
}

// CredentialsChanged reports whether after holds other upstream credentials
// than before: a secret other than the notification signature key added,
// changed or removed, or a changed username. A PATCH with new credentials
// clears reauthorization_required; the caller should also drop cached
// upstream tokens. (A new providerData.code is in ApplyPatch's ProviderData,
// not seen here.)
func CredentialsChanged(before, after *Instance) bool {
	for _, pair := range [][2]map[string]string{{before.Secrets, after.Secrets}, {after.Secrets, before.Secrets}} {
		for k, v := range pair[0] {
			if !isCredentialKey(k) {
				continue
			}
			if w, ok := pair[1][k]; !ok || w != v {
				return true
			}
		}
	}
	for _, k := range []string{"username", "user.name"} {
		bv, bok := before.Configuration[k]
		av, aok := after.Configuration[k]
		if bok != aok || !reflect.DeepEqual(bv, av) {
			return true
		}
	}
	return false
}

// ResourceChanges compares the poller configuration of two versions of an
// instance, by resource name, sorted: added and removed resources, and those
// whose configuration changed. A PATCH caller keeps the watermark of every
// resource in both (SPEC §2: a changed resource keeps its watermark) and
// starts added ones at the time of the PATCH.
func ResourceChanges(before, after *Instance) (added, changed, removed []string) {
	b, _ := resourceObject(before.Configuration[KeyPollerConfig])
	a, _ := resourceObject(after.Configuration[KeyPollerConfig])
	for _, name := range sortedKeys(a) {
		old, ok := b[name]
		switch {
		case !ok:
			added = append(added, name)
		case !reflect.DeepEqual(old, a[name]):
			changed = append(changed, name)
		}
	}
	for _, name := range sortedKeys(b) {
		if _, ok := a[name]; !ok {
			removed = append(removed, name)
		}
	}
	return added, changed, removed
}

// Clone returns a deep copy of in: changing the copy's maps, slices or
// configuration values leaves in as it was. Resources (parsed values) are
// shared with in's.
func (in *Instance) Clone() *Instance {
	out := *in
	out.Configuration = cloneMap(in.Configuration)
	if out.Configuration == nil {
		out.Configuration = map[string]any{}
	}
	out.Secrets = maps.Clone(in.Secrets)
	if out.Secrets == nil {
		out.Secrets = map[string]string{}
	}
	out.Tags = slices.Clone(in.Tags)
	if out.Tags == nil {
		out.Tags = []string{}
	}
	out.Resources = maps.Clone(in.Resources)
	return &out
}
