package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidwall/gjson"

	"github.com/pollhook/pollhook/events"
	"github.com/pollhook/pollhook/events/dispatch"
)

// BenchmarkEndToEnd measures pollhook where its users feel it: the real
// poller binary (embedded NATS on file storage, the dispatcher in
// process, signatures on) polls a fast upstream for many instances and
// delivers to local sinks. It runs once whatever b.N is:
//
//	go test ./e2e -run '^$' -bench EndToEnd -benchtime 1x -v
//
// Three phases: (1) the maximum rate: benchInstances polls of
// benchRecords new records each, started together, until every change is
// at a sink; (2) the latency from a notification's storage (its
// POLLHOOK_NOTIFY timestamp) to its arrival, with polls paced at half the
// rate of (1); (3) the baseline: a minimal Go client POSTing the bodies and
// headers the sinks received in (1) to the same sinks, with the
// dispatcher's concurrency (8 per destination); (4) the floor: as many
// changes only stored on POLLHOOK_EVENTS, which every poll must do.
func BenchmarkEndToEnd(b *testing.B) {
	const (
		benchInstances = 40
		benchRecords   = 1000
		benchBatch     = 10
		benchSinks     = 8
	)
	up := newBenchUpstream(benchRecords)
	defer up.Close()
	sinks := make([]*benchSink, benchSinks)
	for i := range sinks {
		sinks[i] = newBenchSink()
		defer sinks[i].Close()
	}
	p := startPoller(b, b.TempDir(), "", "--retry-schedule", "1s,2s,5s,10s,30s")

	ids := make([]int64, benchInstances)
	for i := range ids {
		ids[i] = benchInstance(b, p, up, i, sinks[i%benchSinks].URL(), benchBatch)
	}
	time.Sleep(10 * time.Millisecond) // records dated after every instance's creation

	// (1) The maximum rate.
	total := benchInstances * benchRecords
	started := time.Now()
	runAll(b, p, ids, 8)
	polled := time.Since(started)
	waitUntil(b, 5*time.Minute, func() bool { return sumEvents(sinks) >= total })
	took := time.Since(started)
	maxChanges := float64(total) / took.Seconds()
	notifications := sumPosts(sinks)
	b.ReportMetric(maxChanges, "changes/s")
	b.ReportMetric(float64(notifications)/took.Seconds(), "notifications/s")
	b.Logf("max rate: %d changes in %d notifications, polled in %v, delivered in %v: %.0f changes/s, %.0f notifications/s",
		total, notifications, polled.Round(time.Millisecond), took.Round(time.Millisecond), maxChanges, float64(notifications)/took.Seconds())
	phase1 := make([][]benchPost, len(sinks))
	for i, s := range sinks {
		phase1[i] = s.take()
	}
	reportDuplicates(b, p, "max rate", slices.Concat(phase1...))

	// (2) Latency at half the maximum rate, for about 20 s.
	interval := time.Duration(float64(time.Second) * benchRecords / (maxChanges / 2))
	n := int(20 * time.Second / interval)
	n = max(min(n, 4*benchInstances), 4)
	b.Logf("half load: %d polls of %d records, one every %v", n, benchRecords, interval.Round(time.Millisecond))
	for _, s := range sinks {
		s.reset()
	}
	pace := time.NewTicker(interval)
	var wg sync.WaitGroup
	var ran atomic.Int64
	for i := range n {
		<-pace.C
		id := ids[i%len(ids)]
		wg.Go(func() {
			if benchRun(b, p, id) {
				ran.Add(1)
			}
		})
	}
	pace.Stop()
	wg.Wait()
	if skipped := n - int(ran.Load()); skipped > 0 {
		b.Logf("half load: %d polls skipped (the instance's previous poll still ran)", skipped)
	}
	waitUntil(b, 5*time.Minute, func() bool { return sumEvents(sinks) >= int(ran.Load())*benchRecords })
	stored := notifyTimestamps(b, p.natsURL)
	var lat []time.Duration
	var phase2 []benchPost
	for _, s := range sinks {
		for _, post := range s.take() {
			phase2 = append(phase2, post)
			if at, ok := stored[post.eventID]; ok {
				lat = append(lat, post.at.Sub(at))
			}
		}
	}
	reportDuplicates(b, p, "half load", phase2)
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("no latency measured")
	}
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.Logf("half load: %d notifications, stored → received p50 %v, p99 %v, max %v",
		len(lat), p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), lat[len(lat)-1].Round(100*time.Microsecond))

	// (3) The baseline: the same signed bodies, POSTed by a minimal client.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: dispatch.DefaultPerDestination}}
	started = time.Now()
	var sent atomic.Int64
	for i, s := range sinks {
		work := make(chan benchPost)
		for range dispatch.DefaultPerDestination {
			wg.Go(func() {
				for post := range work {
					req, _ := http.NewRequest(http.MethodPost, s.URL(), bytes.NewReader(post.body))
					req.Header = post.header.Clone()
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					sent.Add(1)
				}
			})
		}
		wg.Go(func() {
			for _, post := range phase1[i] {
				work <- post
			}
			close(work)
		})
	}
	wg.Wait()
	base := time.Since(started)
	baseRate := float64(sent.Load()) / base.Seconds()
	b.ReportMetric(baseRate, "baseline-notifications/s")
	b.ReportMetric(float64(notifications)/took.Seconds()/baseRate, "ratio")
	b.Logf("baseline: %d notifications in %v: %.0f notifications/s; pollhook/baseline %.2f",
		sent.Load(), base.Round(time.Millisecond), baseRate, float64(notifications)/took.Seconds()/baseRate)

	// (4) The floor the contract sets: the same number of changes only
	// stored on POLLHOOK_EVENTS (one message each, SPEC §5), a page per
	// poll, 8 polls at a time, in the same server. No delivery can be
	// faster than the changes it delivers are stored.
	started = time.Now()
	storeFloorChanges(b, p.natsURL, benchInstances, benchRecords)
	floorChanges := float64(total) / time.Since(started).Seconds()
	floorRate := floorChanges / benchBatch
	b.ReportMetric(floorRate/baseRate, "floor-ratio")
	b.Logf("floor: %d changes stored alone: %.0f changes/s, %.0f notifications/s of %d; floor/baseline %.2f",
		total, floorChanges, floorRate, benchBatch, floorRate/baseRate)
}

