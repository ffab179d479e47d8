package instances

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollhook/pollhook/api"
	"github.com/pollhook/pollhook/connectors"
)

var updateParseGolden = flag.Bool("update-parse-golden", false, "rewrite the golden files under testdata/create")

var parseRegistry = sync.OnceValues(func() (*connectors.Registry, error) { return connectors.Load("") })

// parseRules are the rules the parse tests run under: the built-in
// connectors, a 1-minute minimum refresh interval and a callback check that
// refuses the host blocked.example.
func parseRules(t testing.TB) Rules {
	t.Helper()
	reg, err := parseRegistry()
	if err != nil {
		t.Fatalf("load connectors: %v", err)
	}
	return Rules{
		Registry:           reg,
		MinRefreshInterval: time.Minute,
		CheckCallback: func(u *url.URL) error {
			if u.Hostname() == "blocked.example" {
				return errors.New("blocked.example resolves to a private address")
			}
			return nil
		},
		Now: func() time.Time { return time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC) },
	}
}

func readTestdata(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkGolden compares got with the golden file, or writes it with
// -update-parse-golden.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *updateParseGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./instances -run %s -update-parse-golden to create it, then review it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what was produced:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func marshalProblems(t *testing.T, probs []FieldError) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(probs); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestParseCreateReportsEveryProblemWithItsField runs every body under
// testdata/create/bad: each must be refused, with exactly the problems
// (field path and message) of its .golden file.
func TestParseCreateReportsEveryProblemWithItsField(t *testing.T) {
	rules := parseRules(t)
	files, err := filepath.Glob("testdata/create/bad/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 35 {
		t.Fatalf("only %d bad bodies under testdata/create/bad", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			in, pd, probs := ParseCreate(readTestdata(t, file), rules)
			if len(probs) == 0 {
				t.Fatalf("accepted: %+v", in)
			}
			if in != nil || pd != nil {
				t.Errorf("refused body still returned an instance (%v) or provider data (%v)", in, pd)
			}
			for _, p := range probs {
				if p.Message == "" {
					t.Errorf("problem at %q has no message", p.Field)
				}
			}
			checkGolden(t, strings.TrimSuffix(file, ".json")+".golden", marshalProblems(t, probs))
		})
	}
}

// TestParseCreateProblemsNameExactFields pins the field of the central
// problems independently of the golden files.
func TestParseCreateProblemsNameExactFields(t *testing.T) {
	rules := parseRules(t)
	cases := map[string][]string{
		"missing_idfield":                          {"configuration.event.poller.configuration.contacts.idField"},
		"refresh_below_minimum":                    {"configuration.event.poller.refresh_interval"},
		"refresh_not_numeric":                      {"configuration.event.poller.refresh_interval"},
		"callback_relative":                        {"configuration.event.notification.callback.url"},
		"callback_ftp":                             {"configuration.event.notification.callback.url"},
		"callback_missing_with_events":             {"configuration.event.notification.callback.url"},
		"callback_refused_by_check":                {"configuration.event.notification.callback.url"},
		"unknown_element_key":                      {"element.key"},
		"unknown_top_level_key":                    {"key"},
		"missing_element":                          {"element.key"},
		"name_missing":                             {"name"},
		"name_empty":                               {"name"},
		"name_number":                              {"name"},
		"tags_not_strings":                         {"tags[1]", "tags[2]"},
		"configuration_not_object":                 {"configuration"},
		"malformed_json":                           {""},
		"empty_body":                               {""},
		"array_body":                               {""},
		"poller_configuration_invalid_json_string": {"configuration.event.poller.configuration"},
		"resource_not_object":                      {"configuration.event.poller.configuration.contacts"},
		"hubs_url":                                 {"configuration.event.poller.configuration.contacts.url"},
		"batch_size_zero":                          {"configuration.event.notification.batch_size"},
		"batch_size_101":                           {"configuration.event.notification.batch_size"},
		"bad_environment":                          {"configuration.environment"},
		"bad_base_url":                             {"configuration.base.url"},
		"generic_relative_url_without_base":        {"configuration.base.url"},
		"missing_required_config":                  {"configuration.oauth.api.secret"},
		"secret_redacted_on_create":                {"configuration.api.key"},
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, probs := ParseCreate(readTestdata(t, "testdata/create/bad/"+name+".json"), rules)
			var got []string
			for _, p := range probs {
				got = append(got, p.Field)
			}
			if !slices.Equal(got, want) {
				t.Errorf("fields = %q, want %q (problems %+v)", got, want, probs)
			}
		})
	}
}

