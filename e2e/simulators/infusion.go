package simulators

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Infusion simulates Infusion's public API (seed 000, SPEC §4) as far as
// pollhook's "infusion" connector (connectors/definitions/infusion.yaml)
// polls it:
//
//   - Every request under BaseURL() needs the headers licenseuuid and
//     sessionuuid. Without them, with an unknown license, or with a session
//     id that NewSession has replaced, the answer is 401 (seed FAQ 6: a new
//     session id renders the previous one invalid).
//   - 10 requests per second (seed FAQ 3), counted over every request under
//     BaseURL() in any sliding 1-second window of wall-clock time; a request
//     beyond the limit gets 429 with Retry-After: 1 and is not served.
//     PeakPerSecond reports the most requests that arrived within any one
//     second, so a test can assert that pollhook never went over.
//   - The six data synchronisation endpoints (seed FAQ 8), GET
//     BaseURL()+"/datasync/<path>" with the paths of the definition
//     (InfusionPath). They keep a cursor per session and resource on the
//     server: each call returns only the records whose change the session
//     has not been served yet, oldest change first, at most PageSize() per
//     call, as {"<resource>": [...], "more": <bool>}; "more" says whether
//     further changes are waiting. A record changed twice between two calls
//     is served once, in its latest version (a data synchronisation returns
//     state, not a change log). Reading advances the cursor: a page lost by
//     the client is not served again (SPEC §6), unless ResetCursors.
//   - Records (seed FAQ 2, 4, 9): "uuid", "createdTimestamp",
//     "modifiedTimestamp", "deletedTimestamp" (null while live) and
//     "versionNumber", plus the test's fields. At creation createdTimestamp
//     = modifiedTimestamp and versionNumber = 0; every later change raises
//     versionNumber by one and modifiedTimestamp (by at least 1 ms, even on
//     a frozen clock); a delete is such a change that also sets
//     deletedTimestamp (= the new modifiedTimestamp) and is served like any
//     other change (a soft delete: the record stays, marked).
//
// Every change goes into a ledger (Changes); every record version served
// to a session goes into a second log (Served), since what a delta client
// can see is the served versions, not every intermediate change.
type Infusion struct {
	srv       *httptest.Server
	closeOnce sync.Once
	closed    chan struct{}
	n         int64 // instance number, for ids

	mu sync.Mutex

	clock func() time.Time

	license      string
	session      string
	sessions     []string
	cursorPerLic bool

	rateLimit int
	accepted  []time.Time // arrivals let through in the last second
	arrivals  []time.Time // all arrivals in the last second
	peak      int
	throttled int

	pageSize   int
	indexDelay time.Duration

	seq     int // change sequence, across resources
	uuidSeq int
	stores  map[string]*infusionStore
	cursors map[string]map[string]map[string]int // cursor key -> resource -> uuid -> served version
	changes []InfusionChange
	served  []InfusionServed

	faults    faults
	forbidden map[string]bool
	requests  requestLog[InfusionRequest]
}

// Resources of Infusion: the keys of connectors/definitions/infusion.yaml.
const (
	InfusionProducts                 = "products"
	InfusionCustomers                = "customers"
	InfusionCustomerInvoices         = "customerInvoices"
	InfusionCustomerContractRates    = "customerContractRates"
	InfusionProductPromotionalPrices = "productPromotionalPrices"
	InfusionDiscountMatrixEntries    = "discountMatrixEntries"
)

// infusionPaths are the definition's resource urls, relative to BaseURL().
var infusionPaths = map[string]string{
	InfusionProducts:                 "/datasync/products",
	InfusionCustomers:                "/datasync/customers",
	InfusionCustomerInvoices:         "/datasync/customer-invoices",
	InfusionCustomerContractRates:    "/datasync/customer-contract-rates",
	InfusionProductPromotionalPrices: "/datasync/product-promotional-prices",
	InfusionDiscountMatrixEntries:    "/datasync/discount-matrix-entries",
}

// InfusionResources lists the six data synchronisation resources, in the
// seed's order.
func InfusionResources() []string {
	return []string{InfusionProducts, InfusionCustomers, InfusionCustomerInvoices,
		InfusionCustomerContractRates, InfusionProductPromotionalPrices, InfusionDiscountMatrixEntries}
}

