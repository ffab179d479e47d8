package instances

import (
	"strings"

	"github.com/pollhook/pollhook/connectors"
)

// secretKeyNames are whole configuration keys that are secret whatever the
// connector: Infusion's session and license ids (SPEC §4 calls both secrets).
var secretKeyNames = map[string]bool{
	"password":    true,
	"secret":      true,
	"token":       true,
	"apikey":      true,
	"api.key":     true,
	"api_key":     true,
	"sessionuuid": true,
	"licenseuuid": true,
}

// secretLastWords are final words of a key that make it secret: a key is
// split into words at '.', '_' and '-' (oauth.api.secret → oauth, api,
// secret) and compared case-insensitively.
var secretLastWords = map[string]bool{
	"secret":       true, // oauth.api.secret, client_secret
	"password":     true, // password, auth.basic.password
	"passwd":       true,
	"passphrase":   true,
	"token":        true, // oauth.user.token, oauth.refresh.token — not oauth.token.url
	"accesstoken":  true,
	"refreshtoken": true,
	"apitoken":     true,
	"authtoken":    true,
	"apikey":       true, // x.apikey
	"privatekey":   true,
	"secretkey":    true,
	"clientsecret": true,
}

// secretLastPairs are final two words that make a key secret.
var secretLastPairs = map[[2]string]bool{
	{"signature", "key"}: true, // event.notification.signature.key
	{"private", "key"}:   true, // infinia.private.key
	{"api", "key"}:       true, // oauth.api.key, auth.api.key
	{"secret", "key"}:    true,
	{"access", "token"}:  true, // covered by "token" too; kept for clarity
}

// IsSecretKey reports whether the configuration key holds a secret: its value
// is kept in Instance.Secrets (sealed at rest), never in Configuration, and
// shown as Redacted in every response.
//
// Secret are, compared case-insensitively with '.', '_' and '-' as word
// separators: keys ending in secret, password (also the bare key password),
// token (so oauth.refresh.token but not oauth.token.url), apikey or api.key,
// signature.key, private.key and secret.key; the generic connector's static
// headers (auth.header.<Name>); Infusion's sessionuuid and licenseuuid; and
// every key the connector lists in def.SecretKeys, exactly or as a "prefix*"
// (def may be nil).
//
// oauth.api.key is treated as a secret. Open Connectors documents it as "the
// API key or client ID"; an OAuth client id is not confidential, but the same
// key holds real API keys for other connectors (Infusionsoft's legacy API key
// is an encryption key), and hiding a client id costs a client nothing that
// it did not send itself, while showing an API key would leak it. A PATCH that
// sends it back as "********" keeps the stored value.
//
// Public keys (infinia.public.key), URLs (oauth.token.url) and the names of
// fields (event.poller.configuration's idField, ...) are not secret.
func IsSecretKey(key string, def *connectors.Definition) bool {
	lower := strings.ToLower(strings.TrimSpace(key))
	if lower == "" {
		return false
	}
	if def != nil && (def.IsSecret(key) || def.IsSecret(lower)) {
		return true
	}
	if strings.HasPrefix(lower, "auth.header.") {
		return true // generic's static headers carry credentials
	}
	if secretKeyNames[lower] {
		return true
	}
	words := strings.FieldsFunc(lower, func(r rune) bool { return r == '.' || r == '_' || r == '-' })
	if len(words) == 0 {
		return false
	}
	if secretLastWords[words[len(words)-1]] {
		return true
	}
	if len(words) >= 2 && secretLastPairs[[2]string{words[len(words)-2], words[len(words)-1]}] {
		return true
	}
	return false
}

// isCredentialKey reports whether a change of this secret gives the instance
// new upstream credentials: every secret except those of event.* keys (the
// notification signature key concerns the callback, not the upstream).
func isCredentialKey(secretKey string) bool {
	return !strings.HasPrefix(strings.ToLower(secretKey), "event.")
}
