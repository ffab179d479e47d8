package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/broker/brokertest"
	"github.com/pollhook/pollhook/connectors"
	"github.com/pollhook/pollhook/e2e/simulators"
	"github.com/pollhook/pollhook/events"
	"github.com/pollhook/pollhook/instances"
	"github.com/pollhook/pollhook/pollers/engine"
	"github.com/pollhook/pollhook/upstream"
)

// clock is a settable time shared by the engine and the simulator.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time)     { c.mu.Lock(); c.now = t; c.mu.Unlock() }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// rig is an Engine over a real embedded NATS and a Keap simulator.
type rig struct {
	t        *testing.T
	ctx      context.Context
	js       jetstream.JetStream
	registry *connectors.Registry
	tokens   *upstream.TokenStore
	state    *engine.StateStore
	engine   *engine.Engine
	keap     *simulators.Keap
	clock    *clock
	nextID   int64
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx := context.Background()
	js := brokertest.JetStream(t)
	if err := events.EnsureStreams(ctx, js, events.StreamOptions{Replicas: 1, Retention: time.Hour}); err != nil {
		t.Fatal(err)
	}
	registry, err := connectors.Load("")
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := instances.NewSealer(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := upstream.OpenTokenStore(ctx, js, 1, sealer)
	if err != nil {
		t.Fatal(err)
	}
	state, err := engine.OpenStateStore(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)}
	keap := simulators.NewKeap(t)
	keap.SetClock(clk.Now)
	return &rig{
		t: t, ctx: ctx, js: js, registry: registry, tokens: tokens, state: state, keap: keap, clock: clk,
		engine: &engine.Engine{
			State: state, Registry: registry,
			Clients: upstream.NewClients(upstream.Options{Tokens: tokens}),
			Changes: events.NewPublisher(js),
			Now:     clk.Now,
		},
	}
}

// keapInstance creates an infusionsoftrest instance on the simulator, as
// POST /instances does: parse, exchange the code, save the token.
func (r *rig) keapInstance(contacts map[string]any) *instances.Instance {
	r.t.Helper()
	cfg := r.keap.InstanceConfiguration()
	cfg["event.notification.enabled"] = false
	cfg["event.poller.refresh_interval"] = 1
	cfg["event.poller.configuration"] = map[string]any{"contacts": contacts}
	body, _ := json.Marshal(map[string]any{
		"name": "keap", "element": map[string]any{"key": "infusionsoftrest"},
		"providerData": map[string]any{"code": r.keap.IssueCode()}, "configuration": cfg,
	})
	in, provider, problems := instances.ParseCreate(body, instances.Rules{Registry: r.registry, MinRefreshInterval: time.Second})
	if len(problems) > 0 {
		r.t.Fatalf("create body: %v", problems)
	}
	def, _ := r.registry.Get(in.ElementKey)
	tok, err := upstream.ExchangeCode(r.ctx, def, in.Configuration, in.Secrets, provider.Code)
	if err != nil {
		r.t.Fatal(err)
	}
	r.nextID++
	in.ID, in.CreatedDate, in.Revision = r.nextID, r.clock.Now(), 1
	if err := r.tokens.Save(r.ctx, in.ID, tok); err != nil {
		r.t.Fatal(err)
	}
	return in
}

func contactsResource(extra map[string]any) map[string]any {
	res := map[string]any{
		"url":     "/contacts?since=${gmtDate:yyyy-MM-dd'T'HH:mm:ss.SSS'Z'}&order=date_created&limit=2",
		"idField": "id",
		"datesConfiguration": map[string]any{
			"updatedDateField": "last_updated", "updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSZ",
			"createdDateField": "date_created", "createdDateFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSZ",
		},
	}
	for k, v := range extra {
		res[k] = v
	}
	return res
}

// poll polls in and returns the run of its one resource.
func (r *rig) poll(in *instances.Instance) engine.ResourceRun {
	r.t.Helper()
	result := r.engine.Poll(r.ctx, in)
	if len(result.Resources) != 1 {
		r.t.Fatalf("poll: %+v", result)
	}
	return result.Resources[0]
}

