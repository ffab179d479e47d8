package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pollhook/pollhook/e2e/simulators"
)

// TestFinfoPasswordGrantReusesItsTokenAndDeliversEveryChangeOnce runs the
// built-in "finfo" connector against the Finfo simulator, which fails the
// test if a token is requested while the last one is still valid: the
// password grant once, a 204 when there is no data, a burst with equal
// timestamps read over several pages, a record that becomes visible late,
// a 429 with Retry-After survived within the poll, a 500 that fails one
// poll and loses nothing, an expired access token renewed with the refresh
// token, and an expired refresh token answered with the password grant.
func TestFinfoPasswordGrantReusesItsTokenAndDeliversEveryChangeOnce(t *testing.T) {
	t.Parallel()
	f := simulators.NewFinfo(t)
	p := startPoller(t, t.TempDir(), "", "--retry-schedule", "50ms,100ms,200ms,400ms")
	s := newSink(t)
	articles := simulators.FinfoArticlesResource()
	articles["pagination"] = map[string]any{"type": "page", "pageParam": "page", "limitParam": "pageSize", "pageSize": 2}
	id, _ := connectorInstance(t, p, "finfo", f.InstanceConfiguration(), nil, map[string]any{"articles": articles}, s.URL(), 3)

	pollExpecting(t, p, id, 0, "poll of an empty catalogue (204)")

	frozen := time.Now()
	f.SetClock(func() time.Time { return frozen })
	var burst []simulators.FinfoArticle
	for i := range 5 {
		burst = append(burst, f.CreateArticle(map[string]any{"name": fmt.Sprint("Article ", i), "gtin": fmt.Sprint(7040000000000 + i)}))
	}
	f.SetClock(nil)
	burstPolled := time.Now()
	pollExpecting(t, p, id, 5, "poll after a burst of 5 at one instant")

	time.Sleep(5 * time.Millisecond)
	mustFinfo(t)(f.UpdateArticle(burst[1].FinfoArticleID, map[string]any{"name": "Renamed"}))
	// Dated before the last poll started but visible only now: inside the
	// overlap.
	f.SetClock(func() time.Time { return burstPolled })
	late := f.CreateArticle(map[string]any{"name": "Late"})
	f.SetClock(nil)
	f.SetRetryAfter("1")
	f.FailNext(1, 429)
	pollExpecting(t, p, id, 2, "poll after an update and a late article "+late.IDString()+", through a 429")

	time.Sleep(5 * time.Millisecond)
	mustFinfo(t)(f.UpdateArticle(burst[2].FinfoArticleID, map[string]any{"price": 12.5}))
	f.FailNext(1, 500)
	if res := p.runPoll(id); res.Resources[0].Status != "failed" || res.Resources[0].Error == nil || !strings.Contains(*res.Resources[0].Error, "500") {
		t.Fatalf("poll answered 500: %+v, want failed naming the status", res)
	}
	pollExpecting(t, p, id, 1, "poll after the 500")

	// An access token the upstream no longer takes: renewed once with the
	// refresh token.
	f.ExpireAccessTokens()
	mustFinfo(t)(f.UpdateArticle(burst[3].FinfoArticleID, map[string]any{"price": 14}))
	pollExpecting(t, p, id, 1, "poll with an expired access token")
	if n := f.TokenRequests("refresh_token"); n != 1 {
		t.Errorf("%d refresh token grants after one expired access token, want 1", n)
	}

	// Both tokens expired: the refresh is refused, the password grant
	// follows.
	f.ExpireAccessTokens()
	f.ExpireRefreshTokens()
	mustFinfo(t)(f.UpdateArticle(burst[4].FinfoArticleID, map[string]any{"price": 16}))
	pollExpecting(t, p, id, 1, "poll with both tokens expired")
	if n := f.TokenRequests("password"); n != 2 {
		t.Errorf("%d password grants, want 2 (the first token, then after the refresh token expired)", n)
	}

	// A hard delete leaves nothing to see (README: limits).
	if err := f.DeleteArticle(burst[0].FinfoArticleID); err != nil {
		t.Fatal(err)
	}
	pollAllOK(t, p, id)

	want := windowExpectation(finfoLedger(f)).allowed // every version; hard deletes are not seen
	s.expectLedger(t, field("finfoArticleId"), sinkChange.key, want)
	if v := f.TokenReuseViolations(); len(v) != 0 {
		t.Errorf("token requests while the last token was valid: %v", v)
	}
	t.Logf("%d changes delivered; %d API requests, token grants: %d password, %d refresh",
		len(want), f.APIRequests(), f.TokenRequests("password"), f.TokenRequests("refresh_token"))
}

// mustFinfo fails t on a simulator error.
func mustFinfo(t *testing.T) func(simulators.FinfoArticle, error) {
	return func(_ simulators.FinfoArticle, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}
