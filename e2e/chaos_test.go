package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pollhook/pollhook/e2e/simulators"
)

// The chaos test runs a poller (with the embedded NATS server) and two
// dispatcher processes against all four seed simulators while the
// upstreams change their data, fail, answer late, truncated and malformed,
// or hang up without an answer, the webhook sinks fail, time out and
// answer 429, and the poller and the dispatchers are killed with SIGKILL
// and restarted. At the end it compares
// what the sinks accepted with the simulators' ledgers.
//
// It runs for chaosEnv (a Go duration, e.g. POLLHOOK_CHAOS=10m), 40 s by
// default, which is what CI runs:
//
//	POLLHOOK_CHAOS=10m go test ./e2e -run TestChaos -v -timeout 30m
const chaosEnv = "POLLHOOK_CHAOS"

// chaosDelivery are the delivery flags of every process: a retry schedule
// of 90 s (a notification must outlive a poller restart, NATS
// included, and bursts of failures) and a 1 s delivery timeout.
var chaosDelivery = []string{"--retry-schedule", "200ms,500ms,1s,2s,3s,5s,8s,12s,16s,20s,25s,30s,35s,40s,45s,50s,55s,60s,70s,80s,90s", "--delivery-timeout", "1s"}

// chaosSettle bounds the wait, after the chaos, for every change to arrive:
// a poll lock left by a killed poller lapses after 30 s, then the next tick
// polls and the notifications go through their retries.
const chaosSettle = 3 * time.Minute

