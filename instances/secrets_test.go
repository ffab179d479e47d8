package instances

import (
	"testing"

	"github.com/pollhook/pollhook/connectors"
)

func TestIsSecretKeyClassifiesConfigurationKeys(t *testing.T) {
	def := &connectors.Definition{Key: "test", SecretKeys: []string{"custom.credential", "vault.*"}}
	cases := []struct {
		key    string
		secret bool
	}{
		// *.secret
		{"oauth.api.secret", true},
		{"client_secret", true},
		{"OAUTH.API.SECRET", true},
		{"secret", true},
		// password
		{"password", true},
		{"Password", true},
		{"auth.basic.password", true},
		{"db_password", true},
		// signature and private keys
		{"event.notification.signature.key", true},
		{"infinia.private.key", true},
		{"aws.secret.key", true},
		// api keys: oauth.api.key is treated as a secret (see IsSecretKey)
		{"oauth.api.key", true},
		{"api.key", true},
		{"apikey", true},
		{"x.apikey", true},
		{"service_api_key", true},
		// tokens, but not token URLs or token settings
		{"token", true},
		{"oauth.user.token", true},
		{"oauth.refresh.token", true},
		{"access_token", true},
		{"accessToken", true},
		{"oauth.token.url", false},
		{"oauth.token.type", false},
		{"token.expires.in", false},
		// generic's static headers, Infusion's ids
		{"auth.header.X-Api-Token", true},
		{"auth.header.Accept", true},
		{"sessionuuid", true},
		{"licenseuuid", true},
		// the connector's own SecretKeys, exact and prefix
		{"custom.credential", true},
		{"vault.anything", true},
		{"custom.credential.url", false},
		// not secret
		{"infinia.public.key", false},
		{"infinia.app.id", false},
		{"oauth.callback.url", false},
		{"oauth.authorization.url", false},
		{"oauth.scope", false},
		{"username", false},
		{"base.url", false},
		{"environment", false},
		{"api.key.header", false},
		{"api.key.query", false},
		{"event.notification.enabled", false},
		{"event.notification.callback.url", false},
		{"event.poller.refresh_interval", false},
		{"event.poller.configuration", false},
		{"event.vendor.type", false},
		{"key", false},
		{"", false},
		{"...", false},
	}
	for _, c := range cases {
		if got := IsSecretKey(c.key, def); got != c.secret {
			t.Errorf("IsSecretKey(%q) = %v, want %v", c.key, got, c.secret)
		}
	}
	// Without a definition only the general names count.
	if IsSecretKey("custom.credential", nil) || !IsSecretKey("password", nil) {
		t.Error("IsSecretKey with a nil definition")
	}
}

// TestBuiltinConnectorSecretKeysAreSecret: every key a built-in connector
// lists as a secret is classified so.
func TestBuiltinConnectorSecretKeysAreSecret(t *testing.T) {
	reg, err := parseRegistry()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range reg.Keys() {
		def, _ := reg.Get(key)
		for _, k := range def.SecretKeys {
			if k[len(k)-1] == '*' {
				continue
			}
			if !IsSecretKey(k, def) {
				t.Errorf("%s: %s not secret", key, k)
			}
		}
	}
}