// InfusionPath is the path of a resource's endpoint relative to BaseURL(),
// as the connector definition's url gives it (e.g. "/datasync/products").
func InfusionPath(resource string) string { return infusionPaths[resource] }

// Defaults of a new Infusion.
const (
	DefaultInfusionRateLimit = 10  // requests per second (seed FAQ 3)
	DefaultInfusionPageSize  = 100 // records per data synchronisation call (ASSUMPTION)
	infusionAPIPrefix        = "/api"
)

// InfusionOption configures NewInfusion.
type InfusionOption func(*Infusion)

// WithInfusionClock sets the clock that dates records (as SetClock).
func WithInfusionClock(now func() time.Time) InfusionOption {
	return func(s *Infusion) { s.clock = now }
}

// WithInfusionRateLimit sets the requests per second (0: unlimited).
func WithInfusionRateLimit(n int) InfusionOption {
	return func(s *Infusion) { s.rateLimit = n }
}

// WithInfusionPageSize sets the most records one call returns (default
// DefaultInfusionPageSize).
func WithInfusionPageSize(n int) InfusionOption {
	return func(s *Infusion) { s.pageSize = max(n, 1) }
}

// WithInfusionCursorPerLicense makes the server-side cursor belong to the
// license instead of the session: a new session continues where the
// replaced one stopped. By default a new session starts with an empty
// cursor and is served every record again (a full resynchronisation).
func WithInfusionCursorPerLicense() InfusionOption {
	return func(s *Infusion) { s.cursorPerLic = true }
}

var infusionInstances atomic.Int64

// NewInfusion starts a simulator on a loopback port with one license and
// one session. When tb is not nil it is closed at the end of the test.
func NewInfusion(tb testing.TB, opts ...InfusionOption) *Infusion {
	s := &Infusion{
		closed:    make(chan struct{}),
		n:         infusionInstances.Add(1),
		clock:     time.Now,
		rateLimit: DefaultInfusionRateLimit,
		pageSize:  DefaultInfusionPageSize,
		stores:    map[string]*infusionStore{},
		cursors:   map[string]map[string]map[string]int{},
		forbidden: map[string]bool{},
	}
	for _, r := range InfusionResources() {
		s.stores[r] = &infusionStore{byUUID: map[string]*infusionEntry{}}
	}
	s.license = fmt.Sprintf("1ce05e00-%04x-4000-8000-000000000001", s.n&0xffff)
	for _, o := range opts {
		o(s)
	}
	s.newSessionLocked()
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	if tb != nil {
		tb.Cleanup(s.Close)
	}
	return s
}

// URL is the server's root, e.g. http://127.0.0.1:41234.
func (s *Infusion) URL() string { return s.srv.URL }

// BaseURL is the API's base, URL()+"/api" (the instance's base.url).
func (s *Infusion) BaseURL() string { return s.srv.URL + infusionAPIPrefix }

// ResourceURL is the absolute URL of a resource's endpoint.
func (s *Infusion) ResourceURL(resource string) string {
	return s.BaseURL() + InfusionPath(resource)
}

// Close stops the server. It may be called more than once.
func (s *Infusion) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
}

// License is the licenseuuid the simulator accepts.
func (s *Infusion) License() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.license
}

// Session is the current sessionuuid.
func (s *Infusion) Session() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.session
}

// NewSession generates a new session id and returns it; the previous one
// stops working at once (401).
func (s *Infusion) NewSession() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newSessionLocked()
}

func (s *Infusion) newSessionLocked() string {
	s.session = fmt.Sprintf("5e551011-%04x-4000-8000-%012x", s.n&0xffff, len(s.sessions)+1)
	s.sessions = append(s.sessions, s.session)
	return s.session
}

// InstanceConfiguration returns the upstream part of a pollhook "infusion"
// instance's configuration pointing at this simulator: base.url,
// licenseuuid and sessionuuid (the current session). The caller adds the
// event.* keys.
func (s *Infusion) InstanceConfiguration() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]any{
		"base.url":    s.srv.URL + infusionAPIPrefix,
		"licenseuuid": s.license,
		"sessionuuid": s.session,
	}
}

// SetClock sets the clock that dates records and the ledger (readings are
// truncated to milliseconds, in UTC). nil restores time.Now. The rate
// limit always runs on wall-clock time.
func (s *Infusion) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	s.mu.Lock()
	s.clock = now
	s.mu.Unlock()
}