func TestParseCreateListsAllProblemsAtOnce(t *testing.T) {
	_, _, probs := ParseCreate(readTestdata(t, "testdata/create/bad/many_problems.json"), parseRules(t))
	fields := map[string]bool{}
	for _, p := range probs {
		fields[p.Field] = true
	}
	for _, want := range []string{
		"name",
		"tags[0]",
		"configuration.event.notification.callback.url",
		"configuration.event.notification.batch_size",
		"configuration.event.poller.refresh_interval",
		"configuration.event.poller.configuration.a.url",
		"configuration.event.poller.configuration.a.idField",
		"configuration.event.poller.configuration.a.datesConfiguration.updatedDateFormat",
		"configuration.event.poller.configuration.a.datesConfiguration.updatedDateTimezone",
		"configuration.event.poller.configuration.b",
	} {
		if !fields[want] {
			t.Errorf("no problem reported at %s; got %+v", want, probs)
		}
	}
}

func TestParseCreateAcceptsTheSpecExample(t *testing.T) {
	in, pd, probs := ParseCreate(readTestdata(t, "testdata/create/good/spec_example.json"), parseRules(t))
	if len(probs) > 0 {
		t.Fatalf("refused: %+v", probs)
	}
	if pd == nil || pd.Code != "<OAuth authorization code>" {
		t.Errorf("providerData = %+v", pd)
	}
	if in.Name != "CRM contacts" || in.ElementKey != "infusionsoftrest" || !slices.Equal(in.Tags, []string{"crm"}) {
		t.Errorf("name %q key %q tags %q", in.Name, in.ElementKey, in.Tags)
	}
	if !in.EventsEnabled || in.CallbackURL != "https://myapp.example.com/hooks" || in.RefreshInterval != 15*time.Minute || in.BatchSize != 10 {
		t.Errorf("derived: events %v callback %q refresh %v batch %d", in.EventsEnabled, in.CallbackURL, in.RefreshInterval, in.BatchSize)
	}
	if in.Status != StatusActive || in.Disabled {
		t.Errorf("status %q disabled %v", in.Status, in.Disabled)
	}
	if _, ok := in.Resources["contacts"]; !ok || len(in.Resources) != 1 {
		t.Errorf("resources = %v", in.Resources)
	}
	wantSecrets := map[string]string{
		"oauth.api.key":                    "<client id>",
		"oauth.api.secret":                 "<client secret>",
		"event.notification.signature.key": "<shared secret>",
	}
	if !reflect.DeepEqual(in.Secrets, wantSecrets) {
		t.Errorf("secrets = %v, want %v", in.Secrets, wantSecrets)
	}
	for k := range wantSecrets {
		if _, ok := in.Configuration[k]; ok {
			t.Errorf("secret %s is in Configuration", k)
		}
	}
	if in.Configuration["event.poller.refresh_interval"] != "15" {
		t.Errorf("refresh_interval not kept as sent: %#v", in.Configuration["event.poller.refresh_interval"])
	}
	if in.ID != 0 || in.Token != "" || !in.CreatedDate.IsZero() {
		t.Errorf("ParseCreate assigned caller fields: id %d token %q created %v", in.ID, in.Token, in.CreatedDate)
	}
}

func TestParseCreateReadsStringTypedValues(t *testing.T) {
	in, _, probs := ParseCreate(readTestdata(t, "testdata/create/good/string_typed.json"), parseRules(t))
	if len(probs) > 0 {
		t.Fatalf("refused: %+v", probs)
	}
	if !in.EventsEnabled || in.BatchSize != 25 || in.RefreshInterval != 150*time.Second || in.Disabled || in.Status != StatusActive {
		t.Errorf("events %v batch %d refresh %v disabled %v status %q", in.EventsEnabled, in.BatchSize, in.RefreshInterval, in.Disabled, in.Status)
	}
	if in.Configuration["event.vendor.type"] != "polling" {
		t.Errorf("unused key not kept: %v", in.Configuration)
	}
	if in.Configuration["event.notification.enabled"] != "true" {
		t.Errorf("value not kept as sent: %#v", in.Configuration["event.notification.enabled"])
	}
}