func TestChaosLosesNoChangeAndInventsNone(t *testing.T) {
	t.Parallel()
	run := 40 * time.Second
	if v := os.Getenv(chaosEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a positive Go duration such as 10m", chaosEnv, v)
		}
		run = d
	}
	started := time.Now()

	keap := simulators.NewKeap(t)
	// Short tokens, so that refreshes (with rotation) happen during a run;
	// pollhook renews a token 30 s before it expires.
	keap.SetAccessTokenLifetime(90 * time.Second)
	infusion := simulators.NewInfusion(t)
	finfo := simulators.NewFinfo(t, simulators.WithFinfoAccessTokenLifetime(90*time.Second),
		simulators.WithFinfoRefreshTokenLifetime(150*time.Second), simulators.WithFinfoLenientTokens())
	infinia := simulators.NewInfinia(t)

	p := startPoller(t, t.TempDir(), "", append([]string{"--dispatch=false"}, chaosDelivery...)...)
	dispatchers := []*dispatcherProcess{startDispatcher(t, p, chaosDelivery...), startDispatcher(t, p, chaosDelivery...)}

	every3s := map[string]any{"event.poller.refresh_interval": "0.05"}
	with := func(cfg map[string]any) map[string]any {
		for k, v := range every3s {
			cfg[k] = v
		}
		return cfg
	}
	articles := simulators.FinfoArticlesResource()
	articles["pagination"] = map[string]any{"type": "page", "pageParam": "page", "limitParam": "pageSize", "pageSize": 20}
	targets := []*chaosTarget{
		{name: "keap", idField: field("id"), batch: 10},
		{name: "infusion", idField: field("uuid"), batch: 5},
		{name: "finfo", idField: field("finfoArticleId"), batch: 1},
		{name: "infinia", idField: simulators.InfiniaIDField, batch: 3},
	}
	for _, tg := range targets {
		tg.sink = newSink(t)
		tg.sink.set(chaosSinkAnswer)
	}
	targets[0].id, targets[0].created = connectorInstance(t, p, "infusionsoftrest", with(keap.InstanceConfiguration()),
		map[string]any{"code": keap.IssueCode()}, nil, targets[0].sink.URL(), targets[0].batch)
	targets[1].id, targets[1].created = connectorInstance(t, p, "infusion", with(infusion.InstanceConfiguration()), nil, nil, targets[1].sink.URL(), targets[1].batch)
	targets[2].id, targets[2].created = connectorInstance(t, p, "finfo", with(finfo.InstanceConfiguration()), nil,
		map[string]any{"articles": articles}, targets[2].sink.URL(), targets[2].batch)
	infiniaCfg := with(infinia.InstanceConfiguration())
	targets[3].id, targets[3].created = connectorInstance(t, p, "infinia", infiniaCfg, nil, nil, targets[3].sink.URL(), targets[3].batch)
	// Infinia dates have whole seconds: changes begin in the next second.
	time.Sleep(time.Until(targets[3].created.Truncate(time.Second).Add(time.Second)))

	var faults atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	every := func(min, max time.Duration, f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(min + rand.N(max-min)):
					f()
				}
			}
		}()
	}
	every(100*time.Millisecond, 500*time.Millisecond, keapChanges(keap))
	every(100*time.Millisecond, 500*time.Millisecond, infusionChanges(infusion))
	every(100*time.Millisecond, 500*time.Millisecond, finfoChanges(finfo))
	every(300*time.Millisecond, 900*time.Millisecond, infiniaChanges(infinia))
	every(2*time.Second, 5*time.Second, func() {
		faults.Add(1)
		switch rand.IntN(12) {
		case 0:
			keap.FailNext(1+rand.IntN(3), []int{500, 502, 503}[rand.IntN(3)])
		case 1:
			keap.TruncateNext(1)
		case 2:
			keap.MalformNext(1)
		case 3:
			finfo.SetRetryAfter("1")
			finfo.FailNext(1, []int{429, 500}[rand.IntN(2)])
		case 4:
			finfo.FailNextToken(1, 503)
		case 5:
			infusion.FailNext(1, []int{500, 503}[rand.IntN(2)])
		case 6:
			infusion.SetLatency(time.Duration(rand.IntN(1500)) * time.Millisecond)
		case 7:
			infinia.FailNextCode(1, []string{"SYS-003", "SYS-008", "SYS-001"}[rand.IntN(3)], "")
		case 8:
			infinia.FailNext(1, 503)
		case 9:
			infinia.SetLatency(time.Duration(rand.IntN(1500)) * time.Millisecond)
		case 10:
			keap.HangUpNext(1 + rand.IntN(2))
		case 11:
			[]func(int){finfo.HangUpNext, infusion.HangUpNext, infinia.HangUpNext}[rand.IntN(3)](1)
		}
	})

	// Kills, from this goroutine (the helpers fail the test with t.Fatal):
	// the poller at a third of the run, a dispatcher at half, then one or
	// the other every 10-30 s.
	var pollerKills []time.Time
	dispatcherKills := 0
	next := started.Add(run / 3)
	killPoller := true
	for time.Until(next) < time.Until(started.Add(run)) {
		time.Sleep(time.Until(next))
		if killPoller {
			p.kill()
			pollerKills = append(pollerKills, time.Now())
			time.Sleep(time.Duration(300+rand.IntN(1700)) * time.Millisecond)
			p = p.restart()
		} else {
			i := rand.IntN(len(dispatchers))
			dispatchers[i].kill()
			dispatcherKills++
			time.Sleep(time.Duration(300+rand.IntN(1700)) * time.Millisecond)
			dispatchers[i] = startDispatcher(t, p, chaosDelivery...)
		}
		if len(pollerKills)+dispatcherKills == 1 {
			next = started.Add(run / 2)
		} else {
			next = time.Now().Add(10*time.Second + rand.N(20*time.Second))
		}
		killPoller = !killPoller
		if len(pollerKills)+dispatcherKills > 2 {
			killPoller = rand.IntN(2) == 0
		}
	}
	time.Sleep(time.Until(started.Add(run)))
	close(stop)
	wg.Wait()
	chaosEnded := time.Now()
	keap.ClearFaults()
	infusion.ClearFaults()
	finfo.ClearFaults()
	infinia.ClearFaults()
	for _, tg := range targets {
		tg.sink.set(func(int) sinkAnswer { return answerStatus(http.StatusOK) })
	}

	targets[0].expect = func() expectation { return windowExpectation(keapLedger(keap)) }
	targets[1].expect = func() expectation { return infusionExpectation(infusion, targets[1].created, pollerKills) }
	targets[2].expect = func() expectation { return windowExpectation(finfoLedger(finfo)) }
	targets[3].expect = func() expectation { return windowExpectation(infiniaLedger(infinia)) }
	for _, tg := range targets {
		waitFor(t, chaosSettle, tg.name+": every required change accepted by the sink", func() bool {
			return tg.missing(t) == 0
		})
	}
	time.Sleep(2 * time.Second) // room for a wrong extra delivery
	for _, tg := range targets {
		tg.check(t)
		if dead := deadLetters(t, p, tg.id); len(dead) != 0 {
			t.Errorf("%s: %d dead letters: %+v", tg.name, len(dead), dead[0])
		}
	}

	if n := infusion.Throttled(); n != 0 {
		t.Errorf("infusion: pollhook drew %d 429s from the 10 requests/s limit", n)
	}
	if v := finfo.TokenReuseViolations(); len(v) != 0 {
		t.Errorf("finfo: %d token requests while the last token was valid: %v", len(v), v)
	}
	if n := keap.ValidRefreshTokens(); n != 1 {
		t.Errorf("keap: %d valid refresh tokens at the end, want 1 (a rotation lost or doubled)", n)
	}

	var report strings.Builder
	fmt.Fprintf(&report, "chaos run %v (+%v settling), %d poller kills, %d dispatcher kills, %d upstream faults injected\n",
		run.Round(time.Second), time.Since(chaosEnded).Round(time.Second), len(pollerKills), dispatcherKills, faults.Load())
	fmt.Fprintf(&report, "%-9s %8s %8s %8s %9s %8s %8s %8s %10s\n", "connector", "ledger", "required", "changes", "unseen", "POSTs", "failed", "dupl.", "lost(kill)")
	for _, tg := range targets {
		fmt.Fprintf(&report, "%-9s %8d %8d %8d %9d %8d %8d %8d %10d\n", tg.name, tg.ledger, tg.required,
			tg.delivered, tg.unseen, tg.posts, tg.failedPosts, tg.duplicates, tg.lostToKill)
	}
	fmt.Fprintf(&report, "infusion: %d API requests, peak %d in one second (limit 10), %d throttled\n",
		infusion.APIRequests(), infusion.PeakPerSecond(), infusion.Throttled())
	fmt.Fprintf(&report, "finfo: %d access tokens issued (%d password, %d refresh grants) over %v with 90 s tokens; %d reuse violations\n",
		finfo.TokensIssued(), finfo.TokenRequests("password"), finfo.TokenRequests("refresh_token"), time.Since(started).Round(time.Second), len(finfo.TokenReuseViolations()))
	fmt.Fprintf(&report, "keap: %d token requests (%d refresh) with 90 s tokens over %v\n",
		keap.TokenRequests(""), keap.TokenRequests("refresh_token"), time.Since(started).Round(time.Second))
	t.Log("\n" + report.String())
}