// Now is the record clock's reading, in UTC, in milliseconds.
func (s *Infusion) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nowLocked()
}

func (s *Infusion) nowLocked() time.Time { return s.clock().UTC().Truncate(time.Millisecond) }

// SetRateLimit changes the requests per second (0: unlimited).
func (s *Infusion) SetRateLimit(n int) {
	s.mu.Lock()
	s.rateLimit = n
	s.mu.Unlock()
}

// SetPageSize changes the most records one call returns (at least 1).
func (s *Infusion) SetPageSize(n int) {
	s.mu.Lock()
	s.pageSize = max(n, 1)
	s.mu.Unlock()
}

// PageSize is the most records one call returns.
func (s *Infusion) PageSize() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pageSize
}

// SetIndexDelay makes a change visible to data synchronisation only d after
// it was made, by the record clock (late-visible records). Until
// then the previous version, if any and not yet served, is what a call
// sees.
func (s *Infusion) SetIndexDelay(d time.Duration) {
	s.mu.Lock()
	s.indexDelay = d
	s.mu.Unlock()
}

// ResetCursors forgets what every session was served: the next call of
// each session starts a full resynchronisation.
func (s *Infusion) ResetCursors() {
	s.mu.Lock()
	s.cursors = map[string]map[string]map[string]int{}
	s.mu.Unlock()
}

// SetLatency delays every response by d (0: none).
func (s *Infusion) SetLatency(d time.Duration) { s.faults.setLatency(d) }

// FailNext makes the next n requests under BaseURL() that pass the rate
// limit fail with status (before authentication; the cursor does not
// move), with Retry-After when SetRetryAfter was given (429 and 503).
func (s *Infusion) FailNext(n, status int) { s.faults.failNext(n, status) }

// TruncateNext makes the next n successful data synchronisation answers
// 200 with the JSON cut in half. The cursor has moved: those records are
// lost to that session (the documented limit of delta upstreams).
func (s *Infusion) TruncateNext(n int) { s.faults.truncateNext(n) }

// MalformNext makes the next n successful data synchronisation answers 200
// with an HTML body. As with TruncateNext the cursor has moved.
func (s *Infusion) MalformNext(n int) { s.faults.malformNext(n) }

// HangUpNext makes the next n requests lose their connection unanswered
// (an upstream that dies mid-request, or a proxy that gives up).
func (s *Infusion) HangUpNext(n int) { s.faults.hangUpNext(n) }

// SetRetryAfter sets the Retry-After value of injected 429 and 503 answers
// ("" = none). Rate-limit 429s always carry "1".
func (s *Infusion) SetRetryAfter(v string) { s.faults.setRetryAfter(v) }

// SetForbidden makes a resource answer 403 {"message": "User not
// authorised"} (seed FAQ 11: the API user lacks the role), or serve again.
func (s *Infusion) SetForbidden(resource string, forbidden bool) {
	s.mu.Lock()
	s.forbidden[resource] = forbidden
	s.mu.Unlock()
}

// ClearFaults removes FailNext, TruncateNext, MalformNext, SetForbidden,
// the latency and Retry-After.
func (s *Infusion) ClearFaults() {
	s.faults.clear()
	s.mu.Lock()
	s.forbidden = map[string]bool{}
	s.mu.Unlock()
}

// InfusionRequest is one request the simulator received.
type InfusionRequest struct {
	Method, Path, Query string
	At                  time.Time // wall clock, arrival
	Resource            string    // the data synchronisation resource, "" for others
	License, Session    string    // the headers as sent
	Authorized          bool
	Throttled           bool // answered 429 by the rate limit
	Records             int  // records served
	Status              int  // 0 while in flight
}

// Requests returns a copy of the request log, in order of arrival.
func (s *Infusion) Requests() []InfusionRequest { return s.requests.all() }

// APIRequests counts the requests under BaseURL().
func (s *Infusion) APIRequests() int {
	return s.requests.count(func(r InfusionRequest) bool {
		return strings.HasPrefix(r.Path, infusionAPIPrefix+"/") || r.Path == infusionAPIPrefix
	})
}

// Unauthorized counts the requests answered 401.
func (s *Infusion) Unauthorized() int {
	return s.requests.count(func(r InfusionRequest) bool { return r.Status == http.StatusUnauthorized })
}

