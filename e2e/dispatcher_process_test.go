package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pollhook/pollhook/e2e/simulators"
	"github.com/pollhook/pollhook/internal/testnet"
)

// dispatcherProcess is a running cmd/dispatcher.
type dispatcherProcess struct {
	cmd     *exec.Cmd
	metrics string // http://host:port of --metrics-listen
	out     *lockedBuffer
	done    chan struct{}
	exitErr error // after done
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

// startDispatcher runs cmd/dispatcher on p's embedded NATS, reading the
// secret key p generated into its data dir, and waits until /readyz says
// it is ready.
func startDispatcher(t *testing.T, p *poller, flags ...string) *dispatcherProcess {
	t.Helper()
	listen := testnet.Addr(t)
	d := &dispatcherProcess{metrics: "http://" + listen, out: &lockedBuffer{}, done: make(chan struct{})}
	args := append([]string{"--nats-url", p.natsURL, "--data-dir", p.dataDir, "--metrics-listen", listen}, flags...)
	d.cmd = exec.Command(filepath.Join(binDir, "dispatcher"), args...)
	d.cmd.Env = cleanEnv()
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exitErr = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("dispatcher %d output:\n%s", d.cmd.Process.Pid, d.out)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-d.done:
			t.Fatalf("dispatcher exited before it was ready:\n%s", d.out)
		default:
		}
		if resp, err := http.Get(d.metrics + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dispatcher not ready within 30 s:\n%s", d.out)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to end.
func (d *dispatcherProcess) kill() {
	_ = d.cmd.Process.Kill()
	<-d.done
}

// stop sends SIGTERM and returns how the process ended, failing t when it
// does not end within 20 s.
func (d *dispatcherProcess) stop(t *testing.T) error {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
		return d.exitErr
	case <-time.After(20 * time.Second):
		t.Fatalf("dispatcher did not exit within 20 s of SIGTERM:\n%s", d.out)
		return nil
	}
}

// metricSum adds the values of every sample of metric whose labels contain
// all of labels (e.g. `outcome="delivered"`) on the Prometheus text page.
func metricSum(t *testing.T, base, metric string, labels ...string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	var sum float64
	found := false
	sc := bufio.NewScanner(bytes.NewReader(page))
	for sc.Scan() {
		line := sc.Text()
		name, rest, _ := strings.Cut(line, " ")
		labelSet := ""
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			name, labelSet, rest = line[:i], line[i:j+1], strings.TrimSpace(line[j+1:])
		}
		if name != metric {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(labelSet, l)
		}
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			t.Fatalf("metric line %q", line)
		}
		sum, found = sum+v, true
	}
	return sum, found
}

// keapInstanceWithCallback creates an infusionsoftrest instance on keap
// delivering to callback, signed with signatureKey, at most batchSize
// changes a notification.
func keapInstanceWithCallback(t *testing.T, p *poller, keap *simulators.Keap, callback, signatureKey string, batchSize int) int64 {
	t.Helper()
	body := keapInstanceBody(keap, "60")
	cfg := body["configuration"].(map[string]any)
	cfg["event.notification.callback.url"] = callback
	cfg["event.notification.signature.key"] = signatureKey
	cfg["event.notification.batch_size"] = batchSize
	var in instanceView
	if status, raw := apiDo(t, p, http.MethodPost, "/instances", body, &in); status != http.StatusOK {
		t.Fatalf("create: %d %s", status, raw)
	}
	time.Sleep(5 * time.Millisecond) // records strictly after the instance's creation
	return in.ID
}

// eventView is a notification as GET /instances/{id}/events and
// /deliveries show it.
type eventView struct {
	EventID         string          `json:"eventId"`
	Status          string          `json:"status"`
	Attempts        int             `json:"attempts"`
	LastStatusCode  *int            `json:"lastStatusCode"`
	LastError       *string         `json:"lastError"`
	Reason          string          `json:"reason"`
	ResponseExcerpt string          `json:"responseExcerpt"`
	Events          []notifiedEvent `json:"events"`
}

// apiDo is p.do reporting to t, for subtests sharing one poller.
func apiDo(t testing.TB, p *poller, method, path string, body, out any) (int, []byte) {
	t.Helper()
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, p.base+path, reader)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", p.auth)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	if resp.StatusCode >= 500 {
		logRequest(t, p, resp.Header.Get("X-Request-Id"))
	}
	return resp.StatusCode, raw
}

// logRequest logs what the poller wrote of request id: why it failed, when
// the body only says to see the server log.
func logRequest(t testing.TB, p *poller, id string) {
	t.Helper()
	if id == "" {
		return
	}
	for line := range strings.Lines(p.Output()) {
		if strings.Contains(line, id) {
			t.Logf("poller log of request %s: %s", id, strings.TrimSpace(line))
		}
	}
}

// pollNow runs every resource of instance id and returns the result.
func pollNow(t *testing.T, p *poller, id int64) runResult {
	t.Helper()
	var res runResult
	status, raw := apiDo(t, p, http.MethodPost, fmt.Sprintf("/instances/%d/poller/run", id), nil, &res)
	if status != http.StatusOK || len(res.Resources) == 0 || res.Resources[0].Status != "ok" {
		t.Fatalf("poller/run: %d %s", status, raw)
	}
	return res
}

// notificationsAt GETs a list of notifications (events or deliveries).
func notificationsAt(t *testing.T, p *poller, path string) []eventView {
	t.Helper()
	var out []eventView
	if status, raw := apiDo(t, p, http.MethodGet, path, nil, &out); status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, raw)
	}
	return out
}

// eventsOf lists an instance's notifications, newest first.
func eventsOf(t *testing.T, p *poller, id int64) []eventView {
	t.Helper()
	return notificationsAt(t, p, fmt.Sprintf("/instances/%d/events?limit=500", id))
}

// deadLetters lists an instance's failed notifications.
func deadLetters(t *testing.T, p *poller, id int64) []eventView {
	t.Helper()
	return notificationsAt(t, p, fmt.Sprintf("/instances/%d/deliveries?status=failed", id))
}
