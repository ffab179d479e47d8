package connectors

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func loadBuiltins(t *testing.T) *Registry {
	t.Helper()
	r, err := Load("")
	if err != nil {
		t.Fatalf("Load(\"\"): %v", err)
	}
	return r
}

func get(t *testing.T, r *Registry, key string) *Definition {
	t.Helper()
	d, ok := r.Get(key)
	if !ok {
		t.Fatalf("Get(%q): not found; keys %v", key, r.Keys())
	}
	return d
}

func TestBuiltinsLoad(t *testing.T) {
	t.Parallel()
	r := loadBuiltins(t)
	want := []string{"finfo", "generic", "infinia", "infusion", "infusionsoftrest"}
	if got := r.Keys(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Keys() = %v, want %v", got, want)
	}
	for _, k := range want {
		d := get(t, r, k)
		if d.Key != k || d.Name == "" || d.Source != "builtin:"+k+".yaml" {
			t.Errorf("%s: Key %q Name %q Source %q", k, d.Key, d.Name, d.Source)
		}
	}
	if _, ok := r.Get("nope"); ok {
		t.Error("Get(nope) found a definition")
	}
}

func TestInfusionsoftRESTIsOAuth2AuthorizationCodeWithNextPagination(t *testing.T) {
	t.Parallel()
	d := get(t, loadBuiltins(t), "infusionsoftrest")
	if u, err := d.BaseURL(""); err != nil || u != "https://api.infusionsoft.com/crm/rest/v1" {
		t.Errorf("BaseURL(\"\") = %q, %v", u, err)
	}
	o := d.Auth.OAuth2
	if d.Auth.Type != AuthOAuth2 || o == nil || o.Grant != GrantAuthorizationCode ||
		o.TokenURL != "https://api.infusionsoft.com/token" ||
		o.AuthorizationURL != "https://accounts.infusionsoft.com/app/oauth/authorize" {
		t.Errorf("Auth = %+v / %+v", d.Auth, o)
	}
	if want := map[string]any{"type": "next", "nextPath": "next"}; !reflect.DeepEqual(d.Pagination, want) {
		t.Errorf("Pagination = %v, want %v", d.Pagination, want)
	}
	if want := []string{"oauth.api.key", "oauth.api.secret", "oauth.callback.url"}; !reflect.DeepEqual(d.RequiredConfig, want) {
		t.Errorf("RequiredConfig = %v", d.RequiredConfig)
	}
	c := d.Resources["contacts"]
	dates, _ := c["datesConfiguration"].(map[string]any)
	if c["idField"] != "id" || dates["updatedDateField"] != "last_updated" || dates["createdDateField"] != "date_created" ||
		dates["updatedDateFormat"] != "yyyy-MM-dd'T'HH:mm:ss.SSSZ" ||
		c["url"] != "/contacts?since=${gmtDate:yyyy-MM-dd'T'HH:mm:ss.SSS'Z'}&order=date_created" {
		t.Errorf("contacts = %v", c)
	}
	if !d.NeedsAuthorizationCode(nil) {
		t.Error("NeedsAuthorizationCode = false")
	}
}

func TestInfusionSendsSessionHeadersAtTenPerSecondInDeltaMode(t *testing.T) {
	t.Parallel()
	d := get(t, loadBuiltins(t), "infusion")
	if want := map[string]string{"licenseuuid": "licenseuuid", "sessionuuid": "sessionuuid"}; d.Auth.Type != AuthHeaders || !reflect.DeepEqual(d.Auth.Headers, want) {
		t.Errorf("Auth = %+v", d.Auth)
	}
	if !d.Auth.ReauthorizeOn401 {
		t.Error("ReauthorizeOn401 = false; a new session id invalidates the old")
	}
	for _, k := range []string{"licenseuuid", "sessionuuid"} {
		if !d.IsSecret(k) {
			t.Errorf("IsSecret(%q) = false", k)
		}
	}
	if d.RateLimit != 10 {
		t.Errorf("RateLimit = %v, want 10", d.RateLimit)
	}
	if _, err := d.BaseURL(""); err == nil || !strings.Contains(err.Error(), "placeholder") {
		t.Errorf("BaseURL of the placeholder = %v, want a placeholder error", err)
	}
	if len(d.Resources) != 6 {
		t.Errorf("%d resources, want the 6 data synchronisation endpoints", len(d.Resources))
	}
	for name, r := range d.Resources {
		dates, _ := r["datesConfiguration"].(map[string]any)
		if r["mode"] != "delta" || r["versionField"] != "versionNumber" ||
			dates["createdDateField"] != "createdTimestamp" || dates["updatedDateField"] != "modifiedTimestamp" ||
			dates["deletedDateField"] != "deletedTimestamp" {
			t.Errorf("%s = %v", name, r)
		}
	}
}

