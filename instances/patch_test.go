package instances

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pollhook/pollhook/connectors"
)

// patchBase is a stored generic instance with an api key, a signature key
// and two resources.
func patchBase(t *testing.T) *Instance {
	t.Helper()
	body := `{
	  "name": "base",
	  "element": {"key": "generic"},
	  "tags": ["one"],
	  "configuration": {
	    "base.url": "https://api.example.com/v1",
	    "auth.type": "apikey",
	    "api.key.header": "X-Api-Key",
	    "api.key": "key-1",
	    "event.vendor.type": "polling",
	    "event.notification.enabled": true,
	    "event.notification.callback.url": "https://hooks.example.com/in",
	    "event.notification.signature.key": "sig-1",
	    "event.poller.refresh_interval": 5,
	    "event.poller.configuration": {
	      "contacts": {"url": "/contacts", "idField": "id", "datesConfiguration": {"updatedDateField": "updated_at", "updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ssX"}},
	      "deals": {"url": "/deals", "idField": "dealId", "datesConfiguration": {"updatedDateField": "modified", "updatedDateFormat": "milliseconds"}}
	    }
	  }
	}`
	in, _, probs := ParseCreate([]byte(body), parseRules(t))
	if len(probs) > 0 {
		t.Fatalf("base refused: %+v", probs)
	}
	in.ID, in.Token, in.Revision = 7, "token-7", 3
	in.CreatedDate = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	return in
}

