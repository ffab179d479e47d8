package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pollhook/pollhook/e2e/simulators"
)

// TestInfiniaEnvelopePollsDeliverEveryStatusChangeOnce runs the built-in
// "infinia" connector against the Infinia simulator, which holds its own
// key pair and checks every signature: POST status queries wrapped in the
// envelope for the three resources, a burst in one second, status changes,
// a retryable system code (SYS-003) survived within the poll, and a
// non-retryable one (SYS-001) that fails the poll with its message and
// loses nothing.
func TestInfiniaEnvelopePollsDeliverEveryStatusChangeOnce(t *testing.T) {
	t.Parallel()
	const (
		binding = simulators.InfiniaAccountBinding
		upload  = simulators.InfiniaTradeDetailsUpload
		sharing = simulators.InfiniaRevenueSharing
	)
	inf := simulators.NewInfinia(t)
	p := startPoller(t, t.TempDir(), "", "--retry-schedule", "50ms,100ms,200ms,400ms")
	s := newSink(t)
	bad := inf.InstanceConfiguration()
	bad["infinia.public.key"] = "<Infinia's RSA public key>"
	badBody := map[string]any{"name": "bad key", "element": map[string]any{"key": "infinia"}, "configuration": bad}
	if status, raw := apiDo(t, p, http.MethodPost, "/instances", badBody, nil); status != http.StatusBadRequest ||
		!strings.Contains(string(raw), `"configuration.infinia.public.key"`) {
		t.Errorf("create with a public key that is not one: %d %s, want 400 naming configuration.infinia.public.key", status, raw)
	}

	cfg := inf.InstanceConfiguration()
	cfg["environment"] = "sandbox" // base.url wins over it
	id, created := connectorInstance(t, p, "infinia", cfg, nil, nil, s.URL(), 2)
	// Infinia dates have whole seconds: begin in the second after the
	// instance's creation.
	time.Sleep(time.Until(created.Truncate(time.Second).Add(time.Second)))

	var bindings []simulators.InfiniaRecord
	for i := range 3 {
		bindings = append(bindings, inf.Create(binding, "PENDING", map[string]any{"accountNo": fmt.Sprint("ACC-", i)}))
	}
	up := inf.Create(upload, "PROCESSING", map[string]any{"fileName": "trades-1.csv"})
	inf.Create(sharing, "CALCULATING", map[string]any{"amount": "120.50", "currency": "USD"})
	pollExpecting(t, p, id, 5, "first poll")

	mustInfinia(t)(inf.SetStatus(binding, bindings[0].ID, "BOUND", nil))
	mustInfinia(t)(inf.SetStatus(upload, up.ID, "SUCCESS", map[string]any{"rows": 42}))
	inf.FailNextCode(1, "SYS-003", simulators.InfiniaCodeMessage("SYS-003"))
	pollExpecting(t, p, id, 2, "poll through a SYS-003")

	mustInfinia(t)(inf.SetStatus(binding, bindings[1].ID, "FAILED", map[string]any{"reason": "name mismatch"}))
	inf.FailNextCode(1, "SYS-001", simulators.InfiniaCodeMessage("SYS-001"))
	res := p.runPoll(id)
	failed := res.Resources[0] // accountBinding, polled first
	if failed.Resource != binding || failed.Status != "failed" || failed.Error == nil ||
		!strings.Contains(*failed.Error, "SYS-001") || !strings.Contains(*failed.Error, simulators.InfiniaCodeMessage("SYS-001")) {
		t.Fatalf("poll answered SYS-001: %+v, want %s failed with the code and its message", res, binding)
	}
	pollExpecting(t, p, id, 1, "poll after the SYS-001")

	want := windowExpectation(infiniaLedger(inf)).allowed
	s.expectLedger(t, simulators.InfiniaIDField, sinkChange.key, want)

	for _, r := range inf.Requests() {
		if !r.SignatureValid {
			t.Errorf("request %s %s: the simulator could not verify its signature (code %s)", r.Method, r.Path, r.Code)
		}
	}
	if n := inf.CodeCount(simulators.InfiniaSuccess); n == 0 {
		t.Errorf("no request answered %s", simulators.InfiniaSuccess)
	}
	t.Logf("%d changes delivered; %d envelope requests", len(want), len(inf.Requests()))
}

// eventsIn sums the events of every resource of a run.
func eventsIn(res runResult) int {
	n := 0
	for _, r := range res.Resources {
		n += r.Events
	}
	return n
}

// mustInfinia fails t on a simulator error.
func mustInfinia(t *testing.T) func(simulators.InfiniaRecord, error) {
	return func(_ simulators.InfiniaRecord, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}
