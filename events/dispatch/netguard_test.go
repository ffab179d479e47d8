package dispatch

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDNS is a DNS server on 127.0.0.1 answering A and AAAA questions from
// a table the test changes, so that a name can resolve to a public address
// at creation and to a private one at delivery (DNS rebinding). Names not
// in the table are NXDOMAIN.
type fakeDNS struct {
	conn net.PacketConn

	mu      sync.Mutex
	answers map[string][]netip.Addr // lower-case name without the final dot
}

func newFakeDNS(t *testing.T) *fakeDNS {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDNS{conn: conn, answers: map[string][]netip.Addr{}}
	t.Cleanup(func() { conn.Close() })
	go d.serve()
	return d
}

// set makes name resolve to addrs (IPv4 ones answer A, IPv6 ones AAAA).
func (d *fakeDNS) set(name string, addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.answers[name] = nil
	for _, a := range addrs {
		d.answers[name] = append(d.answers[name], netip.MustParseAddr(a))
	}
}

// resolver is a Go resolver that asks only d.
func (d *fakeDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dialer net.Dialer
		return dialer.DialContext(ctx, "udp", d.conn.LocalAddr().String())
	}}
}

func (d *fakeDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if reply := d.answer(buf[:n]); reply != nil {
			_, _ = d.conn.WriteTo(reply, from)
		}
	}
}

// answer builds the reply to one query (one question), or nil for a packet
// it cannot read.
func (d *fakeDNS) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	if i+5 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i+1 : i+3])
	question := q[12 : i+5]

	d.mu.Lock()
	addrs, known := d.answers[strings.ToLower(strings.Join(labels, "."))]
	d.mu.Unlock()
	var records [][]byte
	for _, a := range addrs {
		if (qtype == 1 && a.Is4()) || (qtype == 28 && a.Is6()) {
			records = append(records, a.AsSlice())
		}
	}
	flags := uint16(0x8180) // response, recursion desired and available, no error
	if !known {
		flags |= 3 // NXDOMAIN
	}
	out := binary.BigEndian.AppendUint16(nil, binary.BigEndian.Uint16(q[0:2]))
	out = binary.BigEndian.AppendUint16(out, flags)
	out = binary.BigEndian.AppendUint16(out, 1)
	out = binary.BigEndian.AppendUint16(out, uint16(len(records)))
	out = binary.BigEndian.AppendUint32(out, 0) // no authority, no additional
	out = append(out, question...)
	for _, rdata := range records {
		out = append(out, 0xc0, 12) // the name: a pointer to the question's
		out = binary.BigEndian.AppendUint16(out, qtype)
		out = binary.BigEndian.AppendUint16(out, 1) // class IN
		out = binary.BigEndian.AppendUint32(out, 0) // TTL
		out = binary.BigEndian.AppendUint16(out, uint16(len(rdata)))
		out = append(out, rdata...)
	}
	return out
}

// The check at creation resolves the callback's name once; its answer may
// change afterwards (DNS rebinding). The dispatcher must judge the address
// it actually connects to, at every attempt.
func TestBlockPrivateCallbacksRefusesANameThatResolvesToAPrivateAddressAfterCreation(t *testing.T) {
	t.Parallel()
	const host = "hooks.pollhook.test"
	dns := newFakeDNS(t)
	s := newSink(t, nil) // on 127.0.0.1
	_, port, err := net.SplitHostPort(s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	callback, err := url.Parse("http://" + host + ":" + port + "/hooks")
	if err != nil {
		t.Fatal(err)
	}

	dns.set(host, "93.184.215.14")
	if err := checkCallbackURL(t.Context(), dns.resolver(), callback); err != nil {
		t.Fatalf("at creation, %s resolving to a public address was refused: %v", host, err)
	}
	dns.set(host, "127.0.0.1")
	if err := checkCallbackURL(t.Context(), dns.resolver(), callback); !errors.Is(err, ErrBlockedAddress) {
		t.Errorf("%s resolving to 127.0.0.1: %v, want ErrBlockedAddress", host, err)
	}

	e := newEnv(t, Options{})
	e.inst.set(1, Endpoint{CallbackURL: callback.String()})
	e.run(Config{Sender: newClient(time.Second, DefaultPerDestination, true, dns.resolver())})
	n := e.publish(1, "a")
	v := e.waitStatus(n.Message.EventID, StatusRetrying, 5*time.Second)
	if s.count() != 0 {
		t.Errorf("the sink on 127.0.0.1 got %d requests through a name that now resolves to it", s.count())
	}
	if v.LastError == nil || !strings.Contains(*v.LastError, "block-private-callbacks") {
		t.Errorf("lastError %v does not say why", v.LastError)
	}

	// Every kind of blocked answer, IPv4 and IPv6, is refused before a
	// connection is made.
	for _, private := range []string{"10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "127.0.0.2", "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1"} {
		dns.set(host, private)
		resp, err := newClient(time.Second, 1, true, dns.resolver()).Post(callback.String(), "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
		}
		if !errors.Is(err, ErrBlockedAddress) {
			t.Errorf("%s resolving to %s: %v, want ErrBlockedAddress", host, private, err)
		}
	}

	// Control: without the block, the same name and resolver reach the
	// sink, so the refusals above are the block's doing.
	dns.set(host, "127.0.0.1")
	resp, err := newClient(time.Second, 1, false, dns.resolver()).Post(callback.String(), "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("without the block: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || s.count() != 1 {
		t.Errorf("without the block: status %d, sink got %d requests; want 200 and 1", resp.StatusCode, s.count())
	}
}