func TestParseCreateReadsPollerConfigurationFromAJSONString(t *testing.T) {
	in, _, probs := ParseCreate(readTestdata(t, "testdata/create/good/poller_configuration_string.json"), parseRules(t))
	if len(probs) > 0 {
		t.Fatalf("refused: %+v", probs)
	}
	pc, ok := in.Configuration[KeyPollerConfig].(map[string]any)
	if !ok {
		t.Fatalf("event.poller.configuration not normalized to an object: %#v", in.Configuration[KeyPollerConfig])
	}
	contacts, _ := pc["contacts"].(map[string]any)
	if contacts["idField"] != "id" {
		t.Errorf("contacts = %v", contacts)
	}
	if in.ElementKey != "generic" || len(in.Resources) != 1 {
		t.Errorf("key %q resources %v", in.ElementKey, in.Resources)
	}
}

// The JSON string form of event.poller.configuration was decoded up to
// encoding/json's own limit of 10,000 levels and stored as an object, past
// the body's nesting limit (api.MaxDepth).
func TestParseCreateRefusesAPollerConfigurationStringNestedTooDeep(t *testing.T) {
	var body map[string]any
	if err := json.Unmarshal(readTestdata(t, "testdata/create/good/poller_configuration_string.json"), &body); err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat("[", api.MaxDepth) + strings.Repeat("]", api.MaxDepth)
	body["configuration"].(map[string]any)[KeyPollerConfig] = `{"contacts": {"url": "/c", "idField": "id", "x": ` + deep + `}}`
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	_, _, probs := ParseCreate(raw, parseRules(t))
	if !slices.ContainsFunc(probs, func(p FieldError) bool {
		return p.Field == "configuration."+KeyPollerConfig && strings.Contains(p.Message, "levels deep")
	}) {
		t.Errorf("problems %+v; want configuration.%s refused as nested too deep", probs, KeyPollerConfig)
	}
}

func TestParseCreateConvertsLegacyURLsWithTheConnectorsIDField(t *testing.T) {
	in, _, probs := ParseCreate(readTestdata(t, "testdata/create/good/legacy_urls.json"), parseRules(t))
	if len(probs) > 0 {
		t.Fatalf("refused: %+v", probs)
	}
	if _, ok := in.Configuration[KeyPollerURLs]; ok {
		t.Error("event.poller.urls kept after conversion")
	}
	pc := in.Configuration[KeyPollerConfig].(map[string]any)
	if len(pc) != 2 || len(in.Resources) != 2 {
		t.Fatalf("resources = %v", pc)
	}
	for _, name := range []string{"articles", "prices"} {
		r, _ := pc[name].(map[string]any)
		if r["idField"] != "finfoArticleId" {
			t.Errorf("%s idField = %v, want finfo's finfoArticleId", name, r["idField"])
		}
	}
	if in.Secrets["password"] != "hunter2" || in.Configuration["username"] != "me@example.com" {
		t.Errorf("secrets %v configuration %v", in.Secrets, in.Configuration)
	}
}

func TestParseCreateUsesTheConnectorsDefaultResources(t *testing.T) {
	in, _, probs := ParseCreate(readTestdata(t, "testdata/create/good/connector_defaults.json"), parseRules(t))
	if len(probs) > 0 {
		t.Fatalf("refused: %+v", probs)
	}
	reg, _ := parseRegistry()
	def, _ := reg.Get("infusion")
	pc := in.Configuration[KeyPollerConfig].(map[string]any)
	if len(pc) != len(def.Resources) || len(in.Resources) != len(def.Resources) || len(pc) == 0 {
		t.Errorf("got %d resources (%d parsed), connector has %d", len(pc), len(in.Resources), len(def.Resources))
	}
	if in.Status != StatusDisabled || !in.Disabled {
		t.Errorf("status %q disabled %v", in.Status, in.Disabled)
	}
	if in.Secrets["sessionuuid"] == "" || in.Secrets["licenseuuid"] == "" {
		t.Errorf("infusion ids not secret: %v", in.Secrets)
	}
	// The default resources are a copy: changing them leaves the registry's.
	for _, r := range pc {
		r.(map[string]any)["url"] = "/changed"
	}
	def2, _ := reg.Get("infusion")
	for name, r := range def2.Resources {
		if r["url"] == "/changed" {
			t.Errorf("registry resource %s changed through an instance", name)
		}
	}
}