// chaosSinkAnswer answers 70% of POSTs 200 at once and the rest with a
// failure: 500, 503, 429 with Retry-After, or no answer before the
// delivery timeout.
func chaosSinkAnswer(int) sinkAnswer {
	switch r := rand.IntN(100); {
	case r < 70:
		return answerStatus(http.StatusOK)
	case r < 78:
		return answerStatus(http.StatusInternalServerError)
	case r < 84:
		return answerStatus(http.StatusServiceUnavailable)
	case r < 90:
		return sinkAnswer{Status: http.StatusTooManyRequests, RetryAfter: "1"}
	default:
		return sinkAnswer{Status: http.StatusOK, Delay: 1500 * time.Millisecond}
	}
}

// chaosTarget is one instance under chaos and what its sink must hold.
type chaosTarget struct {
	name    string
	idField func(string) string
	batch   int
	sink    *sink
	id      int64
	created time.Time
	// expect is read again until the end: a delta upstream serves changes
	// made before the chaos ended for a while after.
	expect func() expectation

	// Counts for the report, filled in by check: delivered counts the
	// changes accepted, unseen the allowed versions that never arrived
	// (replaced before any poll saw them, or lost to a kill).
	ledger, required, lostToKill                      int
	delivered, unseen, posts, failedPosts, duplicates int
}

// expectation is what a sink must and may hold, by change key ("TYPE
// objectType objectId date-or-version").
type expectation struct {
	allowed  map[string]map[string]any // key -> the record as the upstream served it
	required []string
	// cut are delta versions served only in the last seconds before a
	// SIGKILL of the poller: their page may have been lost with the
	// process (SPEC §6), so they are allowed, not required.
	cut []string
	// ledger counts the simulator's changes.
	ledger int
}

// accepted returns the key of every change the sink accepted, with how
// often, and the change ids seen per key.
func (tg *chaosTarget) accepted(t *testing.T) (byKey map[string]int, idsOf map[string]map[string]bool, records map[string][]map[string]any) {
	byKey, idsOf, records = map[string]int{}, map[string]map[string]bool{}, map[string][]map[string]any{}
	for _, d := range tg.sink.received() {
		if !d.accepted() {
			continue
		}
		n := parseNotification(t, d.Body)
		for i, e := range n.Message.Events {
			key := e.key()
			byKey[key]++
			if idsOf[key] == nil {
				idsOf[key] = map[string]bool{}
			}
			idsOf[key][e.ID] = true
			var raw []map[string]any
			if err := json.Unmarshal(n.Message.Raw[e.ObjectType], &raw); err == nil && i < len(raw) {
				records[key] = append(records[key], raw[i])
			}
		}
	}
	return byKey, idsOf, records
}

