package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/pollhook/pollhook/e2e/simulators"
)

// TestKeapDefaultResourcesDeliverEveryChangeOnceAcrossATokenRotation runs
// the built-in "infusionsoftrest" connector with its default resources
// (contacts and opportunities) against the Keap simulator: the
// authorization code exchanged at creation, a burst of 60 contacts at one
// instant read over two pages of "next" links (the last page has one too),
// updates in both resources, a contact that becomes visible late, an
// access token refused and renewed with a rotated refresh token, and a
// hard delete, which Keap gives no way to see.
func TestKeapDefaultResourcesDeliverEveryChangeOnceAcrossATokenRotation(t *testing.T) {
	t.Parallel()
	keap := simulators.NewKeap(t)
	p := startPoller(t, t.TempDir(), "", "--retry-schedule", "50ms,100ms,200ms,400ms")
	s := newSink(t)
	id, _ := connectorInstance(t, p, "infusionsoftrest", keap.InstanceConfiguration(),
		map[string]any{"code": keap.IssueCode()}, nil, s.URL(), 10)

	frozen := time.Now()
	keap.SetClock(func() time.Time { return frozen })
	var contacts, opportunities []simulators.Record
	for i := range 60 {
		contacts = append(contacts, keap.CreateContact(simulators.ContactFields(fmt.Sprint("Given", i), "Burst", fmt.Sprintf("b%d@example.com", i))))
	}
	for i := range 3 {
		opportunities = append(opportunities, keap.CreateOpportunity(map[string]any{"opportunity_title": fmt.Sprint("Deal ", i)}))
	}
	keap.SetClock(nil)
	pollExpecting(t, p, id, 63, "poll after a burst of 63 at one instant")

	time.Sleep(5 * time.Millisecond)
	mustKeap(t)(keap.UpdateContact(contacts[7].ID, map[string]any{"given_name": "Renamed"}))
	mustKeap(t)(keap.UpdateOpportunity(opportunities[1].ID, map[string]any{"stage": map[string]any{"name": "Won"}}))
	pollExpecting(t, p, id, 2, "poll after two updates")
	keap.SetIndexDelay(1500 * time.Millisecond)
	late := keap.CreateContact(simulators.ContactFields("Late", "Indexed", "late@example.com"))
	pollExpecting(t, p, id, 0, "poll while contact "+late.IDString()+" is not yet indexed")
	time.Sleep(1600 * time.Millisecond)
	keap.SetIndexDelay(0)
	pollExpecting(t, p, id, 1, "poll once contact "+late.IDString()+" is indexed")

	keap.ExpireAccessTokens()
	mustKeap(t)(keap.UpdateContact(contacts[8].ID, map[string]any{"family_name": "Changed"}))
	pollExpecting(t, p, id, 1, "poll with a refused access token")
	if n := keap.TokenRequests("refresh_token"); n != 1 {
		t.Errorf("%d refresh grants after one refused access token, want 1", n)
	}
	if n := keap.ValidRefreshTokens(); n != 1 {
		t.Errorf("%d valid refresh tokens after the rotation, want 1", n)
	}

	if err := keap.DeleteContact(contacts[9].ID); err != nil {
		t.Fatal(err)
	}
	pollAllOK(t, p, id)

	want := windowExpectation(keapLedger(keap)).allowed // every version; hard deletes are not seen
	s.expectLedger(t, field("id"), sinkChange.key, want)
	t.Logf("%d changes delivered; %d API requests, %d token requests", len(want), keap.APIRequests(), keap.TokenRequests(""))
}

// mustKeap fails t on a simulator error.
func mustKeap(t *testing.T) func(simulators.Record, error) {
	return func(_ simulators.Record, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}