func TestFinfoIsPasswordGrantWithArticleIDs(t *testing.T) {
	t.Parallel()
	d := get(t, loadBuiltins(t), "finfo")
	o := d.Auth.OAuth2
	if d.Auth.Type != AuthOAuth2 || o.Grant != GrantPassword || o.ClientID != "finfo-api" ||
		o.TokenURL != "https://sso.logiq.no/auth/realms/finfo/protocol/openid-connect/token" {
		t.Errorf("Auth = %+v / %+v", d.Auth, o)
	}
	if d.IDField != "finfoArticleId" {
		t.Errorf("IDField = %q", d.IDField)
	}
	cfg := map[string]any{"base.url": "https://api.finfo.example/v2", "username": "u", "password": "p", "oauth.api.secret": "s"}
	if p := d.CheckConfig(cfg); len(p) != 0 {
		t.Errorf("CheckConfig = %v", p)
	}
	a, err := d.ResolveAuth(cfg)
	if err != nil || a.OAuth2.ClientID != "finfo-api" || a.OAuth2.Grant != GrantPassword {
		t.Errorf("ResolveAuth = %+v, %v", a.OAuth2, err)
	}
}

func TestInfiniaIsEnvelopeWithSandboxAndPOSTStatusQueries(t *testing.T) {
	t.Parallel()
	d := get(t, loadBuiltins(t), "infinia")
	e := d.Auth.Envelope
	if d.Auth.Type != AuthEnvelope || e == nil || e.Padding != PaddingPKCS1v15 || e.SignatureAlgorithm != SigSHA256withRSA ||
		e.SuccessCode != "SUC-200" || e.DataType != "JSON" || !reflect.DeepEqual(e.RetryableCodes, []string{"SYS-003", "SYS-008"}) {
		t.Errorf("Auth = %+v / %+v", d.Auth, e)
	}
	for env, want := range map[string]string{"": "https://openapi.infiniax.com/api", "production": "https://openapi.infiniax.com/api", "sandbox": "https://uat-openapi.infiniax.com/api"} {
		if u, err := d.BaseURL(env); err != nil || u != want {
			t.Errorf("BaseURL(%q) = %q, %v; want %q", env, u, err, want)
		}
	}
	if !d.IsSecret("infinia.private.key") || d.IsSecret("infinia.public.key") {
		t.Error("infinia.private.key must be the secret, infinia.public.key not")
	}
	for _, name := range []string{"accountBinding", "tradeDetailsUpload", "revenueSharing"} {
		if r := d.Resources[name]; r == nil || r["method"] != "POST" {
			t.Errorf("resource %s = %v, want a POST poll", name, r)
		}
	}
	p := d.CheckConfig(map[string]any{"environment": "sandbox", "infinia.app.id": "a", "infinia.public.key": "k",
		"infinia.private.key": "k", "infinia.padding": "NoPadding"})
	if len(p) != 1 || p[0].Field != "infinia.padding" {
		t.Errorf("CheckConfig = %v, want one infinia.padding problem", p)
	}
	a, err := d.ResolveAuth(map[string]any{"infinia.app.id": "a", "infinia.public.key": "k", "infinia.private.key": "k",
		"infinia.signature.algorithm": "SHA1withRSA", "infinia.version": "2.0"})
	if err != nil || a.Envelope.SignatureAlgorithm != SigSHA1withRSA || a.Envelope.Version != "2.0" || a.Envelope.Padding != PaddingPKCS1v15 {
		t.Errorf("ResolveAuth = %+v, %v", a.Envelope, err)
	}
	if d.Auth.Envelope.SignatureAlgorithm != SigSHA256withRSA {
		t.Error("ResolveAuth changed the definition")
	}
}

