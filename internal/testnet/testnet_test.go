package testnet

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestAPortIsOutsideTheEphemeralRangeListenableAndHeldAgainstOtherProcesses(t *testing.T) {
	first := Port(t)
	var low, high int
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if _, err := fmt.Sscan(string(b), &low, &high); err == nil && low <= first && first <= high {
			t.Errorf("port %d is in the ephemeral range %d-%d", first, low, high)
		}
	}
	// Another process's claim is one more open file on the lock.
	other, err := claim(filepath.Join(os.TempDir(), "pollhook-test-ports"), first)
	if err != nil {
		t.Fatal(err)
	}
	if other != nil {
		other()
		t.Fatalf("port %d claimed twice", first)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", first))
	if err != nil {
		t.Fatalf("port %d given but not listenable: %v", first, err)
	}
	defer l.Close()
	// The next port is tried next: while something listens on it, it is
	// not given.
	busy, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", first+1))
	if err != nil {
		t.Skipf("port %d in use already: %v", first+1, err)
	}
	defer busy.Close()
	if second := Port(t); second == first || second == first+1 {
		t.Fatalf("second port %d; %d was given, %d is listened on", second, first, first+1)
	}
}
