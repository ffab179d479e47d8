package simulators_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollhook/pollhook/e2e/simulators"
)

var infusionT0 = time.Date(2026, 3, 14, 9, 26, 53, 589_793_238, time.UTC)

// infusionCall sends GET url with the headers (none when empty) and returns
// the status, the Retry-After header and the body.
func infusionCall(t *testing.T, rawURL, license, session string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if license != "" {
		req.Header.Set("licenseuuid", license)
	}
	if session != "" {
		req.Header.Set("sessionuuid", session)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), b
}

type infusionPage struct {
	records []map[string]any
	more    bool
}

// infusionSync makes one data synchronisation call with the current session
// and decodes it.
func infusionSync(t *testing.T, s *simulators.Infusion, resource string) infusionPage {
	t.Helper()
	status, _, body := infusionCall(t, s.ResourceURL(resource), s.License(), s.Session())
	if status != http.StatusOK {
		t.Fatalf("sync %s: %d %s", resource, status, body)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("sync %s: %v: %s", resource, err, body)
	}
	var p infusionPage
	if err := json.Unmarshal(m[resource], &p.records); err != nil {
		t.Fatalf("sync %s: records under %q: %v: %s", resource, resource, err, body)
	}
	if err := json.Unmarshal(m["more"], &p.more); err != nil {
		t.Fatalf("sync %s: more: %v: %s", resource, err, body)
	}
	return p
}

func uuids(p infusionPage) []string {
	out := make([]string, len(p.records))
	for i, r := range p.records {
		out[i], _ = r["uuid"].(string)
	}
	return out
}

func TestInfusionAuthAndSessionReplacement(t *testing.T) {
	t.Parallel()
	s := simulators.NewInfusion(t)
	u := s.ResourceURL(simulators.InfusionProducts)
	if !strings.HasSuffix(u, "/api/datasync/products") {
		t.Fatalf("ResourceURL = %s", u)
	}
	cfg := s.InstanceConfiguration()
	if cfg["base.url"] != s.BaseURL() || cfg["licenseuuid"] != s.License() || cfg["sessionuuid"] != s.Session() {
		t.Fatalf("InstanceConfiguration = %v", cfg)
	}
	for _, tc := range []struct {
		name, lic, sess string
	}{
		{"no headers", "", ""},
		{"no session", s.License(), ""},
		{"no license", "", s.Session()},
		{"wrong license", "00000000-0000-4000-8000-000000000000", s.Session()},
		{"unknown session", s.License(), "nope"},
	} {
		if st, _, body := infusionCall(t, u, tc.lic, tc.sess); st != http.StatusUnauthorized {
			t.Errorf("%s: %d %s", tc.name, st, body)
		}
	}
	old := s.Session()
	if st, _, body := infusionCall(t, u, s.License(), old); st != http.StatusOK {
		t.Fatalf("valid headers: %d %s", st, body)
	}
	fresh := s.NewSession()
	if fresh == old || s.Session() != fresh {
		t.Fatalf("NewSession = %q, old %q, Session %q", fresh, old, s.Session())
	}
	st, _, body := infusionCall(t, u, s.License(), old)
	if st != http.StatusUnauthorized || !strings.Contains(string(body), "new session ID") {
		t.Fatalf("replaced session: %d %s", st, body)
	}
	if st, _, body := infusionCall(t, u, s.License(), fresh); st != http.StatusOK {
		t.Fatalf("new session: %d %s", st, body)
	}
	if s.InstanceConfiguration()["sessionuuid"] != fresh {
		t.Fatal("InstanceConfiguration does not carry the new session")
	}
	if n := s.Unauthorized(); n != 6 {
		t.Errorf("Unauthorized = %d, want 6", n)
	}
	// Other paths and methods.
	if st, _, _ := infusionCall(t, s.BaseURL()+"/datasync/unknown", s.License(), fresh); st != http.StatusNotFound {
		t.Errorf("unknown resource: %d", st)
	}
	s.SetForbidden(simulators.InfusionCustomers, true)
	st, _, body = infusionCall(t, s.ResourceURL(simulators.InfusionCustomers), s.License(), fresh)
	if st != http.StatusForbidden || !strings.Contains(string(body), "User not authorised") {
		t.Errorf("forbidden: %d %s", st, body)
	}
}