func TestGenericTakesEverythingFromConfiguration(t *testing.T) {
	t.Parallel()
	d := get(t, loadBuiltins(t), "generic")
	if !d.BaseURLFromConfig || !d.Auth.FromConfig || d.Auth.Type != AuthNone || d.Pagination != nil || d.Resources != nil {
		t.Errorf("generic = %+v", d)
	}
	if _, err := d.BaseURL(""); err == nil {
		t.Error("BaseURL without base.url succeeded")
	}
	if u, err := d.ResolveBaseURL(map[string]any{"base.url": "https://api.example.com/v1"}); err != nil || u != "https://api.example.com/v1" {
		t.Errorf("ResolveBaseURL = %q, %v", u, err)
	}
	if p := d.CheckConfig(map[string]any{}); len(p) != 0 {
		t.Errorf("CheckConfig(empty) = %v; generic needs nothing", p)
	}
	if a, err := d.ResolveAuth(nil); err != nil || a.Type != AuthNone {
		t.Errorf("ResolveAuth(nil) = %+v, %v", a, err)
	}

	a, err := d.ResolveAuth(map[string]any{"auth.type": "apikey", "api.key": "k", "api.key.query": "key"})
	if err != nil || a.Type != AuthAPIKey || a.APIKey.Query != "key" {
		t.Errorf("apikey: %+v, %v", a, err)
	}
	a, err = d.ResolveAuth(map[string]any{"auth.type": "headers", "auth.header.X-Tenant": "t1", "auth.header.X-Token": "tok"})
	if want := map[string]string{"X-Tenant": "auth.header.X-Tenant", "X-Token": "auth.header.X-Token"}; err != nil || !reflect.DeepEqual(a.Headers, want) {
		t.Errorf("headers: %+v, %v", a, err)
	}
	if !d.IsSecret("auth.header.X-Token") || !d.IsSecret("api.key") || d.IsSecret("auth.type") {
		t.Error("IsSecret: auth.header.* and api.key are secrets, auth.type is not")
	}
	a, err = d.ResolveAuth(map[string]any{"auth.type": "oauth2", "oauth.grant_type": "client_credentials",
		"oauth.token.url": "https://auth.example.com/token", "oauth.api.key": "id", "oauth.api.secret": "s", "oauth.scope": "read write"})
	if err != nil || a.OAuth2.Grant != GrantClientCredentials || a.OAuth2.ClientID != "id" || !reflect.DeepEqual(a.OAuth2.Scopes, []string{"read", "write"}) {
		t.Errorf("oauth2: %+v, %v", a.OAuth2, err)
	}

	got := fields(d.CheckConfig(map[string]any{"auth.type": "kerberos"}))
	if !reflect.DeepEqual(got, []string{"auth.type"}) {
		t.Errorf("unknown auth.type: problems %v", got)
	}
	got = fields(d.CheckConfig(map[string]any{"auth.type": "basic", "username": "u"}))
	if !reflect.DeepEqual(got, []string{"password"}) {
		t.Errorf("basic without password: problems %v", got)
	}
	got = fields(d.CheckConfig(map[string]any{"auth.type": "oauth2", "oauth.grant_type": "password"}))
	if want := []string{"oauth.token.url", "oauth.api.key", "username", "password"}; !reflect.DeepEqual(got, want) {
		t.Errorf("oauth2 password: problems %v, want %v", got, want)
	}
	if p, err := d.ResolvePagination(map[string]any{"pagination": `{"type":"link"}`}); err != nil || p["type"] != "link" {
		t.Errorf("ResolvePagination(JSON string) = %v, %v", p, err)
	}
	if got := fields(d.CheckConfig(map[string]any{"pagination": map[string]any{"type": "scroll"}})); !reflect.DeepEqual(got, []string{"pagination"}) {
		t.Errorf("bad pagination: problems %v", got)
	}
}

func TestCheckConfigListsEveryMissingKey(t *testing.T) {
	t.Parallel()
	r := loadBuiltins(t)
	cases := map[string]struct {
		cfg  map[string]any
		want []string
	}{
		"infusionsoftrest": {map[string]any{"oauth.api.key": "id"}, []string{"oauth.api.secret", "oauth.callback.url"}},
		"infusion":         {map[string]any{"licenseuuid": "l"}, []string{"sessionuuid", "base.url"}},
		"finfo":            {map[string]any{"base.url": "https://f.example"}, []string{"username", "password", "oauth.api.secret"}},
		"infinia":          {map[string]any{"environment": "staging"}, []string{"infinia.app.id", "infinia.public.key", "infinia.private.key", "environment"}},
	}
	for key, c := range cases {
		if got := fields(get(t, r, key).CheckConfig(c.cfg)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: problems %v, want %v", key, got, c.want)
		}
	}
	// Typed values count like strings.
	d := get(t, r, "infusion")
	if p := d.CheckConfig(map[string]any{"licenseuuid": "l", "sessionuuid": 42.0, "base.url": "https://infusion.example/api"}); len(p) != 0 {
		t.Errorf("infusion complete: %v", p)
	}
}

