package dashboard

import (
	"errors"
	"testing"
	"time"

	"github.com/pollhook/pollhook/broker/brokertest"
	"github.com/pollhook/pollhook/instances"
)

func newSessions(t *testing.T) *sessions {
	t.Helper()
	sealer, err := instances.NewSealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	s, err := openSessions(t.Context(), brokertest.JetStream(t), 1, sealer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestASessionSignedOutWhileAnActionRanStaysSignedOut(t *testing.T) {
	s := newSessions(t)
	cookie, err := s.create(t.Context(), "User u, Organization o", 0)
	if err != nil {
		t.Fatal(err)
	}
	slow, auth, err := s.load(t.Context(), cookie) // a long Poll now begins
	if err != nil || auth != "User u, Organization o" {
		t.Fatalf("load: %q, %v", auth, err)
	}
	signout, _, err := s.load(t.Context(), cookie)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.delete(t.Context(), signout); err != nil {
		t.Fatal(err)
	}
	slow.Notice = "the poll ended"
	if err := s.save(t.Context(), slow); !errors.Is(err, errNoSession) {
		t.Errorf("saving the signed-out session: %v, want errNoSession", err)
	}
	if _, _, err := s.load(t.Context(), cookie); !errors.Is(err, errNoSession) {
		t.Errorf("the cookie after sign-out: %v, want errNoSession", err)
	}
}

func TestASessionEndsTwelveHoursAfterSignInHoweverOftenItIsSaved(t *testing.T) {
	s := newSessions(t)
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	cookie, err := s.create(t.Context(), "Element tok", 12)
	if err != nil {
		t.Fatal(err)
	}
	for range 11 {
		now = now.Add(time.Hour)
		ses, _, err := s.load(t.Context(), cookie)
		if err != nil {
			t.Fatalf("at %s: %v", now, err)
		}
		ses.Notice = "saved again"
		if err := s.save(t.Context(), ses); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Hour)
	if _, _, err := s.load(t.Context(), cookie); !errors.Is(err, errNoSession) {
		t.Errorf("12 h after sign-in: %v, want errNoSession", err)
	}
}

func TestLocalPathKeepsTheDashboardsOwnPathsOnly(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/instances/12":          "/ui/instances/12",
		"/ui/?tag=eu&status=active": "/ui/?tag=eu&status=active",
		"":                          "/ui/",
		"https://evil.example/ui/":  "/ui/",
		"//evil.example/ui/":        "/ui/",
		"/ui//evil.example":         "/ui/",
		`/ui/\evil`:                 "/ui/",
		"/metrics":                  "/ui/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}