// reportDuplicates logs the notifications a phase received more than once
// (nothing fails here, so each should arrive once), with their state and
// what the poller logged about them or at level WARN and above.
func reportDuplicates(b *testing.B, p *poller, phase string, posts []benchPost) {
	b.Helper()
	seen := map[string]int{}
	for _, post := range posts {
		seen[post.eventID]++
	}
	dups := len(posts) - len(seen)
	if dups == 0 {
		return
	}
	b.Logf("%s: %d notifications received more than once", phase, dups)
	var twice []string
	for id, n := range seen {
		if n > 1 {
			_, raw := apiDo(b, p, http.MethodGet, "/instances/events/"+id, nil, nil)
			b.Logf("  %s, %d times: %s", id, n, raw)
			twice = append(twice, id)
		}
	}
	for line := range strings.Lines(p.Output()) {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") ||
			slices.ContainsFunc(twice, func(id string) bool { return strings.Contains(line, id) }) {
			b.Logf("  poller: %s", strings.TrimSpace(line))
		}
	}
}

// storeFloorChanges stores pages × records change events, like the bench
// upstream's records, on POLLHOOK_EVENTS with the poller's publisher, 8
// pages at a time. Nothing consumes that stream in pollhook itself.
func storeFloorChanges(b *testing.B, natsURL string, pages, records int) {
	b.Helper()
	publisher := events.NewPublisher(jetStreamAt(b, natsURL))
	date := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for page := range pages {
		changes := make([]events.ChangeMessage, records)
		for i := range changes {
			id := fmt.Sprintf("floor-%d-%d", page, i)
			changes[i] = events.ChangeMessage{
				Change: events.Change{
					ID:        events.ChangeID(int64(page), "records", id, events.Updated, date),
					EventType: events.Updated, ObjectType: "records", ObjectID: id, ElementKey: "generic", Date: date,
				},
				InstanceID: int64(page),
				Raw:        fmt.Appendf(nil, `{"id":"%s","name":"Record %d","email":"r%d@example.com","amount":%d.50,"updated":"%s"}`, id, i, i, i, date),
			}
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := publisher.PublishChanges(context.Background(), changes); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
}

// benchUpstream answers GET /<n>/records with benchRecords new records,
// each time others, dated a millisecond ago: every poll is that many
// changes.
type benchUpstream struct {
	*httptest.Server
	records int
	seq     atomic.Int64
}

func newBenchUpstream(records int) *benchUpstream {
	u := &benchUpstream{records: records}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gen := u.seq.Add(1)
		date := time.Now().Add(-time.Millisecond).UTC().Format("2006-01-02T15:04:05.000Z")
		var body bytes.Buffer
		body.WriteByte('[')
		for i := range u.records {
			if i > 0 {
				body.WriteByte(',')
			}
			fmt.Fprintf(&body, `{"id":"%d-%d","name":"Record %d","email":"r%d@example.com","amount":%d.50,"updated":"%s"}`, gen, i, i, i, i, date)
		}
		body.WriteByte(']')
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body.Bytes())
	}))
	return u
}