func TestBaseURLWinsOverEnvironment(t *testing.T) {
	t.Parallel()
	d := get(t, loadBuiltins(t), "infinia")
	u, err := d.ResolveBaseURL(map[string]any{"environment": "sandbox", "base.url": "https://mock.example/api"})
	if err != nil || u != "https://mock.example/api" {
		t.Errorf("ResolveBaseURL = %q, %v", u, err)
	}
	if _, err := d.ResolveBaseURL(map[string]any{"base.url": "not a url"}); err == nil {
		t.Error("a relative base.url was accepted")
	}
	if _, err := d.BaseURL("staging"); err == nil || !strings.Contains(err.Error(), "production, sandbox") {
		t.Errorf("BaseURL(staging) = %v", err)
	}
}

func TestGetReturnsACopy(t *testing.T) {
	t.Parallel()
	r := loadBuiltins(t)
	d := get(t, r, "infusionsoftrest")
	d.Resources["contacts"]["url"] = "/changed"
	d.Pagination["type"] = "none"
	d.Auth.OAuth2.Grant = GrantPassword
	d.BaseURLs[EnvProduction] = "https://changed.example"
	again := get(t, r, "infusionsoftrest")
	if again.Resources["contacts"]["url"] == "/changed" || again.Pagination["type"] != "next" ||
		again.Auth.OAuth2.Grant != GrantAuthorizationCode || again.BaseURLs[EnvProduction] == "https://changed.example" {
		t.Error("changing a Get result changed the registry")
	}
}

func TestUserDirectoryAddsAndOverrides(t *testing.T) {
	t.Parallel()
	r, err := Load("testdata/user")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"acme", "finfo", "generic", "infinia", "infusion", "infusionsoftrest"}
	if got := r.Keys(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Keys() = %v, want %v", got, want)
	}
	acme := get(t, r, "acme")
	if acme.Source != filepath.Join("testdata", "user", "acme.yaml") || acme.RateLimit != 2.5 || acme.IDField != "orderId" ||
		acme.Auth.APIKey.Header != "X-Api-Key" || acme.Pagination["pageSize"] != 100.0 {
		t.Errorf("acme = %+v", acme)
	}
	if u, _ := acme.BaseURL(EnvSandbox); u != "https://sandbox.acme.example/v2" {
		t.Errorf("acme sandbox = %q", u)
	}
	keap := get(t, r, "infusionsoftrest")
	if keap.Name != "Keap through our proxy" || keap.Auth.OAuth2.TokenURL != "https://keap-proxy.internal.example/token" {
		t.Errorf("override = %+v", keap)
	}
	// Replaced whole, not merged: the override has no pagination or resources.
	if keap.Pagination != nil || keap.Resources != nil {
		t.Errorf("override kept built-in fields: %v %v", keap.Pagination, keap.Resources)
	}
}

func TestLoadRefusesDuplicateKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	def := "key: shop\nname: Shop\nbaseURLs:\n  production: https://shop.example\n"
	for _, name := range []string{"a.yaml", "b.yml"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(def), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Load(dir)
	want := "connectors: " + filepath.Join(dir, "b.yml") + `: key: "shop" is already defined by ` + filepath.Join(dir, "a.yaml")
	if err == nil || err.Error() != want {
		t.Fatalf("Load = %v\nwant %s", err, want)
	}
}