func TestParseCreateDefaultsRefreshIntervalToFifteenMinutesOrTheMinimum(t *testing.T) {
	body := readTestdata(t, "testdata/create/good/events_off_minimal.json")
	rules := parseRules(t)
	in, _, probs := ParseCreate(body, rules)
	if len(probs) > 0 {
		t.Fatalf("refused: %+v", probs)
	}
	if in.RefreshInterval != 15*time.Minute || in.EventsEnabled || in.BatchSize != 10 {
		t.Errorf("refresh %v events %v batch %d", in.RefreshInterval, in.EventsEnabled, in.BatchSize)
	}
	rules.MinRefreshInterval = 20 * time.Minute
	in, _, probs = ParseCreate(body, rules)
	if len(probs) > 0 {
		t.Fatalf("refused: %+v", probs)
	}
	if in.RefreshInterval != 20*time.Minute {
		t.Errorf("refresh %v, want the 20m minimum", in.RefreshInterval)
	}
}

func TestParseCreateAcceptsFractionalMinutesAtTheMinimum(t *testing.T) {
	rules := parseRules(t)
	rules.MinRefreshInterval = 30 * time.Second
	body := []byte(`{"name": "n", "key": "generic", "configuration": {"event.poller.refresh_interval": "0.5"}}`)
	in, _, probs := ParseCreate(body, rules)
	if len(probs) > 0 {
		t.Fatalf("refused: %+v", probs)
	}
	if in.RefreshInterval != 30*time.Second {
		t.Errorf("refresh = %v", in.RefreshInterval)
	}
}

func TestParseCreateWithoutCallbackCheckAcceptsAnyHTTPCallback(t *testing.T) {
	rules := parseRules(t)
	rules.CheckCallback = nil
	body := readTestdata(t, "testdata/create/bad/callback_refused_by_check.json")
	if _, _, probs := ParseCreate(body, rules); len(probs) > 0 {
		t.Errorf("refused without a check: %+v", probs)
	}
}

func TestParseCreateUnknownConnectorStillReportsOtherProblems(t *testing.T) {
	body := []byte(`{"name": 1, "key": "nope", "configuration": {"event.poller.refresh_interval": "x", "event.notification.enabled": true}}`)
	_, _, probs := ParseCreate(body, parseRules(t))
	want := []string{"name", "key", "configuration.event.notification.callback.url", "configuration.event.poller.refresh_interval"}
	var got []string
	for _, p := range probs {
		got = append(got, p.Field)
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("no problem at %s: %+v", w, probs)
		}
	}
	for _, p := range probs {
		if p.Field == "key" && !strings.Contains(p.Message, "infusionsoftrest") {
			t.Errorf("unknown key message does not list the known connectors: %q", p.Message)
		}
	}
}

