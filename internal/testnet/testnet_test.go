package testnet

import (
	"fmt"
	"net"
	"os"
	"testing"
)

func TestAPortIsOutsideTheEphemeralRangeListenableAndHeldAgainstOtherProcesses(t *testing.T) {
	if outsideEphemeral() == nil {
		t.Skip("no ephemeral range to avoid here: Port gives \":0\" ports")
	}
	first := Port(t)
	var low, high int
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscan(string(b), &low, &high); err != nil || low <= first && first <= high {
		t.Errorf("port %d is in the ephemeral range %d-%d (%v)", first, low, high, err)
	}
	// Another process's claim is one more open file on the lock.
	other, err := claim(lockDir(), first)
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

func TestTheRangesOutsideTheEphemeralOnesAreNilWhenTooFew(t *testing.T) {
	for _, c := range []struct {
		low, high int
		want      [][2]int
	}{
		{32768, 60999, [][2]int{{10000, 32767}, {61000, 65535}}}, // Linux's default
		{20000, 64999, [][2]int{{10000, 19999}, {65000, 65535}}},
		{49152, 65535, [][2]int{{10000, 49151}}},
		{1024, 65535, nil}, // all ephemeral
		{10000, 65535, nil},
		{10400, 65200, nil},                                      // 400 + 335 ports outside
		{10500, 65000, [][2]int{{10000, 10499}, {65001, 65535}}}, // 500 + 535
	} {
		if got := rangesOutside(c.low, c.high); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("rangesOutside(%d, %d) = %v, want %v", c.low, c.high, got, c.want)
		}
	}
}