// stored returns every change on POLLHOOK_EVENTS.
func (r *rig) stored() []events.ChangeMessage {
	r.t.Helper()
	stream, err := r.js.Stream(r.ctx, events.EventsStream)
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := stream.Info(r.ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []events.ChangeMessage
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		msg, err := stream.GetMsg(r.ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			r.t.Fatal(err)
		}
		var c events.ChangeMessage
		if err := json.Unmarshal(msg.Data, &c); err != nil {
			r.t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// summary is "<eventType> <objectId>" of each stored change, in order.
func summary(changes []events.ChangeMessage) []string {
	out := make([]string, len(changes))
	for i, c := range changes {
		out[i] = c.EventType + " " + c.ObjectID
	}
	return out
}

func TestEachChangeIsReportedOnceAcrossOverlappingPolls(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	in := r.keapInstance(contactsResource(nil))
	r.clock.Add(time.Second)
	a := r.keap.CreateContact(simulators.ContactFields("Ada", "Lovelace", "ada@example.com"))
	b := r.keap.CreateContact(simulators.ContactFields("Alan", "Turing", "alan@example.com"))
	r.clock.Add(10 * time.Second)
	if run := r.poll(in); run.Status != engine.RunOK || run.Events != 2 {
		t.Fatalf("first poll: %+v", run)
	}
	r.clock.Add(10 * time.Second)
	if run := r.poll(in); run.Status != engine.RunOK || run.Events != 0 || run.Records != 2 {
		t.Fatalf("second poll re-read the overlap: %+v, want 2 records and no event", run)
	}
	if _, err := r.keap.UpdateContact(a.ID, map[string]any{"given_name": "Augusta"}); err != nil {
		t.Fatal(err)
	}
	r.clock.Add(10 * time.Second)
	if run := r.poll(in); run.Events != 1 {
		t.Fatalf("poll after an update: %+v", run)
	}
	got := summary(r.stored())
	want := []string{"CREATED " + a.IDString(), "CREATED " + b.IDString(), "UPDATED " + a.IDString()}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stored %v, want %v", got, want)
	}
	for _, c := range r.stored() {
		if c.InstanceID != in.ID || c.ElementKey != "infusionsoftrest" || c.ObjectType != "contacts" || len(c.Raw) == 0 {
			t.Errorf("change %+v lacks its instance, element, object type or record", c)
		}
	}
}

func TestWatermarkDoesNotMoveWhenAPageFails(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	in := r.keapInstance(contactsResource(nil))
	r.clock.Add(time.Second)
	for i := range 9 {
		r.keap.CreateContact(simulators.ContactFields(fmt.Sprint("c", i), "x", fmt.Sprintf("c%d@example.com", i)))
		r.clock.Add(time.Millisecond)
	}
	r.clock.Add(5 * time.Second)
	r.keap.FailPage(3)
	run := r.poll(in)
	if run.Status != engine.RunFailed || run.Error == nil || run.Pages != 2 {
		t.Fatalf("poll with a failing page 3: %+v", run)
	}
	if n := len(r.stored()); n != 0 {
		t.Fatalf("%d changes stored by a failed poll, want 0", n)
	}
	if !run.Watermark.Equal(in.CreatedDate) {
		t.Errorf("watermark %v after a failed poll, want it unmoved at %v", run.Watermark, in.CreatedDate)
	}
	if st, err := r.state.Load(r.ctx, in.ID, "contacts", in.CreatedDate); err != nil || !st.Watermark.Equal(in.CreatedDate) {
		t.Errorf("stored watermark %v, %v after a failed poll, want it unmoved at %v", st.Watermark, err, in.CreatedDate)
	}
	r.clock.Add(time.Minute)
	run = r.poll(in)
	if run.Status != engine.RunOK || run.Events != 9 || run.Pages != 6 {
		t.Fatalf("next poll: %+v, want 9 events over 5 pages and the empty one", run)
	}
	r.clock.Add(time.Minute)
	if run := r.poll(in); run.Status != engine.RunOK || run.Events != 0 {
		t.Fatalf("third poll: %+v, want nothing new", run)
	}
	got := summary(r.stored())
	if len(got) != 9 || len(slices.Compact(slices.Sorted(slices.Values(got)))) != 9 {
		t.Errorf("stored %v, want 9 distinct changes", got)
	}
}

func TestRecordsAtTheWatermarksInstantAreReportedOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	in := r.keapInstance(contactsResource(nil))
	r.clock.Add(time.Second)
	first := r.keap.CreateContact(simulators.ContactFields("same", "instant", "a@example.com"))
	// The poll starts at the very millisecond the record changed: the
	// watermark equals its date.
	if run := r.poll(in); run.Events != 1 {
		t.Fatalf("first poll: %+v", run)
	}
	second := r.keap.CreateContact(simulators.ContactFields("same", "instant", "b@example.com"))
	r.clock.Add(time.Second)
	if run := r.poll(in); run.Events != 1 {
		t.Fatalf("second poll: %+v, want only the record that arrived at the watermark's instant", run)
	}
	got := summary(r.stored())
	if want := []string{"CREATED " + first.IDString(), "CREATED " + second.IDString()}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stored %v, want %v", got, want)
	}
}

func TestALateIndexedRecordIsReportedWithinTheOverlap(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	in := r.keapInstance(contactsResource(map[string]any{"overlap": 60}))
	r.keap.SetIndexDelay(30 * time.Second)
	r.clock.Add(time.Second)
	late := r.keap.CreateContact(simulators.ContactFields("late", "indexed", "late@example.com"))
	r.clock.Add(10 * time.Second)
	if run := r.poll(in); run.Events != 0 {
		t.Fatalf("poll before the record is indexed: %+v", run)
	}
	r.clock.Add(30 * time.Second)
	if run := r.poll(in); run.Events != 1 {
		t.Fatalf("poll after it is indexed: %+v, want it reported", run)
	}
	if got := summary(r.stored()); len(got) != 1 || got[0] != "CREATED "+late.IDString() {
		t.Errorf("stored %v", got)
	}
}

func TestARecordWithoutAReadableDateIsSkippedAndCounted(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	in := r.keapInstance(contactsResource(nil))
	r.clock.Add(time.Second)
	r.keap.CreateContact(map[string]any{"given_name": "bad", "last_updated": "not a date"})
	good := r.keap.CreateContact(simulators.ContactFields("good", "record", "g@example.com"))
	r.clock.Add(time.Second)
	run := r.poll(in)
	if run.Status != engine.RunOK || run.Events != 1 || run.SkippedRecords != 1 || len(run.SkipReasons) != 1 {
		t.Fatalf("poll: %+v, want 1 event and 1 skipped record with its reason", run)
	}
	if got := summary(r.stored()); len(got) != 1 || got[0] != "CREATED "+good.IDString() {
		t.Errorf("stored %v", got)
	}
}
