// Package testnet hands tests loopback ports for servers they stop and
// start again on the same address.
//
// A port taken from the kernel with ":0" is free only until the server on
// it stops: any process's next outgoing connection or ":0" listener may get
// it, and the restarted server then cannot listen. The ports given here lie
// outside the kernel's ephemeral range, which those draw from, and each is
// held by a lock file for as long as the test process lives, so that the
// other test processes of a `go test ./...` run never pick it too.
package testnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pollhook/pollhook/internal/filelock"
)

const (
	lowest  = 10000 // below: ports servers of the machine tend to use
	highest = 65535
)

var (
	mu     sync.Mutex
	next   int      // the port to try first; 0 before the first call
	ranges [][2]int // the ports outside the ephemeral range, lowest first
	held   []func() // releases of the ports given: reachable, so their files stay open
)

// Addr returns "127.0.0.1:<port>" for a port nothing listens on now and
// that no other test process is given while this one runs.
func Addr(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("127.0.0.1:%d", Port(tb))
}

// Port is Addr's port alone.
func Port(tb testing.TB) int {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if next == 0 {
		ranges = outsideEphemeral()
		next = ranges[0][0]
	}
	dir := filepath.Join(os.TempDir(), "pollhook-test-ports")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	for _, r := range ranges {
		for port := max(next, r[0]); port <= r[1]; port++ {
			release, err := claim(dir, port)
			if err != nil {
				tb.Fatal(err)
			}
			if release == nil {
				continue
			}
			if !listenable(port) {
				release()
				continue
			}
			held, next = append(held, release), port+1
			return port
		}
	}
	tb.Fatal("testnet: no free port left outside the ephemeral range")
	return 0
}

// claim takes the lock file of port, or returns nil when another open
// file (of any process) holds it.
func claim(dir string, port int) (release func(), err error) {
	release, err = filelock.TryLock(filepath.Join(dir, strconv.Itoa(port)))
	if errors.Is(err, filelock.ErrLocked) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	return release, nil
}

func listenable(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// outsideEphemeral returns the ranges of ports from lowest to highest that
// the kernel does not hand out on its own: Linux's ip_local_port_range,
// else the range IANA suggests, which BSDs and macOS use.
func outsideEphemeral() [][2]int {
	low, high := 49152, 65535
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			l, errL := strconv.Atoi(f[0])
			h, errH := strconv.Atoi(f[1])
			if errL == nil && errH == nil {
				low, high = l, h
			}
		}
	}
	var out [][2]int
	if low > lowest {
		out = append(out, [2]int{lowest, low - 1})
	}
	if high < highest {
		out = append(out, [2]int{max(high+1, lowest), highest})
	}
	if len(out) == 0 { // the whole range is ephemeral: take the top of it
		out = append(out, [2]int{lowest, highest})
	}
	return out
}