// PeakPerSecond is the most requests under BaseURL() that arrived within
// any 1-second window (wall clock), 429s included.
func (s *Infusion) PeakPerSecond() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// Throttled counts the requests the rate limit answered with 429.
func (s *Infusion) Throttled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.throttled
}

// ResetRequests empties the request log, resets PeakPerSecond and
// Throttled and empties the rate limit's window.
func (s *Infusion) ResetRequests() {
	s.requests.reset()
	s.mu.Lock()
	s.peak, s.throttled = 0, 0
	s.arrivals, s.accepted = nil, nil
	s.mu.Unlock()
}

// admitLocked records an API arrival at wall time t and reports whether
// the rate limit lets it through.
func (s *Infusion) admitLocked(t time.Time) bool {
	cut := t.Add(-time.Second)
	s.arrivals = dropUntil(s.arrivals, cut)
	s.arrivals = append(s.arrivals, t)
	s.peak = max(s.peak, len(s.arrivals))
	s.accepted = dropUntil(s.accepted, cut)
	if s.rateLimit > 0 && len(s.accepted) >= s.rateLimit {
		s.throttled++
		return false
	}
	s.accepted = append(s.accepted, t)
	return true
}

// dropUntil removes the leading times not after cut.
func dropUntil(ts []time.Time, cut time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(cut) {
		i++
	}
	return append(ts[:0], ts[i:]...)
}

func (s *Infusion) serveHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	idx := s.requests.add(InfusionRequest{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, At: now,
		License: r.Header.Get("licenseuuid"), Session: r.Header.Get("sessionuuid"),
	})
	if !s.faults.wait(w, r, s.closed) {
		return
	}
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	var info infusionInfo
	p := r.URL.Path
	if p == infusionAPIPrefix || strings.HasPrefix(p, infusionAPIPrefix+"/") {
		s.serveAPI(sw, r, now, &info)
	} else {
		writeJSON(sw, http.StatusNotFound, map[string]any{"message": "Not Found"})
	}
	s.requests.update(idx, func(rq *InfusionRequest) {
		rq.Resource, rq.Authorized, rq.Throttled, rq.Records = info.resource, info.authorized, info.throttled, info.records
		rq.Status = sw.status
	})
}

type infusionInfo struct {
	resource   string
	authorized bool
	throttled  bool
	records    int
}

func (s *Infusion) serveAPI(w http.ResponseWriter, r *http.Request, arrival time.Time, info *infusionInfo) {
	rel := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, infusionAPIPrefix), "/")
	resource := ""
	for name, p := range infusionPaths {
		if p == rel {
			resource = name
		}
	}
	info.resource = resource

	s.mu.Lock()
	if !s.admitLocked(arrival) {
		s.mu.Unlock()
		info.throttled = true
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusTooManyRequests, map[string]any{
			"message": "Rate limit exceeded: at most 10 requests per second"})
		return
	}
	if status, retryAfter, ok := s.faults.takeNext(); ok {
		s.mu.Unlock()
		setRetryAfterHeader(w, status, retryAfter)
		writeJSON(w, status, map[string]any{"message": "Injected failure: " + http.StatusText(status)})
		return
	}
	lic, sess := r.Header.Get("licenseuuid"), r.Header.Get("sessionuuid")
	var authErr string
	switch {
	case lic == "" || sess == "":
		authErr = "The licenseuuid and sessionuuid headers are required"
	case lic != s.license:
		authErr = "Invalid licenseuuid"
	case sess != s.session && containsString(s.sessions, sess):
		authErr = "Invalid sessionuuid: a new session ID has been generated and this one is no longer valid"
	case sess != s.session:
		authErr = "Invalid sessionuuid"
	}
	if authErr != "" {
		s.mu.Unlock()
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": authErr})
		return
	}
	info.authorized = true
	if resource == "" {
		s.mu.Unlock()
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
		return
	}
	if r.Method != http.MethodGet {
		s.mu.Unlock()
		w.Header().Set("Allow", "GET")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"message": "Method not allowed"})
		return
	}
	if s.forbidden[resource] {
		s.mu.Unlock()
		writeJSON(w, http.StatusForbidden, map[string]any{"message": "User not authorised"})
		return
	}
	recs, more := s.syncLocked(sess, resource)
	info.records = len(recs)
	s.mu.Unlock()

	body, err := json.Marshal(map[string]any{resource: recs, "more": more})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"message": err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.faults.corrupt(body))
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