func TestInfusionDeltaCursor(t *testing.T) {
	t.Parallel()
	clk := simulators.NewManualClock(infusionT0)
	s := simulators.NewInfusion(t, simulators.WithInfusionClock(clk.Now))
	const res = simulators.InfusionProducts

	// A burst with equal timestamps.
	a := s.Create(res, map[string]any{"name": "A"})
	b := s.Create(res, map[string]any{"name": "B"})
	c := s.Create(res, map[string]any{"name": "C"})
	p := infusionSync(t, s, res)
	if got := uuids(p); len(got) != 3 || got[0] != a.UUID || got[1] != b.UUID || got[2] != c.UUID || p.more {
		t.Fatalf("first sync = %v more=%v", got, p.more)
	}
	r0 := p.records[0]
	ts := simulators.FormatInfusionTimestamp(infusionT0)
	if r0["createdTimestamp"] != ts || r0["modifiedTimestamp"] != ts || r0["versionNumber"] != float64(0) ||
		r0["deletedTimestamp"] != nil || r0["name"] != "A" {
		t.Fatalf("created record = %v", r0)
	}
	if ts != "2026-03-14T09:26:53.589Z" {
		t.Fatalf("timestamp format = %s", ts)
	}
	// Nothing changed: nothing served.
	if p := infusionSync(t, s, res); len(p.records) != 0 || p.more {
		t.Fatalf("second sync = %v", p.records)
	}

	// Update b on a frozen clock: version 1, modified 1 ms later.
	if _, err := s.Update(res, b.UUID, map[string]any{"name": "B2"}); err != nil {
		t.Fatal(err)
	}
	p = infusionSync(t, s, res)
	if len(p.records) != 1 || p.records[0]["uuid"] != b.UUID || p.records[0]["versionNumber"] != float64(1) ||
		p.records[0]["modifiedTimestamp"] != simulators.FormatInfusionTimestamp(infusionT0.Add(time.Millisecond)) ||
		p.records[0]["createdTimestamp"] != ts || p.records[0]["name"] != "B2" {
		t.Fatalf("after update = %v", p.records)
	}

	// Two changes between calls: served once, in the latest version.
	clk.Add(time.Second)
	s.Update(res, a.UUID, map[string]any{"name": "A2"})
	s.Update(res, a.UUID, map[string]any{"price": 12.5})
	p = infusionSync(t, s, res)
	if len(p.records) != 1 || p.records[0]["versionNumber"] != float64(2) || p.records[0]["name"] != "A2" || p.records[0]["price"] != 12.5 {
		t.Fatalf("coalesced = %v", p.records)
	}

	// Delete: deletedTimestamp set, version raised, served once more.
	clk.Add(time.Second)
	if _, err := s.Delete(res, c.UUID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(res, c.UUID, map[string]any{"x": 1}); err == nil {
		t.Fatal("update of a deleted record succeeded")
	}
	p = infusionSync(t, s, res)
	del := simulators.FormatInfusionTimestamp(clk.Now())
	if len(p.records) != 1 || p.records[0]["deletedTimestamp"] != del || p.records[0]["modifiedTimestamp"] != del ||
		p.records[0]["versionNumber"] != float64(1) {
		t.Fatalf("deleted = %v", p.records)
	}

	// The ledger has every change; Served what was served.
	ch := s.ChangesOf(res)
	kinds := ""
	for _, c := range ch {
		kinds += string(c.Kind)[:1]
	}
	if kinds != "cccuuud" {
		t.Fatalf("ledger kinds = %s", kinds)
	}
	if last := ch[len(ch)-1]; !last.EventDate().Equal(clk.Now().Truncate(time.Millisecond)) || last.Record["deletedTimestamp"] != del {
		t.Fatalf("last change = %+v", last)
	}
	served := s.ServedOf(res)
	if len(served) != 6 {
		t.Fatalf("served %d versions, want 6", len(served))
	}
	want := []simulators.ChangeKind{simulators.Created, simulators.Created, simulators.Created, simulators.Updated, simulators.Updated, simulators.Deleted}
	for i, sv := range served {
		if sv.Kind != want[i] || sv.Session != s.Session() {
			t.Errorf("served[%d] = %+v, want kind %s", i, sv, want[i])
		}
	}

	// Resources have independent cursors.
	s.Create(simulators.InfusionCustomers, nil)
	if p := infusionSync(t, s, simulators.InfusionCustomers); len(p.records) != 1 {
		t.Fatalf("customers = %v", p.records)
	}
	if p := infusionSync(t, s, res); len(p.records) != 0 {
		t.Fatalf("products after customers = %v", p.records)
	}

	// A new session starts a full resynchronisation (the default).
	s.NewSession()
	if p := infusionSync(t, s, res); len(p.records) != 3 {
		t.Fatalf("resync after NewSession = %d records", len(p.records))
	}
}

func TestInfusionPagingAndMore(t *testing.T) {
	t.Parallel()
	s := simulators.NewInfusion(t, simulators.WithInfusionPageSize(2))
	const res = simulators.InfusionDiscountMatrixEntries
	var want []string
	for range 5 {
		want = append(want, s.Create(res, nil).UUID)
	}
	var got []string
	var mores []bool
	for {
		p := infusionSync(t, s, res)
		if len(p.records) == 0 {
			break
		}
		got = append(got, uuids(p)...)
		mores = append(mores, p.more)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("paged = %v, want %v", got, want)
	}
	if len(mores) != 3 || !mores[0] || !mores[1] || mores[2] {
		t.Fatalf("more flags = %v", mores)
	}
	if s.Pending(res) != 0 {
		t.Fatal("Pending after reading everything")
	}
}

func TestInfusionCursorPerLicenseAndReset(t *testing.T) {
	t.Parallel()
	s := simulators.NewInfusion(t, simulators.WithInfusionCursorPerLicense())
	const res = simulators.InfusionCustomerContractRates
	s.Create(res, nil)
	if p := infusionSync(t, s, res); len(p.records) != 1 {
		t.Fatal(p.records)
	}
	s.NewSession()
	if p := infusionSync(t, s, res); len(p.records) != 0 {
		t.Fatalf("per-license cursor re-served %v", p.records)
	}
	s.ResetCursors()
	if p := infusionSync(t, s, res); len(p.records) != 1 {
		t.Fatalf("after ResetCursors: %v", p.records)
	}
}

func TestInfusionLateVisibleRecords(t *testing.T) {
	t.Parallel()
	clk := simulators.NewManualClock(infusionT0)
	s := simulators.NewInfusion(t, simulators.WithInfusionClock(clk.Now))
	const res = simulators.InfusionCustomerInvoices
	s.SetIndexDelay(5 * time.Second)
	r := s.Create(res, nil)
	if p := infusionSync(t, s, res); len(p.records) != 0 {
		t.Fatalf("visible before its delay: %v", p.records)
	}
	clk.Add(5 * time.Second)
	// Updated now: version 0 is visible, version 1 not yet.
	s.Update(res, r.UUID, map[string]any{"n": 1})
	p := infusionSync(t, s, res)
	if len(p.records) != 1 || p.records[0]["versionNumber"] != float64(0) {
		t.Fatalf("late version 0: %v", p.records)
	}
	clk.Add(5 * time.Second)
	p = infusionSync(t, s, res)
	if len(p.records) != 1 || p.records[0]["versionNumber"] != float64(1) {
		t.Fatalf("late version 1: %v", p.records)
	}
}

func TestInfusionFaultsAndCursor(t *testing.T) {
	t.Parallel()
	s := simulators.NewInfusion(t)
	const res = simulators.InfusionProductPromotionalPrices
	s.Create(res, nil)
	s.SetRetryAfter("2")
	s.FailNext(1, http.StatusServiceUnavailable)
	st, ra, _ := infusionCall(t, s.ResourceURL(res), s.License(), s.Session())
	if st != http.StatusServiceUnavailable || ra != "2" {
		t.Fatalf("injected: %d Retry-After %q", st, ra)
	}
	// A failed call does not move the cursor.
	if p := infusionSync(t, s, res); len(p.records) != 1 {
		t.Fatalf("after failure: %v", p.records)
	}
	// A truncated answer does: that record is lost to the session.
	s.Create(res, nil)
	s.TruncateNext(1)
	st, _, body := infusionCall(t, s.ResourceURL(res), s.License(), s.Session())
	if st != http.StatusOK || json.Valid(body) {
		t.Fatalf("truncated: %d %s", st, body)
	}
	if p := infusionSync(t, s, res); len(p.records) != 0 {
		t.Fatalf("after truncation: %v", p.records)
	}
}

func TestInfusionRateLimit(t *testing.T) {
	t.Parallel()
	s := simulators.NewInfusion(t)
	u := s.ResourceURL(simulators.InfusionProducts)
	const n = 15
	statuses := make([]int, n)
	retry := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { statuses[i], retry[i], _ = infusionCall(t, u, s.License(), s.Session()) })
	}
	wg.Wait()
	ok, limited := 0, 0
	for i, st := range statuses {
		switch st {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			if retry[i] != "1" {
				t.Errorf("429 Retry-After = %q", retry[i])
			}
		default:
			t.Errorf("status %d", st)
		}
	}
	if ok != simulators.DefaultInfusionRateLimit || limited != n-ok {
		t.Fatalf("ok %d, 429 %d: want %d and %d", ok, limited, simulators.DefaultInfusionRateLimit, n-simulators.DefaultInfusionRateLimit)
	}
	if s.Throttled() != limited || s.PeakPerSecond() != n {
		t.Fatalf("Throttled %d, PeakPerSecond %d", s.Throttled(), s.PeakPerSecond())
	}
	// The window slides: a second later requests pass again.
	time.Sleep(1100 * time.Millisecond)
	if st, _, _ := infusionCall(t, u, s.License(), s.Session()); st != http.StatusOK {
		t.Fatalf("after a second: %d", st)
	}
	s.ResetRequests()
	if s.PeakPerSecond() != 0 || s.Throttled() != 0 {
		t.Fatal("ResetRequests kept the counters")
	}
	// A client that keeps to 10/s is never throttled and peaks at 10 at most.
	for range 12 {
		if st, _, _ := infusionCall(t, u, s.License(), s.Session()); st != http.StatusOK {
			t.Fatalf("paced request: %d", st)
		}
		time.Sleep(105 * time.Millisecond)
	}
	if p := s.PeakPerSecond(); p > 10 || s.Throttled() != 0 {
		t.Fatalf("paced: peak %d, throttled %d", p, s.Throttled())
	}
}