// benchPost is one POST a sink received.
type benchPost struct {
	eventID string
	at      time.Time
	header  http.Header
	body    []byte
}

// benchSink is a webhook receiver that answers 200 at once and keeps what
// it received.
type benchSink struct {
	*httptest.Server
	mu     sync.Mutex
	posts  []benchPost
	events atomic.Int64
}

func newBenchSink() *benchSink {
	s := &benchSink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		post := benchPost{eventID: r.Header.Get("Elements-Webhook-Id"), at: time.Now(), header: r.Header.Clone(), body: body}
		s.events.Add(gjson.GetBytes(body, "message.events.#").Int())
		s.mu.Lock()
		s.posts = append(s.posts, post)
		s.mu.Unlock()
	}))
	return s
}

func (s *benchSink) URL() string { return s.Server.URL + "/hooks" }

// take returns and forgets what the sink received.
func (s *benchSink) take() []benchPost {
	s.mu.Lock()
	defer s.mu.Unlock()
	posts := s.posts
	s.posts = nil
	return posts
}

func (s *benchSink) reset() {
	s.take()
	s.events.Store(0)
}

func sumEvents(sinks []*benchSink) int {
	n := 0
	for _, s := range sinks {
		n += int(s.events.Load())
	}
	return n
}

func sumPosts(sinks []*benchSink) int {
	n := 0
	for _, s := range sinks {
		s.mu.Lock()
		n += len(s.posts)
		s.mu.Unlock()
	}
	return n
}

// benchInstance creates a generic instance polling up's /<n>/records,
// delivering to callback in batches of batch, signed.
func benchInstance(b *testing.B, p *poller, up *benchUpstream, n int, callback string, batch int) int64 {
	b.Helper()
	body := map[string]any{
		"name": fmt.Sprint("bench ", n), "element": map[string]any{"key": "generic"},
		"configuration": map[string]any{
			"base.url":                         up.URL,
			"event.notification.enabled":       true,
			"event.notification.callback.url":  callback,
			"event.notification.signature.key": "bench signature key",
			"event.notification.batch_size":    batch,
			"event.poller.refresh_interval":    "60",
			"event.poller.configuration": map[string]any{"records": map[string]any{
				"url": fmt.Sprintf("/%d/records", n), "idField": "id",
				"datesConfiguration": map[string]any{
					"updatedDateField": "updated", "updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSX", "updatedDateTimezone": "UTC",
				},
			}},
		},
	}
	var in instanceView
	if status, raw := apiDo(b, p, http.MethodPost, "/instances", body, &in); status != http.StatusOK {
		b.Fatalf("create: %d %s", status, raw)
	}
	return in.ID
}

// runAll polls every instance once, parallel at a time.
func runAll(b *testing.B, p *poller, ids []int64, parallel int) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for _, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if !benchRun(b, p, id) {
				b.Errorf("instance %d: a poll skipped at the start", id)
			}
		})
	}
	wg.Wait()
}

// benchRun polls one instance. It reports whether the poll ran: false
// when the instance's previous poll still ran; any other outcome than ok
// fails b.
func benchRun(b *testing.B, p *poller, id int64) bool {
	var res runResult
	status, raw := apiDo(b, p, http.MethodPost, fmt.Sprintf("/instances/%d/poller/run", id), nil, &res)
	switch {
	case status == http.StatusOK && len(res.Resources) == 1 && res.Resources[0].Status == "skipped_running":
		return false
	case status != http.StatusOK || len(res.Resources) == 0 || res.Resources[0].Status != "ok":
		b.Errorf("poller/run: %d %s", status, raw)
	}
	return true
}

func waitUntil(b *testing.B, within time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("not within %v", within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// notifyTimestamps reads when each notification was stored: eventId →
// its POLLHOOK_NOTIFY message's timestamp.
func notifyTimestamps(b *testing.B, natsURL string) map[string]time.Time {
	b.Helper()
	js := jetStreamAt(b, natsURL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := js.Stream(ctx, dispatch.NotifyStream)
	if err != nil {
		b.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	out := make(map[string]time.Time, info.State.Msgs)
	for uint64(len(out)) < info.State.Msgs {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				b.Fatal(err)
			}
			out[m.Headers().Get(jetstream.MsgIDHeader)] = md.Timestamp
		}
		if got == 0 && strings.Contains(fmt.Sprint(batch.Error()), "timeout") {
			break
		}
	}
	return out
}
