package upstream

import (
	"errors"

	"github.com/pollhook/pollhook/connectors"
)

// CheckCredentials reports what can be told of an instance's upstream
// credentials without contacting the upstream: that an envelope scheme's
// app id is set and its RSA keys parse and suit its padding. cfg holds
// configuration and secrets merged. Problems name configuration keys (or
// none, when no single key is to blame); an
// auth scheme that does not resolve is CheckConfig's to report, not this.
func CheckCredentials(def *connectors.Definition, cfg map[string]any) []connectors.Problem {
	auth, err := def.ResolveAuth(cfg)
	if err != nil || auth.Type != connectors.AuthEnvelope {
		return nil
	}
	if _, err := newEnvelopeAuth(auth.Envelope, cfg); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			return []connectors.Problem{{Field: ce.Key, Message: ce.Err.Error()}}
		}
		return []connectors.Problem{{Message: err.Error()}} // no key to blame
	}
	return nil
}
