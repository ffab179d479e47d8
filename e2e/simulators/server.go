package simulators

// What every simulator's HTTP server shares: the status writer that logs an
// answer's status, JSON answers, fields deep-copied through JSON, the
// injectable faults and the request log.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// faults are the failures a simulator was told to inject, shared by every
// simulator; each exposes the ones it supports under its own documented
// methods. Safe for concurrent use (its own lock: a simulator may call it
// while holding its own).
type faults struct {
	mu         sync.Mutex
	latency    time.Duration
	retryAfter string
	next       countdown // the next API requests fail
	token      countdown // the next token requests fail
	truncate   int       // the next successful answers are cut in half
	malform    int       // the next successful answers are HTML
	hangUp     int       // the next requests' connections are closed unanswered
}

// countdown fails the next n requests with status.
type countdown struct{ n, status int }

func (f *faults) setLatency(d time.Duration) { f.mu.Lock(); f.latency = d; f.mu.Unlock() }
func (f *faults) setRetryAfter(v string)     { f.mu.Lock(); f.retryAfter = v; f.mu.Unlock() }
func (f *faults) failNext(n, status int)     { f.mu.Lock(); f.next = countdown{n, status}; f.mu.Unlock() }
func (f *faults) failNextToken(n, status int) {
	f.mu.Lock()
	f.token = countdown{n, status}
	f.mu.Unlock()
}
func (f *faults) truncateNext(n int) { f.mu.Lock(); f.truncate = n; f.mu.Unlock() }
func (f *faults) malformNext(n int)  { f.mu.Lock(); f.malform = n; f.mu.Unlock() }
func (f *faults) hangUpNext(n int)   { f.mu.Lock(); f.hangUp = n; f.mu.Unlock() }

// clear removes every pending fault, the latency and the Retry-After value.
func (f *faults) clear() {
	f.mu.Lock()
	f.latency, f.retryAfter = 0, ""
	f.next, f.token, f.truncate, f.malform, f.hangUp = countdown{}, countdown{}, 0, 0, 0
	f.mu.Unlock()
}

// takeNext uses one pending FailNext: its status and Retry-After value.
func (f *faults) takeNext() (status int, retryAfter string, ok bool) {
	return f.take(&f.next)
}

// takeToken uses one pending FailNextToken.
func (f *faults) takeToken() (status int, retryAfter string, ok bool) {
	return f.take(&f.token)
}

func (f *faults) take(c *countdown) (int, string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.n <= 0 {
		return 0, "", false
	}
	c.n--
	return c.status, f.retryAfter, true
}

// retryAfterValue is the Retry-After value of injected 429 and 503 answers.
func (f *faults) retryAfterValue() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.retryAfter
}

// corrupt applies a pending MalformNext or TruncateNext to a successful
// answer's body.
func (f *faults) corrupt(body []byte) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.malform > 0:
		f.malform--
		return []byte("<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>\n")
	case f.truncate > 0:
		f.truncate--
		return body[:len(body)/2]
	}
	return body
}

// wait applies a pending HangUpNext (the connection is closed, no answer:
// what a client sees of an upstream that dies or a proxy that gives up)
// and delays an answer by the latency. It returns false when there is
// nothing to answer: hung up, or the client or the simulator (closed) gave
// up first.
func (f *faults) wait(w http.ResponseWriter, r *http.Request, closed <-chan struct{}) bool {
	f.mu.Lock()
	d, hangUp := f.latency, f.hangUp > 0
	if hangUp {
		f.hangUp--
	}
	f.mu.Unlock()
	if hangUp {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return false
	}
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-closed:
	}
	return false
}

// setRetryAfterHeader adds Retry-After to an injected 429 or 503 answer.
func setRetryAfterHeader(w http.ResponseWriter, status int, retryAfter string) {
	if retryAfter != "" && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) {
		w.Header().Set("Retry-After", retryAfter)
	}
}

// requestLog records every request a simulator received; R is the
// simulator's own request type. Safe for concurrent use.
type requestLog[R any] struct {
	mu      sync.Mutex
	entries []R
}

// add records r and returns its index for update.
func (l *requestLog[R]) add(r R) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, r)
	return len(l.entries) - 1
}

// update changes entry i once its answer is known (a reset meanwhile
// drops it).
func (l *requestLog[R]) update(i int, change func(*R)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i < len(l.entries) {
		change(&l.entries[i])
	}
}

// all returns a copy of the log, in order of arrival.
func (l *requestLog[R]) all() []R {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]R(nil), l.entries...)
}

// count counts the entries that match.
func (l *requestLog[R]) count(match func(R) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.entries {
		if match(r) {
			n++
		}
	}
	return n
}

func (l *requestLog[R]) reset() {
	l.mu.Lock()
	l.entries = nil
	l.mu.Unlock()
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// cloneFields deep-copies fields through JSON, so the store never shares
// memory with the caller and serves exactly what encoding/json would.
func cloneFields(f map[string]any) map[string]any {
	out := map[string]any{}
	if len(f) == 0 {
		return out
	}
	b, err := json.Marshal(f)
	if err != nil {
		panic(fmt.Sprintf("simulators: fields are not JSON: %v", err))
	}
	if err := json.Unmarshal(b, &out); err != nil {
		panic(fmt.Sprintf("simulators: fields are not JSON: %v", err))
	}
	// json turns nil values into null; keep them as nil (removal marks).
	return out
}
