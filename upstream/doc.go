// Package upstream owns talking to an instance's upstream API:
// authentication, tokens, rate limits, retries of 429/503.
//
// The parts:
//
//   - Clients is the registry of per-instance Clients. A Client holds the
//     instance's rate limiter and credential state (an OAuth2 token, or the
//     static credentials of apikey, basic and headers); Clients hands out the
//     same Client for an instance id across polls and resources and rebuilds
//     it when the instance's revision changes, keeping the limiter.
//   - Client.Do sends one logical request: it waits on the limiter, adds
//     credentials only for the base URL's scheme and host, refreshes an
//     OAuth2 token once on a 401, honours Retry-After on 429 and 503, bounds
//     each attempt and the body size, and turns non-2xx answers into a
//     *StatusError with credentials redacted.
//   - TokenStore keeps OAuth2 tokens in the KV bucket POLLHOOK_TOKENS, sealed
//     so that the stored bytes never hold a token in clear.
//   - ExchangeCode exchanges an OAuth2 authorization code at instance
//     creation, before the instance has an id; the caller saves the token
//     with TokenStore.Save once the id is known.
//
// Errors: ErrReauthorizationRequired (errors.Is) means the stored credentials
// are dead and only new ones from the user help (a new code, password or
// session id); the instance should become reauthorization_required. A
// *StatusError is a non-2xx answer; an *OAuthError is a refusal of the
// provider's token endpoint and carries its error and error_description.
//
// upstream imports connectors only. It does not import instances, so that
// pollers (which instances imports) can use it without an import cycle;
// *instances.Sealer satisfies Sealer, and callers map an instance to a
// Target.
package upstream