func TestLoadNamesTheFileOfABadDefinition(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data, err := os.ReadFile("testdata/bad/unknown-auth.bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "weird.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Load(dir)
	want := "connectors: " + filepath.Join(dir, "weird.yaml") + `: auth.type: unknown auth type "magic" (want none, oauth2, apikey, basic, headers or envelope)`
	if r != nil || err == nil || err.Error() != want {
		t.Fatalf("Load = %v, %v\nwant %s", r, err, want)
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("Load of a missing directory succeeded")
	}
	if _, err := Load(filepath.Join(dir, "weird.yaml")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Load of a file = %v", err)
	}
}

// badFiles maps each file in testdata/bad to the exact error it gives.
var badFiles = map[string]string{
	"apikey-both.bad.yaml":                   `auth.apikey: give exactly one of header and query`,
	"bad-key.bad.yaml":                       `key: "my connector" must be letters, digits, '-' and '_', starting with a letter or digit`,
	"base-url-from-config-and-urls.bad.yaml": `baseURLs: not allowed with baseURLFromConfig: true`,
	"block-for-other-type.bad.yaml":          `auth.headers: only allowed when auth.type is headers`,
	"duplicate-yaml-key.bad.yaml":            `line 2: mapping key "name" already defined at line 1`,
	"empty.bad.yaml":                         `empty file`,
	"envelope-padding.bad.yaml":              `auth.envelope.padding: unknown padding "NoPadding" (want PKCS1v15, OAEPWithSHA-1AndMGF1 or OAEPWithSHA-256AndMGF1)`,
	"from-config-with-type.bad.yaml":         `auth.fromConfig: requires auth.type none (configuration auth.type chooses the scheme)`,
	"header-name.bad.yaml":                   `auth.headers.X Tenant: not a valid header name`,
	"headers-empty.bad.yaml":                 `auth.headers: required when auth.type is headers (header name: configuration key)`,
	"missing-base-url.bad.yaml":              `baseURLs.production: required (or set baseURLFromConfig: true for connectors whose instances give base.url)`,
	"missing-name.bad.yaml":                  `name: required`,
	"negative-rate-limit.bad.yaml":           `rateLimit: must be 0 (no limit) or more requests per second, not -1`,
	"oauth2-bad-grant.bad.yaml":              `auth.oauth2.grant: unknown grant "implicit" (want authorization_code, password or client_credentials)`,
	"oauth2-missing-block.bad.yaml":          `auth.oauth2: required when auth.type is oauth2`,
	"oauth2-missing-token-url.bad.yaml":      `auth.oauth2.tokenURL: required`,
	"pagination-type.bad.yaml":               `pagination.type: must be one of none, link, next, offset, page, cursor or repeat`,
	"rate-limit-string.bad.yaml":             "line 4: cannot unmarshal !!str `fast` into float64",
	"relative-base-url.bad.yaml":             `baseURLs.production: "api.example.com/v1" is not an absolute http(s) URL`,
	"resource-not-mapping.bad.yaml":          `resources.contacts: must be a mapping`,
	"resource-without-url.bad.yaml":          `resources.contacts.url: required (a path under the base URL or an absolute URL)`,
	"sandbox-only.bad.yaml":                  `baseURLs.production: required (or set baseURLFromConfig: true for connectors whose instances give base.url)`,
	"several-problems.bad.yaml": `name: required
baseURLs.production: "ftp://files.example.com" is not an absolute http(s) URL
auth.apikey: give exactly one of header and query
rateLimit: must be 0 (no limit) or more requests per second, not -5`,
	"syntax.bad.yaml":               `line 3: did not find expected key`,
	"two-documents.bad.yaml":        `more than one YAML document`,
	"unknown-auth.bad.yaml":         `auth.type: unknown auth type "magic" (want none, oauth2, apikey, basic, headers or envelope)`,
	"unknown-environment.bad.yaml":  `baseURLs.staging: unknown environment (want production or sandbox)`,
	"unknown-field.bad.yaml":        `line 2: unknown field "baseURL"`,
	"unknown-nested-field.bad.yaml": `line 8: unknown field "tokenUrl"`,
}

func TestBadDefinitionsGiveExactErrors(t *testing.T) {
	t.Parallel()
	entries, err := os.ReadDir("testdata/bad")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		seen[name] = true
		want, ok := badFiles[name]
		if !ok {
			t.Errorf("testdata/bad/%s has no expected error in badFiles", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join("testdata/bad", name))
			if err != nil {
				t.Fatal(err)
			}
			source := "testdata/bad/" + name
			d, err := parseDefinition(source, strings.TrimSuffix(name, ".bad.yaml"), data)
			var lines []string
			for _, l := range strings.Split(want, "\n") {
				lines = append(lines, "connectors: "+source+": "+l)
			}
			if d != nil || err == nil || err.Error() != strings.Join(lines, "\n") {
				t.Errorf("got %v\nwant %s", err, strings.Join(lines, "\n"))
			}
		})
	}
	for name := range badFiles {
		if !seen[name] {
			t.Errorf("badFiles names %s, which is not in testdata/bad", name)
		}
	}
}

func fields(problems []Problem) []string {
	var out []string
	for _, p := range problems {
		out = append(out, p.Field)
	}
	return out
}
