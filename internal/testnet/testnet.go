// Package testnet hands tests loopback ports for servers they stop and
// start again on the same address.
//
// A port taken from the kernel with ":0" is free only until the server on
// it stops: any process's next outgoing connection or ":0" listener may get
// it, and the restarted server then cannot listen. On Linux, the ports
// given here lie outside the kernel's ephemeral range, which those draw
// from, and each is held by a lock file for as long as the test process
// lives, so that the other test processes of a `go test ./...` run never
// pick it too. Elsewhere (no ip_local_port_range to read, or no flock),
// and when fewer than minPorts ports lie outside that range, they are
// ":0" ports, as before.
package testnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pollhook/pollhook/internal/filelock"
)

const (
	lowest   = 10000 // below: ports servers of the machine tend to use
	highest  = 65535
	minPorts = 1000 // fewer outside the ephemeral range: use ":0" ports
)

var (
	mu     sync.Mutex
	ranges [][2]int // the ports outside the ephemeral range; nil: use ":0"
	next   int      // the port to try first; 0 before the first call
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
		ranges, next = outsideEphemeral(), lowest
	}
	if ranges == nil {
		return kernelPort(tb)
	}
	dir := lockDir()
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

// lockDir holds the lock files of the ports, one directory per user
// (another user's lock files cannot be opened).
func lockDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("pollhook-test-ports-%d", os.Getuid()))
}

// claim takes the lock file of port, or returns nil when another open
// file (of any process) holds it. The file's times are set to now, so that
// a cleaner of old temporary files leaves it while it is held.
func claim(dir string, port int) (release func(), err error) {
	path := filepath.Join(dir, strconv.Itoa(port))
	release, err = filelock.TryLock(path)
	if errors.Is(err, filelock.ErrLocked) {
		return nil, nil
	}
	if err == nil {
		now := time.Now()
		err = os.Chtimes(path, now, now)
	}
	if err != nil {
		if release != nil {
			release()
		}
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

// kernelPort is a ":0" port: free now, and no more than that.
func kernelPort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// outsideEphemeral returns the ports outside Linux's ip_local_port_range
// (rangesOutside), or nil when it cannot be read or without flock.
func outsideEphemeral() [][2]int {
	if !filelock.Supported {
		return nil
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return nil
	}
	var low, high int
	if _, err := fmt.Sscan(string(b), &low, &high); err != nil {
		return nil
	}
	return rangesOutside(low, high)
}

// rangesOutside returns the ranges of ports from lowest to highest outside
// low-high, lowest first, or nil when fewer than minPorts are.
func rangesOutside(low, high int) [][2]int {
	var out [][2]int
	size := 0
	if low > lowest {
		out, size = append(out, [2]int{lowest, low - 1}), low-lowest
	}
	if high < highest {
		from := max(high+1, lowest)
		out, size = append(out, [2]int{from, highest}), size+highest-from+1
	}
	if size < minPorts {
		return nil
	}
	return out
}