func TestDeriveFillsDerivedFieldsOfAStoredInstance(t *testing.T) {
	rules := parseRules(t)
	parsed, _, probs := ParseCreate(readTestdata(t, "testdata/create/good/string_typed.json"), rules)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	// What the store keeps: the configuration round-tripped through JSON.
	raw, err := json.Marshal(parsed.Configuration)
	if err != nil {
		t.Fatal(err)
	}
	stored := &Instance{ElementKey: parsed.ElementKey, Secrets: parsed.Secrets}
	if err := json.Unmarshal(raw, &stored.Configuration); err != nil {
		t.Fatal(err)
	}
	if probs := stored.Derive(rules.Registry); len(probs) > 0 {
		t.Fatalf("Derive: %+v", probs)
	}
	if stored.EventsEnabled != parsed.EventsEnabled || stored.CallbackURL != parsed.CallbackURL ||
		stored.RefreshInterval != parsed.RefreshInterval || stored.BatchSize != parsed.BatchSize ||
		len(stored.Resources) != len(parsed.Resources) {
		t.Errorf("Derive gave %+v, ParseCreate %+v", stored, parsed)
	}
	// Derive does not apply the server's minimum.
	stored.Configuration[KeyRefreshInterval] = 0.01
	if probs := stored.Derive(rules.Registry); len(probs) > 0 || stored.RefreshInterval != 600*time.Millisecond {
		t.Errorf("Derive with a small interval: %v, %+v", stored.RefreshInterval, probs)
	}
	stored.ElementKey = "gone"
	if probs := stored.Derive(rules.Registry); len(probs) == 0 || probs[0].Field != "element.key" {
		t.Errorf("Derive with an unknown connector: %+v", probs)
	}
}

// FuzzParseCreate: no body makes ParseCreate panic; every problem has a
// message, and names its field unless the body is not a JSON object; a
// body it accepts comes back equal through View → JSON → ParseCreate once
// the redacted secrets are filled in again.
func FuzzParseCreate(f *testing.F) {
	for _, pattern := range []string{"testdata/create/good/*.json", "testdata/create/bad/*.json"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte(`{"name":"x","key":"generic","configuration":{"event.poller.configuration":"{\"a\":null}"}}`))
	f.Add([]byte(`{"name":"x","key":"generic","configuration":{"event.poller.refresh_interval":1e308}}`))
	rules := parseRules(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		in, pd, probs := ParseCreate(body, rules)
		if len(probs) > 0 {
			if in != nil {
				t.Fatal("problems and an instance")
			}
			checkProblemsNameFields(t, body, probs)
			return
		}
		view, err := json.Marshal(in.View(false))
		if err != nil {
			t.Fatalf("marshal view: %v", err)
		}
		var doc map[string]any
		if err := json.Unmarshal(view, &doc); err != nil {
			t.Fatal(err)
		}
		cfg, _ := doc["configuration"].(map[string]any)
		for k, v := range in.Secrets {
			if cfg[k] != Redacted {
				t.Fatalf("secret %s shown as %v", k, cfg[k])
			}
			cfg[k] = v
		}
		if pd != nil && pd.Code != "" {
			doc["providerData"] = map[string]any{"code": pd.Code} // not part of the view
		}
		again, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		in2, _, probs := ParseCreate(again, rules)
		if len(probs) > 0 {
			t.Fatalf("view of an accepted body refused: %+v\nbody: %s\nview: %s", probs, body, again)
		}
		if !sameInstance(in, in2) {
			t.Fatalf("round trip changed the instance:\n%+v\n%+v", in, in2)
		}
	})
}

// checkProblemsNameFields checks that every problem has a message, and a
// field unless body is not one JSON object (the only problem then is about
// the whole body).
func checkProblemsNameFields(t *testing.T, body []byte, probs []FieldError) {
	t.Helper()
	var obj map[string]any
	isObject := json.Unmarshal(body, &obj) == nil && obj != nil
	for _, p := range probs {
		if p.Message == "" || (isObject && p.Field == "") {
			t.Fatalf("problem %+v of %q names no field or has no message", p, body)
		}
	}
}

// sameInstance compares what ParseCreate produces; parsed resources are
// compared by name (they may hold compiled values).
func sameInstance(a, b *Instance) bool {
	return a.Name == b.Name && a.ElementKey == b.ElementKey &&
		reflect.DeepEqual(a.Configuration, b.Configuration) && reflect.DeepEqual(a.Secrets, b.Secrets) &&
		slices.Equal(a.Tags, b.Tags) && a.Disabled == b.Disabled && a.Status == b.Status &&
		a.EventsEnabled == b.EventsEnabled && a.CallbackURL == b.CallbackURL &&
		a.RefreshInterval == b.RefreshInterval && a.BatchSize == b.BatchSize &&
		slices.Equal(sortedKeys(a.Resources), sortedKeys(b.Resources))
}
