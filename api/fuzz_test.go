package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pollhook/pollhook/config"
)

// FuzzParseAuthorization reads Authorization headers and checks them
// against the secrets the poller's configuration accepts:
//   - every value read is a trimmed, comma-free piece of the header, and
//     writing the credentials back as a header reads the same;
//   - the header the poller prints for accepted secrets
//     (config.Poller.Authorization) reads back as those secrets, with or
//     without an Element part, and authenticates as the organization;
//   - Authenticate lets a header in only as the organization with both
//     secrets right, or as an Element token with no User or Organization
//     part; anything else is Unauthorized.
//
// Seeds: testdata/fuzz/FuzzParseAuthorization.
func FuzzParseAuthorization(f *testing.F) {
	f.Fuzz(func(t *testing.T, header, user, org string) {
		c := ParseAuthorization(header)
		for _, v := range []string{c.User, c.Organization, c.Element} {
			if v != "" && (v != strings.TrimSpace(v) || strings.Contains(v, ",") || !strings.Contains(header, v)) {
				t.Fatalf("%q: read %q, not a trimmed part of the header", header, v)
			}
		}
		if again := ParseAuthorization(authorizationHeader(c)); again != c {
			t.Fatalf("%q reads %+v; written back as %q it reads %+v", header, c, authorizationHeader(c), again)
		}

		a := NewAuthenticator(user, org)
		caller, err := a.Authenticate(requestWithAuthorization(header))
		switch {
		case err != nil:
			if !errors.Is(err, Unauthorized) {
				t.Fatalf("%q: error %v, want Unauthorized", header, err)
			}
		case caller.Admin:
			if c.User != user || c.Organization != org {
				t.Fatalf("%q authenticated as the organization with secrets %q, %q", header, user, org)
			}
		case c.User != "" || c.Organization != "" || c.Element == "" || caller.Element != c.Element:
			t.Fatalf("%q authenticated as %+v", header, caller)
		}

		p, err := config.LoadPoller([]string{"--user-secret=" + user, "--org-secret=" + org}, func(string) string { return "" })
		if err != nil {
			return
		}
		printed := p.Authorization()
		if got, want := ParseAuthorization(printed), (Credentials{User: user, Organization: org}); got != want {
			t.Fatalf("the poller's header %q reads %+v, want %+v", printed, got, want)
		}
		if caller, err := a.Authenticate(requestWithAuthorization(printed)); err != nil || !caller.Admin {
			t.Fatalf("the poller's header %q: %+v, %v", printed, caller, err)
		}
		if c.Element != "" {
			if got, want := ParseAuthorization(printed+", Element "+c.Element), (Credentials{User: user, Organization: org, Element: c.Element}); got != want {
				t.Fatalf("%q with an Element part reads %+v, want %+v", printed, got, want)
			}
		}
	})
}

// authorizationHeader writes the set parts of c as a header.
func authorizationHeader(c Credentials) string {
	var parts []string
	for _, p := range [][2]string{{"User", c.User}, {"Organization", c.Organization}, {"Element", c.Element}} {
		if p[1] != "" {
			parts = append(parts, p[0]+" "+p[1])
		}
	}
	return strings.Join(parts, ", ")
}

func requestWithAuthorization(header string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/instances", nil)
	r.Header.Set("Authorization", header)
	return r
}