// missing counts the required changes the sink has not accepted yet.
func (tg *chaosTarget) missing(t *testing.T) int {
	byKey, _, _ := tg.accepted(t)
	n := 0
	for _, k := range tg.expect().required {
		if byKey[k] == 0 {
			n++
		}
	}
	return n
}

// check fails t on a change accepted that the upstream never made (or
// with another record), a change under two change ids, or a required
// change missing, and fills in the counts.
func (tg *chaosTarget) check(t *testing.T) {
	t.Helper()
	byKey, idsOf, records := tg.accepted(t)
	exp := tg.expect()
	tg.ledger, tg.required = exp.ledger, len(exp.required)
	for _, key := range exp.cut {
		if byKey[key] == 0 {
			tg.lostToKill++
		}
	}
	for key, n := range byKey {
		want, ok := exp.allowed[key]
		if !ok {
			t.Errorf("%s: %s accepted %d times, but the upstream never made that change", tg.name, key, n)
			continue
		}
		if len(idsOf[key]) != 1 {
			t.Errorf("%s: %s arrived under %d change ids", tg.name, key, len(idsOf[key]))
		}
		wantJSON := string(mustJSON(t, jsonValue(t, want)))
		for _, rec := range records[key] {
			if got := string(mustJSON(t, rec)); got != wantJSON {
				t.Errorf("%s: %s carries\n  %s\nwant\n  %s", tg.name, key, got, wantJSON)
				break
			}
		}
		tg.delivered++
		tg.duplicates += n - 1
	}
	for _, key := range exp.required {
		if byKey[key] == 0 {
			t.Errorf("%s: %s never accepted by the sink", tg.name, key)
		}
	}
	tg.unseen = len(exp.allowed) - tg.delivered
	for _, d := range tg.sink.received() {
		tg.posts++
		if !d.accepted() {
			tg.failedPosts++
		}
	}
}

// ledgerEntry is one change of a window-polled upstream, by record.
type ledgerEntry struct {
	record  string // objectType + " " + objectId
	deleted bool   // a hard delete: nothing to see
	key     string
	body    map[string]any
}

// windowExpectation: a window poll sees each record's state at poll time,
// so every version may arrive and the last version of each live record
// must; a version replaced before any poll saw it cannot.
func windowExpectation(ledger []ledgerEntry) expectation {
	e := expectation{allowed: map[string]map[string]any{}, ledger: len(ledger)}
	last := map[string]ledgerEntry{}
	var order []string
	for _, c := range ledger {
		if _, seen := last[c.record]; !seen {
			order = append(order, c.record)
		}
		last[c.record] = c
		if !c.deleted {
			e.allowed[c.key] = c.body
		}
	}
	for _, r := range order {
		if c := last[r]; !c.deleted {
			e.required = append(e.required, c.key)
		}
	}
	return e
}

// infusionExpectation: a delta poll reports what it was served, so every
// served version may arrive and must, except the records of a page served
// in the last seconds before a SIGKILL of the poller (SPEC §6: such a
// page cannot be read again).
func infusionExpectation(inf *simulators.Infusion, created time.Time, kills []time.Time) expectation {
	e := expectation{allowed: map[string]map[string]any{}, ledger: len(inf.Changes())}
	eventDate := map[int]time.Time{}
	for _, c := range inf.Changes() {
		eventDate[c.Seq] = c.EventDate()
	}
	required, cut := map[string]bool{}, map[string]bool{}
	for _, v := range inf.Served() {
		date := eventDate[v.Change]
		if date.Before(created) {
			continue
		}
		key := changeKey(eventType(v.Kind), v.Resource, v.UUID, date.UTC().Format(millisUTC))
		e.allowed[key] = v.Record
		if slices.ContainsFunc(kills, func(k time.Time) bool { return !v.At.After(k) && k.Sub(v.At) < 5*time.Second }) {
			cut[key] = true
		} else {
			required[key] = true
		}
	}
	for k := range cut {
		if !required[k] {
			e.cut = append(e.cut, k)
		}
	}
	for k := range required {
		e.required = append(e.required, k)
	}
	return e
}

func keapLedger(k *simulators.Keap) []ledgerEntry {
	var out []ledgerEntry
	for _, c := range k.Changes() {
		out = append(out, ledgerEntry{
			record: c.Resource + " " + c.IDString(), deleted: c.Kind == simulators.Deleted,
			key: changeKey(eventType(c.Kind), c.Resource, c.IDString(), c.LastUpdated.UTC().Format(millisUTC)), body: c.Record,
		})
	}
	return out
}