// snapshot renders everything of in that a patch must not change.
func snapshot(t *testing.T, in *Instance) string {
	t.Helper()
	c := *in
	c.Resources = nil // parsed values; compared by name elsewhere
	b, err := json.Marshal(struct {
		I       Instance
		S       map[string]string
		ResKeys []string
	}{c, in.Secrets, sortedKeys(in.Resources)})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustPatch(t *testing.T, current *Instance, body string) (*Instance, *ProviderData) {
	t.Helper()
	before := snapshot(t, current)
	next, pd, probs := ApplyPatch(current, []byte(body), parseRules(t))
	if len(probs) > 0 {
		t.Fatalf("patch refused: %+v", probs)
	}
	if after := snapshot(t, current); after != before {
		t.Fatalf("ApplyPatch changed the current instance:\nbefore %s\nafter  %s", before, after)
	}
	if next == current {
		t.Fatal("ApplyPatch returned current itself")
	}
	return next, pd
}

func patchFields(probs []FieldError) []string {
	var out []string
	for _, p := range probs {
		out = append(out, p.Field)
	}
	return out
}

func TestApplyPatchMergesConfigurationKeyByKey(t *testing.T) {
	cur := patchBase(t)
	next, pd := mustPatch(t, cur, `{"configuration": {"event.poller.refresh_interval": "30", "event.vendor.type": null, "x.custom": "kept"}}`)
	if pd != nil {
		t.Errorf("providerData = %+v, want nil", pd)
	}
	if next.RefreshInterval != 30*time.Minute {
		t.Errorf("refresh = %v", next.RefreshInterval)
	}
	if _, ok := next.Configuration["event.vendor.type"]; ok {
		t.Error("null did not remove event.vendor.type")
	}
	if next.Configuration["x.custom"] != "kept" || next.Configuration["base.url"] != "https://api.example.com/v1" {
		t.Errorf("configuration = %v", next.Configuration)
	}
	if !reflect.DeepEqual(next.Secrets, cur.Secrets) {
		t.Errorf("secrets changed: %v", next.Secrets)
	}
	if next.ID != 7 || next.Token != "token-7" || next.Revision != 3 || !next.CreatedDate.Equal(cur.CreatedDate) || next.Name != "base" {
		t.Errorf("identity not kept: %+v", next)
	}
	if len(next.Resources) != 2 || !next.EventsEnabled || next.Status != StatusActive {
		t.Errorf("derived: %+v", next)
	}
}

func TestApplyPatchKeepsASecretSentAsRedacted(t *testing.T) {
	cur := patchBase(t)
	next, _ := mustPatch(t, cur, `{"configuration": {"api.key": "********", "event.notification.signature.key": "sig-2"}}`)
	if next.Secrets["api.key"] != "key-1" || next.Secrets["event.notification.signature.key"] != "sig-2" {
		t.Errorf("secrets = %v", next.Secrets)
	}
	if _, ok := next.Configuration["api.key"]; ok {
		t.Error("a secret went into Configuration")
	}
	// The whole view sent back unchanged changes nothing.
	view, _ := json.Marshal(cur.View(true))
	again, _ := mustPatch(t, cur, string(view))
	if !reflect.DeepEqual(again.Secrets, cur.Secrets) || !reflect.DeepEqual(again.Configuration, cur.Configuration) {
		t.Errorf("patching with the view changed the instance:\n%v %v\n%v %v", again.Configuration, again.Secrets, cur.Configuration, cur.Secrets)
	}
}

func TestApplyPatchRefusesRedactedForASecretNeverStored(t *testing.T) {
	_, _, probs := ApplyPatch(patchBase(t), []byte(`{"configuration": {"oauth.api.secret": "********"}}`), parseRules(t))
	if !slices.Equal(patchFields(probs), []string{"configuration.oauth.api.secret"}) {
		t.Errorf("problems = %+v", probs)
	}
}

func TestApplyPatchNullRemovesASecret(t *testing.T) {
	cur := patchBase(t)
	next, _ := mustPatch(t, cur, `{"configuration": {"event.notification.signature.key": null}}`)
	if _, ok := next.Secrets["event.notification.signature.key"]; ok {
		t.Error("secret not removed")
	}
	// Removing a key the auth scheme needs is refused.
	_, _, probs := ApplyPatch(cur, []byte(`{"configuration": {"api.key": null}}`), parseRules(t))
	if !slices.Equal(patchFields(probs), []string{"configuration.api.key"}) {
		t.Errorf("problems = %+v", probs)
	}
}

func TestApplyPatchMergesResourcesOneByOne(t *testing.T) {
	cur := patchBase(t)
	next, _ := mustPatch(t, cur, `{"configuration": {"event.poller.configuration": {
	  "deals": null,
	  "orders": {"url": "/orders", "idField": "orderId", "datesConfiguration": {"updatedDateField": "ts", "updatedDateFormat": "seconds"}},
	  "contacts": {"url": "/people", "idField": "personId", "datesConfiguration": {"updatedDateField": "changed", "updatedDateFormat": "seconds"}}
	}}}`)
	pc := next.Configuration[KeyPollerConfig].(map[string]any)
	if got := sortedKeys(pc); !slices.Equal(got, []string{"contacts", "orders"}) {
		t.Fatalf("resources = %v", got)
	}
	contacts := pc["contacts"].(map[string]any)
	dc := contacts["datesConfiguration"].(map[string]any)
	if contacts["url"] != "/people" || dc["updatedDateField"] != "changed" || dc["updatedDateFormat"] != "seconds" {
		t.Errorf("contacts not replaced whole: %v", contacts)
	}
	if got := sortedKeys(next.Resources); !slices.Equal(got, []string{"contacts", "orders"}) {
		t.Errorf("parsed resources = %v", got)
	}
	added, changed, removed := ResourceChanges(cur, next)
	if !slices.Equal(added, []string{"orders"}) || !slices.Equal(changed, []string{"contacts"}) || !slices.Equal(removed, []string{"deals"}) {
		t.Errorf("ResourceChanges = %v %v %v", added, changed, removed)
	}
	if a, c, r := ResourceChanges(cur, cur.Clone()); a != nil || c != nil || r != nil {
		t.Errorf("ResourceChanges of a copy = %v %v %v", a, c, r)
	}
	// As a JSON string, too.
	next, _ = mustPatch(t, cur, `{"configuration": {"event.poller.configuration": "{\"deals\": null}"}}`)
	if got := sortedKeys(next.Configuration[KeyPollerConfig].(map[string]any)); !slices.Equal(got, []string{"contacts"}) {
		t.Errorf("resources = %v", got)
	}
}

func TestApplyPatchValidatesTheMergedResult(t *testing.T) {
	cur := patchBase(t)
	_, _, probs := ApplyPatch(cur, []byte(`{
	  "name": "",
	  "configuration": {
	    "event.notification.callback.url": null,
	    "event.poller.refresh_interval": 0.1,
	    "event.poller.configuration": {"deals": {"url": "/deals"}}
	  }}`), parseRules(t))
	want := []string{
		"name",
		"configuration.event.notification.callback.url",
		"configuration.event.poller.configuration.deals.idField",
		"configuration.event.poller.configuration.deals.datesConfiguration.updatedDateField",
		"configuration.event.poller.configuration.deals.datesConfiguration.updatedDateFormat",
		"configuration.event.poller.refresh_interval",
	}
	if got := patchFields(probs); !slices.Equal(got, want) {
		t.Errorf("fields = %q\nwant     %q\n(%+v)", got, want, probs)
	}
	// Removing every resource of an instance with events on is refused.
	_, _, probs = ApplyPatch(cur, []byte(`{"configuration": {"event.poller.configuration": null}}`), parseRules(t))
	if !slices.Equal(patchFields(probs), []string{"configuration.event.poller.configuration"}) {
		t.Errorf("problems = %+v", probs)
	}
}

func TestApplyPatchRefusesAnotherElementKey(t *testing.T) {
	cur := patchBase(t)
	for _, body := range []string{`{"element": {"key": "finfo"}}`, `{"key": "finfo"}`} {
		_, _, probs := ApplyPatch(cur, []byte(body), parseRules(t))
		if len(probs) != 1 || !strings.Contains(probs[0].Message, "cannot change") {
			t.Errorf("%s: problems = %+v", body, probs)
		}
	}
	if probs := patchFields(func() []FieldError {
		_, _, p := ApplyPatch(cur, []byte(`{"element": {"key": "finfo"}}`), parseRules(t))
		return p
	}()); !slices.Equal(probs, []string{"element.key"}) {
		t.Errorf("fields = %q", probs)
	}
	mustPatch(t, cur, `{"element": {"key": "generic"}, "name": "renamed"}`)
}

func TestApplyPatchReplacesNameTagsAndDisabled(t *testing.T) {
	cur := patchBase(t)
	next, _ := mustPatch(t, cur, `{"name": "renamed", "tags": ["a", "b"], "disabled": true}`)
	if next.Name != "renamed" || !slices.Equal(next.Tags, []string{"a", "b"}) || !next.Disabled || next.Status != StatusDisabled {
		t.Errorf("got %q %q %v %q", next.Name, next.Tags, next.Disabled, next.Status)
	}
	again, _ := mustPatch(t, next, `{"disabled": "false", "tags": null}`)
	if again.Disabled || again.Status != StatusActive || again.Tags == nil || len(again.Tags) != 0 {
		t.Errorf("got disabled %v status %q tags %#v", again.Disabled, again.Status, again.Tags)
	}
	// An empty patch changes nothing.
	same, _ := mustPatch(t, cur, `{}`)
	if !sameInstance(same, cur) {
		t.Errorf("empty patch changed the instance")
	}
}

func TestApplyPatchClearsReauthorizationOnlyWithNewCredentials(t *testing.T) {
	in, _, probs := ParseCreate(readTestdata(t, "testdata/create/good/connector_defaults.json"), parseRules(t))
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	in.Disabled, in.Status, in.StatusMessage = false, StatusReauthorizationRequired, "the session id was replaced"

	cases := []struct {
		body       string
		status     string
		newSession bool
	}{
		{`{"name": "x"}`, StatusReauthorizationRequired, false},
		{`{"disabled": false}`, StatusReauthorizationRequired, false},
		{`{"configuration": {"sessionuuid": "********"}}`, StatusReauthorizationRequired, false},
		{`{"configuration": {"event.notification.signature.key": "new"}}`, StatusReauthorizationRequired, false},
		{`{"configuration": {"sessionuuid": "new-session"}}`, StatusActive, true},
		{`{"providerData": {"code": "new-code"}}`, StatusActive, false},
		{`{"disabled": true}`, StatusDisabled, false},
	}
	for _, c := range cases {
		next, pd := mustPatch(t, in, c.body)
		if next.Status != c.status {
			t.Errorf("%s: status %q, want %q", c.body, next.Status, c.status)
		}
		if next.Status == StatusReauthorizationRequired && next.StatusMessage == "" {
			t.Errorf("%s: status message dropped", c.body)
		}
		if next.Status == StatusActive && next.StatusMessage != "" {
			t.Errorf("%s: status message kept: %q", c.body, next.StatusMessage)
		}
		if got := CredentialsChanged(in, next); got != c.newSession {
			t.Errorf("%s: CredentialsChanged = %v", c.body, got)
		}
		if strings.Contains(c.body, "code") && (pd == nil || pd.Code != "new-code") {
			t.Errorf("%s: providerData = %+v", c.body, pd)
		}
	}
}

func TestCredentialsChangedSeesPasswordAndUsername(t *testing.T) {
	in, _, probs := ParseCreate(readTestdata(t, "testdata/create/good/legacy_urls.json"), parseRules(t))
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	for body, want := range map[string]bool{
		`{"configuration": {"password": "new"}}`:                  true,
		`{"configuration": {"password": "********"}}`:             false,
		`{"configuration": {"username": "other@example.com"}}`:    true,
		`{"configuration": {"oauth.api.secret": "rotated"}}`:      true,
		`{"configuration": {"event.poller.refresh_interval": 9}}`: false,
	} {
		next, _ := mustPatch(t, in, body)
		if got := CredentialsChanged(in, next); got != want {
			t.Errorf("%s: CredentialsChanged = %v, want %v", body, got, want)
		}
	}
}

func TestApplyPatchRestoresDefaultResourcesWhenTheyAreRemoved(t *testing.T) {
	in, _, probs := ParseCreate(readTestdata(t, "testdata/create/good/connector_defaults.json"), parseRules(t))
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	trimmed, _ := mustPatch(t, in, `{"configuration": {"event.poller.configuration": {"products": null}}}`)
	if len(trimmed.Resources) != len(in.Resources)-1 {
		t.Fatalf("resources %d, want %d", len(trimmed.Resources), len(in.Resources)-1)
	}
	reset, _ := mustPatch(t, trimmed, `{"configuration": {"event.poller.configuration": null}}`)
	if len(reset.Resources) != len(in.Resources) {
		t.Errorf("resources %d after null, want the connector's %d", len(reset.Resources), len(in.Resources))
	}
}

func TestApplyPatchRefusesBadBodies(t *testing.T) {
	cur := patchBase(t)
	cases := map[string]FieldError{
		``:                              {Field: "", Message: "the body is empty; send a JSON object"},
		`[]`:                            {Field: "", Message: "the body must be a JSON object, got an array"},
		`{"configuration": "x"}`:        {Field: "configuration", Message: `must be an object of the keys to change (null removes a key), got "x"`},
		`{"configuration": null}`:       {Field: "configuration", Message: `must be an object of the keys to change (null removes a key), got null`},
		`{"name": null}`:                {Field: "name", Message: "must be a non-empty string, got null"},
		`{"disabled": 1}`:               {Field: "disabled", Message: "must be true or false, got 1"},
		`{"tags": [true]}`:              {Field: "tags[0]", Message: "must be a string, got true"},
		`{"providerData": {"code": 1}}`: {Field: "providerData.code", Message: "must be a string, got 1"},
		`{"configuration": {"event.notification.callback.url": "http://blocked.example/x"}}`: {Field: "configuration.event.notification.callback.url", Message: "is refused: blocked.example resolves to a private address"},
	}
	for body, want := range cases {
		next, pd, probs := ApplyPatch(cur, []byte(body), parseRules(t))
		if next != nil || pd != nil || len(probs) != 1 || probs[0] != want {
			t.Errorf("%s: got %v %v %+v, want %+v", body, next, pd, probs, want)
		}
	}
}

func TestCloneSharesNoMutableState(t *testing.T) {
	cur := patchBase(t)
	before := snapshot(t, cur)
	c := cur.Clone()
	c.Configuration["base.url"] = "x"
	c.Configuration[KeyPollerConfig].(map[string]any)["contacts"].(map[string]any)["url"] = "y"
	c.Secrets["api.key"] = "z"
	c.Tags[0] = "w"
	if after := snapshot(t, cur); after != before {
		t.Errorf("changing the clone changed the original")
	}
}

func TestApplyPatchConvertsLegacyURLsResourceByResource(t *testing.T) {
	cur := patchBase(t)
	next, _ := mustPatch(t, cur, `{"configuration": {"event.poller.urls": "orders|/orders||ts|seconds||||"}}`)
	if got := sortedKeys(next.Resources); !slices.Equal(got, []string{"contacts", "deals", "orders"}) {
		t.Errorf("resources = %v", got)
	}
	orders := next.Configuration[KeyPollerConfig].(map[string]any)["orders"].(map[string]any)
	if orders["idField"] != "id" {
		t.Errorf("orders = %v, want generic's default idField id", orders)
	}
	if _, ok := next.Configuration[KeyPollerURLs]; ok {
		t.Error("event.poller.urls stored")
	}
	_, _, probs := ApplyPatch(cur, []byte(`{"configuration": {"event.poller.urls": "orders|/orders|//x|ts|seconds"}}`), parseRules(t))
	if !slices.Equal(patchFields(probs), []string{"configuration.event.poller.urls.orders.xPathFilter"}) {
		t.Errorf("problems = %+v", probs)
	}
	_, _, probs = ApplyPatch(cur, []byte(`{"configuration": {"event.poller.configuration": "{nope"}}`), parseRules(t))
	if !slices.Equal(patchFields(probs), []string{"configuration.event.poller.configuration"}) {
		t.Errorf("problems = %+v", probs)
	}
}

// FuzzApplyPatch: no body makes ApplyPatch panic or change the current
// instance; every problem has a message and, in a JSON object, names its
// field; an accepted patch gives an instance Derive agrees with.
func FuzzApplyPatch(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"name": "x", "tags": ["a"], "disabled": "true"}`,
		`{"configuration": {"api.key": "********", "event.vendor.type": null}}`,
		`{"configuration": {"event.poller.configuration": {"deals": null, "x": {"url": "/x", "idField": "id", "datesConfiguration": {"updatedDateField": "u", "updatedDateFormat": "seconds"}}}}}`,
		`{"configuration": {"event.poller.configuration": "{\"contacts\": null}"}}`,
		`{"configuration": {"event.poller.urls": "orders|/orders||ts|seconds"}}`,
		`{"element": {"key": "finfo"}}`, `{"providerData": {"code": "c"}}`, `[]`, ``, `{"configuration": null}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		cur := patchBase(t)
		before := snapshot(t, cur)
		next, _, probs := ApplyPatch(cur, body, parseRules(t))
		if after := snapshot(t, cur); after != before {
			t.Fatalf("current changed by %q", body)
		}
		if len(probs) > 0 {
			if next != nil {
				t.Fatal("problems and an instance")
			}
			checkProblemsNameFields(t, body, probs)
			return
		}
		check := next.Clone()
		if probs := check.Derive(parseRules(t).Registry); len(probs) > 0 {
			t.Fatalf("accepted patch %q gives an instance Derive refuses: %+v", body, probs)
		}
		if _, err := json.Marshal(next.View(true)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestApplyPatchChecksCredentialsOnlyWhenConfigurationIsSent(t *testing.T) {
	cur := patchBase(t)
	rules := parseRules(t)
	rules.CheckCredentials = func(*connectors.Definition, map[string]any) []connectors.Problem {
		return []connectors.Problem{{Field: "api.key", Message: "no longer accepted"}}
	}
	if _, _, probs := ApplyPatch(cur, []byte(`{"disabled": true}`), rules); len(probs) != 0 {
		t.Errorf("disabling an instance whose stored credentials fail the check: %+v, want no problem", probs)
	}
	_, _, probs := ApplyPatch(cur, []byte(`{"configuration": {"api.key": "key-2"}}`), rules)
	if len(probs) != 1 || probs[0].Field != "configuration.api.key" {
		t.Errorf("a PATCH of the configuration: %+v, want the credentials' problem", probs)
	}
}
