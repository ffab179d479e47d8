package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollhook/pollhook/e2e/simulators"
)

// dispatcherProcess is a running cmd/dispatcher.
type dispatcherProcess struct {
	cmd     *exec.Cmd
	metrics string // http://host:port
	out     *lockedBuffer
	done    chan struct{}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startDispatcher runs cmd/dispatcher on p's NATS, reading the secret key
// p generated, and waits until it is ready.
func startDispatcher(t *testing.T, p *poller, flags ...string) *dispatcherProcess {
	t.Helper()
	listen := freeAddr(t)
	d := &dispatcherProcess{metrics: "http://" + listen, out: &lockedBuffer{}, done: make(chan struct{})}
	args := append([]string{"--nats-url", p.natsURL, "--data-dir", p.dataDir, "--metrics-listen", listen}, flags...)
	d.cmd = exec.Command(filepath.Join(binDir, "dispatcher"), args...)
	d.cmd.Env = cleanEnv()
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("dispatcher output:\n%s", d.out)
		}
	})
	waitFor(t, 30*time.Second, "dispatcher ready", func() bool {
		resp, err := http.Get(d.metrics + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return d
}

func (d *dispatcherProcess) kill() {
	_ = d.cmd.Process.Kill()
	<-d.done
}

// keapInstanceWithCallback creates an instance on keap delivering to url.
func keapInstanceWithCallback(t *testing.T, p *poller, keap *simulators.Keap, url, signatureKey string, batchSize int) int64 {
	t.Helper()
	body := keapInstanceBody(keap, "60")
	cfg := body["configuration"].(map[string]any)
	cfg["event.notification.callback.url"] = url
	cfg["event.notification.signature.key"] = signatureKey
	cfg["event.notification.batch_size"] = batchSize
	var in instanceView
	if status, raw := p.do(http.MethodPost, "/instances", body, &in); status != http.StatusOK {
		t.Fatalf("create: %d %s", status, raw)
	}
	time.Sleep(5 * time.Millisecond) // records strictly after the instance's creation
	return in.ID
}

func TestKeapChangesArriveAtTheSinkOnceSignedThroughASeparateDispatcher(t *testing.T) {
	t.Parallel()
	keap := simulators.NewKeap(t)
	p := startPoller(t, t.TempDir(), "", "--dispatch=false")
	d := startDispatcher(t, p, "--retry-schedule", "50ms,100ms,200ms")
	keys := map[string]string{
		"whsec": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"plain": "a plain shared secret",
	}
	for name, key := range keys {
		s := newSink(t)
		id := keapInstanceWithCallback(t, p, keap, s.URL(), key, 10)
		a := keap.CreateContact(simulators.ContactFields(name+"-a", "x", name+"a@example.com"))
		keap.CreateContact(simulators.ContactFields(name+"-b", "x", name+"b@example.com"))
		if _, err := keap.UpdateContact(a.ID, map[string]any{"given_name": name + "-a2"}); err != nil {
			t.Fatal(err)
		}
		// Both instances poll the same simulator; each reports only what
		// changed after its creation.
		res := p.runPoll(id)
		want := res.Resources[0].Events
		if want == 0 {
			t.Fatalf("%s: the poll found nothing: %+v", name, res)
		}
		waitFor(t, 20*time.Second, name+": every change at the sink", func() bool { return len(s.changeIDs(t)) == want })
		time.Sleep(300 * time.Millisecond) // room for a wrong second delivery
		for change, n := range s.changeIDs(t) {
			if n != 1 {
				t.Errorf("%s: change %s arrived %d times", name, change, n)
			}
		}
		for _, dl := range s.received() {
			var n notification
			if err := json.Unmarshal(dl.Body, &n); err != nil {
				t.Fatal(err)
			}
			m := n.Message
			if err := verifyElementsSignature(dl.Header, dl.Body, key); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			if err := verifyStandardWebhook(dl.Header, dl.Body, key); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			if dl.Header.Get("Elements-Webhook-Id") != m.EventID || dl.Header.Get("webhook-id") != m.EventID ||
				!strings.HasPrefix(dl.Header.Get("User-Agent"), "pollhook/") || dl.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%s: headers %v for eventId %s", name, dl.Header, m.EventID)
			}
			if m.InstanceID != id || m.InstanceID2 != id || m.ElementKey != "infusionsoftrest" || len(m.Events) == 0 {
				t.Errorf("%s: message %s", name, dl.Body)
			}
			var objectType string
			var records []map[string]any
			_ = json.Unmarshal(m.Raw["objectType"], &objectType)
			_ = json.Unmarshal(m.Raw["contacts"], &records)
			if objectType != "contacts" || len(records) != len(m.Events) {
				t.Fatalf("%s: raw %s for %d events", name, dl.Body, len(m.Events))
			}
			for i, e := range m.Events {
				if fmt.Sprint(records[i]["id"]) != e.ObjectID || e.ObjectType != "contacts" || e.ElementKey != "infusionsoftrest" || e.Date == "" || e.ID == "" {
					t.Errorf("%s: event %d %+v with record %v", name, i, e, records[i])
				}
			}
		}
	}
	resp, err := http.Get(d.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(metrics, []byte("pollhook_deliveries_total")) {
		t.Error("the dispatcher's /metrics has no pollhook_deliveries_total")
	}
}

func TestKillingTheDispatcherMidDeliveryLosesNothing(t *testing.T) {
	t.Parallel()
	keap := simulators.NewKeap(t)
	p := startPoller(t, t.TempDir(), "", "--dispatch=false")
	s := newSink(t)
	s.set(func(int) int { return http.StatusOK }, 300*time.Millisecond)
	id := keapInstanceWithCallback(t, p, keap, s.URL(), "key", 1)
	for i := range 24 {
		keap.CreateContact(simulators.ContactFields(fmt.Sprint("k", i), "x", fmt.Sprintf("k%d@example.com", i)))
	}
	res := p.runPoll(id)
	if res.Resources[0].Events != 24 {
		t.Fatalf("poll: %+v, want 24 events", res)
	}
	first := startDispatcher(t, p, "--retry-schedule", "50ms,100ms,200ms,400ms,800ms", "--concurrency", "4")
	waitFor(t, 20*time.Second, "some deliveries in flight", func() bool { return len(s.received()) >= 3 })
	first.kill()
	arrivedBeforeKill := len(s.changeIDs(t))
	startDispatcher(t, p, "--retry-schedule", "50ms,100ms,200ms,400ms,800ms", "--concurrency", "4")
	waitFor(t, 60*time.Second, "all 24 changes at the sink", func() bool { return len(s.changeIDs(t)) == 24 })
	for change, n := range s.changeIDs(t) {
		if n > 3 {
			t.Errorf("change %s arrived %d times", change, n)
		}
	}
	if arrivedBeforeKill >= 24 {
		t.Log("every change arrived before the kill; the test did not kill mid-delivery")
	}
}

type eventView struct {
	EventID        string `json:"eventId"`
	Status         string `json:"status"`
	Attempts       int    `json:"attempts"`
	LastStatusCode *int   `json:"lastStatusCode"`
	Reason         string `json:"reason"`
}

func (p *poller) notifications(path string) []eventView {
	p.t.Helper()
	var out []eventView
	if status, raw := p.do(http.MethodGet, path, nil, &out); status != http.StatusOK {
		p.t.Fatalf("GET %s: %d %s", path, status, raw)
	}
	return out
}

func TestFailingSinksRetryWithTheSameEventIDDeadLetterAndRedeliver(t *testing.T) {
	t.Parallel()
	keap := simulators.NewKeap(t)
	p := startPoller(t, t.TempDir(), "", "--retry-schedule", "50ms,100ms,200ms")

	// Fails twice, then takes it: three attempts with one eventId.
	flaky := newSink(t)
	flaky.set(func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}, 0)
	id := keapInstanceWithCallback(t, p, keap, flaky.URL(), "key", 10)
	keap.CreateContact(simulators.ContactFields("flaky", "x", "flaky@example.com"))
	p.runPoll(id)
	waitFor(t, 20*time.Second, "three attempts at the flaky sink", func() bool { return len(flaky.received()) >= 3 })
	ids := map[string]bool{}
	for _, d := range flaky.received() {
		ids[d.Header.Get("Elements-Webhook-Id")] = true
	}
	if len(ids) != 1 || len(flaky.received()) != 3 {
		t.Errorf("%d attempts with eventIds %v, want 3 attempts of one eventId", len(flaky.received()), ids)
	}
	waitFor(t, 10*time.Second, "delivered status", func() bool {
		evs := p.notifications(fmt.Sprintf("/instances/%d/events", id))
		return len(evs) == 1 && evs[0].Status == "delivered" && evs[0].Attempts == 3
	})

	// 410 Gone: failed at once.
	gone := newSink(t)
	gone.set(func(int) int { return http.StatusGone }, 0)
	goneID := keapInstanceWithCallback(t, p, keap, gone.URL(), "key", 10)
	keap.CreateContact(simulators.ContactFields("gone", "x", "gone@example.com"))
	p.runPoll(goneID)
	waitFor(t, 10*time.Second, "410 is a dead letter", func() bool {
		failed := p.notifications(fmt.Sprintf("/instances/%d/deliveries?status=failed", goneID))
		return len(failed) == 1
	})
	time.Sleep(500 * time.Millisecond)
	if n := len(gone.received()); n != 1 {
		t.Errorf("410 sink got %d attempts, want 1", n)
	}

	// Always 500: a dead letter with its reason; after the sink recovers,
	// redeliver brings it with the same eventId.
	down := newSink(t)
	down.set(func(int) int { return http.StatusInternalServerError }, 0)
	downID := keapInstanceWithCallback(t, p, keap, down.URL(), "key", 10)
	keap.CreateContact(simulators.ContactFields("down", "x", "down@example.com"))
	p.runPoll(downID)
	var dead eventView
	waitFor(t, 15*time.Second, "a dead letter after the schedule", func() bool {
		failed := p.notifications(fmt.Sprintf("/instances/%d/deliveries?status=failed", downID))
		if len(failed) == 1 {
			dead = failed[0]
		}
		return len(failed) == 1
	})
	if dead.Reason == "" || dead.LastStatusCode == nil || *dead.LastStatusCode != 500 {
		t.Errorf("dead letter %+v: want a reason and last status 500", dead)
	}
	down.set(func(int) int { return http.StatusOK }, 0)
	if status, raw := p.do(http.MethodPost, fmt.Sprintf("/instances/%d/deliveries/redeliver", downID), nil, nil); status != http.StatusOK {
		t.Fatalf("redeliver: %d %s", status, raw)
	}
	waitFor(t, 10*time.Second, "redelivered", func() bool {
		evs := p.notifications(fmt.Sprintf("/instances/%d/events", downID))
		return len(evs) == 1 && evs[0].Status == "delivered"
	})
	last := down.received()[len(down.received())-1]
	if got := last.Header.Get("Elements-Webhook-Id"); got != dead.EventID {
		t.Errorf("redelivered with eventId %s, want %s", got, dead.EventID)
	}
}
