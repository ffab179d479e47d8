package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pollhook/pollhook/internal/testnet"
)

// binDir holds the binaries TestMain builds once for every test.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pollhook-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, name := range []string{"poller", "dispatcher"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
		cmd.Dir = ".."
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", name+":", err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// poller is a running cmd/poller process.
type poller struct {
	t       testing.TB
	cmd     *exec.Cmd
	dataDir string
	base    string // http://host:port
	natsURL string // the NATS server's client URL (the embedded one's, or --nats-url)
	args    []string
	auth    string // Authorization header value for the organization
	done    chan struct{}
	exitErr error

	mu     sync.Mutex
	output bytes.Buffer // stdout and stderr
}

// startPoller runs cmd/poller on dataDir with the given extra flags and waits
// until its API answers. auth is the organization's Authorization header;
// when empty, it is read from the credentials the first start prints.
func startPoller(t testing.TB, dataDir, auth string, flags ...string) *poller {
	t.Helper()
	return startPollerOn(t, dataDir, auth, testnet.Addr(t), testnet.Addr(t), flags...)
}

// restart starts a new poller with p's arguments (after p was killed or
// stopped), so that dispatchers and clients of p find it again.
func (p *poller) restart() *poller {
	p.t.Helper()
	return (&poller{t: p.t, dataDir: p.dataDir, auth: p.auth, base: p.base, natsURL: p.natsURL}).start(p.args)
}

// startPollerOn is startPoller with the REST API on listen and the
// embedded NATS server on natsListen.
func startPollerOn(t testing.TB, dataDir, auth, listen, natsListen string, flags ...string) *poller {
	t.Helper()
	p := &poller{t: t, dataDir: dataDir, auth: auth, base: "http://" + listen, natsURL: "nats://" + natsListen}
	return p.start(append([]string{"--listen", listen, "--nats-listen", natsListen, "--data-dir", dataDir, "--min-refresh-interval", "1s"}, flags...))
}

// start runs cmd/poller with args and waits until its API answers at
// p.base; p.auth, when empty, is read from the credentials a first start
// prints.
func (p *poller) start(args []string) *poller {
	t := p.t
	t.Helper()
	p.args, p.done = args, make(chan struct{})
	p.cmd = exec.Command(filepath.Join(binDir, "poller"), args...)
	p.cmd.Env = cleanEnv()
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.output.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		p.exitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("poller output:\n%s", p.Output())
		}
	})
	p.waitReady()
	if p.auth == "" {
		p.auth = p.printedAuthorization()
	}
	return p
}

// cleanEnv is the test's environment without POLLHOOK_* settings.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "POLLHOOK_") {
			env = append(env, kv)
		}
	}
	return env
}

// Output returns everything the process printed so far.
func (p *poller) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

func (p *poller) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			p.t.Fatalf("poller exited before it was ready: %v\n%s", p.exitErr, p.Output())
		default:
		}
		resp, err := http.Get(p.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("poller not ready after 30 s\n%s", p.Output())
}

// printedAuthorization finds the "Authorization: ..." line a first start
// prints with the generated credentials.
func (p *poller) printedAuthorization() string {
	p.t.Helper()
	for line := range strings.SplitSeq(p.Output(), "\n") {
		if _, value, ok := strings.Cut(line, "Authorization: "); ok {
			return strings.TrimSpace(value)
		}
	}
	p.t.Fatalf("the poller printed no generated credentials:\n%s", p.Output())
	return ""
}

// kill sends SIGKILL and waits for the process to end.
func (p *poller) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGTERM and returns the exit error after the process ended.
func (p *poller) stop() error {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.done:
		return p.exitErr
	case <-time.After(30 * time.Second):
		p.t.Fatalf("poller did not exit within 30 s of SIGTERM\n%s", p.Output())
		return nil
	}
}

// do sends a request with the organization's credentials and decodes a JSON
// answer into out (when not nil). It returns the status and the raw body.
func (p *poller) do(method, path string, body any, out any) (int, []byte) {
	p.t.Helper()
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			p.t.Fatal(err)
		}
		reader = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, reader)
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Authorization", p.auth)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			p.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, raw
}
