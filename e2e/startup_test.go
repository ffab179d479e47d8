package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pollhook/pollhook/config"
	"github.com/pollhook/pollhook/internal/testnet"
)

func TestFirstStartPrintsGeneratedCredentialsOnceAndLaterStartsReuseThem(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	first := startPoller(t, dataDir, "")
	if err := first.stop(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	info, err := os.Stat(filepath.Join(dataDir, config.SecretsFile))
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("%s has mode %o, want 600", config.SecretsFile, mode)
	}

	second := startPoller(t, dataDir, first.auth)
	if strings.Contains(second.Output(), "Authorization:") {
		t.Errorf("the second start printed the credentials again:\n%s", second.Output())
	}
	if status, raw := second.do(http.MethodGet, "/instances", nil, nil); status != http.StatusOK {
		t.Errorf("the first start's credentials after a restart: %d %s", status, raw)
	}
}

func TestBadSettingsStopThePollerWithTheirName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"bad duration flag", []string{"--delivery-timeout", "soon"}, nil, "--delivery-timeout"},
		{"bad env", nil, []string{"POLLHOOK_MIN_REFRESH_INTERVAL=-5s"}, "POLLHOOK_MIN_REFRESH_INTERVAL"},
		{"external NATS without secrets", []string{"--nats-url", "nats://127.0.0.1:1"}, nil, "--secret-key"},
		{"bad replicas", []string{"--replicas", "9"}, nil, "--replicas"},
	}
	for _, tt := range tests {
		cmd := exec.Command(filepath.Join(binDir, "poller"), append([]string{"--data-dir", t.TempDir()}, tt.args...)...)
		cmd.Env = append(cleanEnv(), tt.env...)
		out, err := cmd.CombinedOutput()
		exitErr, ok := err.(*exec.ExitError)
		if !ok || exitErr.ExitCode() != 2 || !strings.Contains(string(out), tt.want) {
			t.Errorf("%s: exit %v, output %q; want exit 2 naming %s", tt.name, err, out, tt.want)
		}
	}
}

// A poller told to stop while it still waits for its NATS server (down, or
// not yet started) exits 0, as any stop does.
func TestSIGTERMBeforeNATSAnswersExitsZero(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(filepath.Join(binDir, "poller"), "--listen", testnet.Addr(t), "--nats-url", "nats://"+testnet.Addr(t),
		"--secret-key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "--user-secret", "u", "--org-secret", "o")
	cmd.Env = cleanEnv()
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the poller to start waiting for NATS", func() bool { return strings.Contains(out.String(), "poller starting") })
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM while waiting for NATS: %v, want 0\n%s", err, out)
	}
}
