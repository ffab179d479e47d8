package api

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// Credentials are the parts of an Authorization header in Open Connectors'
// form: comma-separated "Scheme value" parts in any order
// ("User <secret>, Organization <secret>, Element <token>").
type Credentials struct {
	User, Organization, Element string
}

// ParseAuthorization reads an Authorization header. It never fails: unknown
// or malformed parts are ignored, so they authorize nothing.
func ParseAuthorization(header string) Credentials {
	var c Credentials
	for part := range strings.SplitSeq(header, ",") {
		scheme, value, ok := strings.Cut(strings.TrimSpace(part), " ")
		value = strings.TrimSpace(value)
		if !ok || value == "" {
			continue
		}
		switch strings.ToLower(scheme) {
		case "user":
			c.User = value
		case "organization":
			c.Organization = value
		case "element":
			c.Element = value
		}
	}
	return c
}

// Authenticator checks the organization's API credentials.
type Authenticator struct {
	user, org []byte
}

// NewAuthenticator returns an Authenticator for the given secrets.
func NewAuthenticator(userSecret, orgSecret string) *Authenticator {
	return &Authenticator{user: []byte(userSecret), org: []byte(orgSecret)}
}

// Caller is who made a request: the organization (User and Organization
// secrets both right) or the holder of an Element token, which a handler
// must match against the instance it touches.
type Caller struct {
	Admin   bool
	Element string
}

// Unauthorized is the 401 every refused credential gets.
var Unauthorized = Errorf(http.StatusUnauthorized, "missing or wrong credentials: send Authorization: User <user secret>, Organization <organization secret> (or Element <instance token>)")

// Authenticate returns the caller of r, or Unauthorized. User and
// Organization, when either is given, must both be right; an Element token
// alone is returned unchecked for the handler to match. Secrets are compared
// in constant time.
func (a *Authenticator) Authenticate(r *http.Request) (Caller, error) {
	c := ParseAuthorization(r.Header.Get("Authorization"))
	if c.User != "" || c.Organization != "" {
		userOK := subtle.ConstantTimeCompare([]byte(c.User), a.user) == 1
		orgOK := subtle.ConstantTimeCompare([]byte(c.Organization), a.org) == 1
		if userOK && orgOK {
			return Caller{Admin: true, Element: c.Element}, nil
		}
		return Caller{}, Unauthorized
	}
	if c.Element != "" {
		return Caller{Element: c.Element}, nil
	}
	return Caller{}, Unauthorized
}

// MatchesToken reports, in constant time, whether the caller holds token.
func (c Caller) MatchesToken(token string) bool {
	return c.Element != "" && subtle.ConstantTimeCompare([]byte(c.Element), []byte(token)) == 1
}