func finfoLedger(f *simulators.Finfo) []ledgerEntry {
	var out []ledgerEntry
	for _, c := range f.Changes() {
		out = append(out, ledgerEntry{
			record: "articles " + c.IDString(), deleted: c.Kind == simulators.Deleted,
			key: changeKey(eventType(c.Kind), "articles", c.IDString(), c.LastModified.UTC().Format(millisUTC)), body: c.Record,
		})
	}
	return out
}

func infiniaLedger(s *simulators.Infinia) []ledgerEntry {
	var out []ledgerEntry
	for _, c := range s.Changes() {
		out = append(out, ledgerEntry{
			record: c.Resource + " " + c.ID,
			key:    changeKey(eventType(c.Kind), c.Resource, c.ID, c.UpdateTime.UTC().Format(time.RFC3339)), body: c.Record,
		})
	}
	return out
}

// liveIDs is the ids of the live records a change driver made, by resource.
type liveIDs[ID comparable] map[string][]ID

func (l liveIDs[ID]) pick(resource string) (ID, bool) {
	ids := l[resource]
	if len(ids) == 0 {
		var zero ID
		return zero, false
	}
	return ids[rand.IntN(len(ids))], true
}

func (l liveIDs[ID]) remove(resource string, id ID) {
	l[resource] = slices.DeleteFunc(l[resource], func(x ID) bool { return x == id })
}

// The change drivers make one random change per call: mostly creates, some
// updates, a few deletes. Each is called from one goroutine.

func keapChanges(k *simulators.Keap) func() {
	live, n := liveIDs[int64]{}, 0
	return func() {
		n++
		res := []string{simulators.Contacts, simulators.Opportunities}[rand.IntN(2)]
		id, ok := live.pick(res)
		switch r := rand.IntN(100); {
		case r < 55 || !ok:
			fields := map[string]any{"opportunity_title": fmt.Sprint("Deal ", n)}
			if res == simulators.Contacts {
				fields = simulators.ContactFields(fmt.Sprint("Given", n), "Chaos", fmt.Sprintf("c%d@example.com", n))
			}
			live[res] = append(live[res], k.Create(res, fields).ID)
		case r < 93:
			_, _ = k.Update(res, id, map[string]any{"notes": fmt.Sprint("change ", n)})
		default:
			_ = k.Delete(res, id)
			live.remove(res, id)
		}
	}
}

func infusionChanges(s *simulators.Infusion) func() {
	live, n := liveIDs[string]{}, 0
	resources := simulators.InfusionResources()
	return func() {
		n++
		res := resources[rand.IntN(len(resources))]
		id, ok := live.pick(res)
		switch r := rand.IntN(100); {
		case r < 55 || !ok:
			live[res] = append(live[res], s.Create(res, map[string]any{"name": fmt.Sprint("Item ", n), "price": n}).UUID)
		case r < 90:
			_, _ = s.Update(res, id, map[string]any{"price": n})
		default:
			_, _ = s.Delete(res, id)
			live.remove(res, id)
		}
	}
}

func finfoChanges(f *simulators.Finfo) func() {
	live, n := liveIDs[int64]{}, 0
	return func() {
		n++
		id, ok := live.pick("articles")
		switch r := rand.IntN(100); {
		case r < 60 || !ok:
			live["articles"] = append(live["articles"], f.CreateArticle(map[string]any{"name": fmt.Sprint("Article ", n)}).FinfoArticleID)
		case r < 95:
			_, _ = f.UpdateArticle(id, map[string]any{"price": n})
		default:
			_ = f.DeleteArticle(id)
			live.remove("articles", id)
		}
	}
}

func infiniaChanges(s *simulators.Infinia) func() {
	live, n := liveIDs[string]{}, 0
	resources := simulators.InfiniaResources()
	statuses := []string{"PENDING", "PROCESSING", "SUCCESS", "FAILED"}
	return func() {
		n++
		res := resources[rand.IntN(len(resources))]
		id, ok := live.pick(res)
		if rand.IntN(100) < 50 || !ok {
			live[res] = append(live[res], s.Create(res, "PENDING", map[string]any{"ref": fmt.Sprint("R", n)}).ID)
			return
		}
		_, _ = s.SetStatus(res, id, statuses[rand.IntN(len(statuses))], nil)
	}
}
