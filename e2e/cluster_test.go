package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/e2e/simulators"
	"github.com/pollhook/pollhook/internal/testnet"
)

// The cluster test runs pollhook the way it scales out: three nats-server
// nodes (built from the module go.mod pins) with cluster routes and
// JetStream, two pollers and two dispatchers on them with --replicas 3,
// and Keap simulators producing changes. Meanwhile it kills the leading
// poller, a dispatcher and a NATS node with SIGKILL, and restarts them.
// It is part of `go test ./e2e` (about a minute); run it alone with
//
//	go test ./e2e -run TestCluster -v

// nats-server is built once per test binary, into binDir.
var (
	natsServerOnce sync.Once
	natsServerErr  error
)

func natsServerBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(binDir, "nats-server")
	natsServerOnce.Do(func() {
		out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			natsServerErr = fmt.Errorf("build nats-server: %v\n%s", err, out)
		}
	})
	if natsServerErr != nil {
		t.Fatal(natsServerErr)
	}
	return bin
}

// natsNode is one nats-server process of a test cluster.
type natsNode struct {
	t         *testing.T
	name      string
	conf      string
	clientURL string
	cmd       *exec.Cmd
	out       *lockedBuffer
	done      chan struct{}
}

// startNATSCluster starts three nodes on loopback, routed to each other,
// with JetStream on file storage, and waits until JetStream answers.
func startNATSCluster(t *testing.T) []*natsNode {
	t.Helper()
	bin := natsServerBinary(t)
	dir := t.TempDir()
	var clientAddrs, routeAddrs []string
	for range 3 {
		clientAddrs, routeAddrs = append(clientAddrs, testnet.Addr(t)), append(routeAddrs, testnet.Addr(t))
	}
	var routes []string
	for _, a := range routeAddrs {
		routes = append(routes, "nats-route://"+a)
	}
	nodes := make([]*natsNode, 3)
	for i := range nodes {
		n := &natsNode{t: t, name: fmt.Sprintf("n%d", i+1), clientURL: "nats://" + clientAddrs[i]}
		n.conf = filepath.Join(dir, n.name+".conf")
		conf := fmt.Sprintf(`server_name: %s
listen: %s
max_payload: 2MB
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 2GB
}
cluster {
  name: pollhook
  listen: %s
  routes: [%s]
}
`, n.name, clientAddrs[i], filepath.Join(dir, n.name), routeAddrs[i], strings.Join(routes, ", "))
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		n.start(bin)
		nodes[i] = n
	}
	waitForJetStream(t, clusterURLs(nodes))
	return nodes
}

func (n *natsNode) start(bin string) {
	n.out, n.done = &lockedBuffer{}, make(chan struct{})
	n.cmd = exec.Command(bin, "-c", n.conf)
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	done := n.done
	go func() { _ = n.cmd.Wait(); close(done) }()
	n.t.Cleanup(func() {
		n.kill()
		if n.t.Failed() {
			n.t.Logf("nats-server %s output:\n%s", n.name, n.out)
		}
	})
}

func (n *natsNode) kill() {
	if n.cmd.Process != nil {
		_ = n.cmd.Process.Kill()
	}
	<-n.done
}

func clusterURLs(nodes []*natsNode) string {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.clientURL)
	}
	return strings.Join(urls, ",")
}

// waitForJetStream waits until the cluster's JetStream answers (a meta
// leader is elected).
func waitForJetStream(t *testing.T, urls string) {
	t.Helper()
	js := jetStreamAt(t, urls)
	waitFor(t, 60*time.Second, "JetStream of the NATS cluster", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
}

func randomSecret(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// clusterProcesses are the pollhook processes of a cluster test: flags
// common to all of them and the ones each kind needs.
type clusterProcesses struct {
	urls          string
	secretKey     string
	user, org     string
	delivery      []string
	pollers       []*poller
	dispatchers   []*dispatcherProcess
	sharedDataDir string // for startDispatcher; the secret key is given
}

func (c *clusterProcesses) startPoller(t *testing.T) *poller {
	t.Helper()
	listen := testnet.Addr(t)
	p := &poller{t: t, dataDir: t.TempDir(), auth: "User " + c.user + ", Organization " + c.org, base: "http://" + listen, natsURL: c.urls}
	args := append([]string{"--listen", listen, "--nats-url", c.urls, "--data-dir", p.dataDir, "--min-refresh-interval", "1s",
		"--replicas", "3", "--dispatch=false", "--secret-key", c.secretKey, "--user-secret", c.user, "--org-secret", c.org}, c.delivery...)
	return p.start(args)
}

func (c *clusterProcesses) startDispatcher(t *testing.T, flags ...string) *dispatcherProcess {
	t.Helper()
	return startDispatcher(t, &poller{natsURL: c.urls, dataDir: c.sharedDataDir},
		append(append([]string{"--secret-key", c.secretKey}, c.delivery...), flags...)...)
}

// leader returns the index of the poller whose scheduler leads, or -1.
func (c *clusterProcesses) leader(t *testing.T) int {
	for i, p := range c.pollers {
		select {
		case <-p.done:
			continue
		default:
		}
		if v, ok := metricSum(t, p.base, "pollhook_scheduler_leader"); ok && v == 1 {
			return i
		}
	}
	return -1
}

func TestClusterLosesNothingWhenALeadingPollerADispatcherAndANATSNodeDie(t *testing.T) {
	nodes := startNATSCluster(t)
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	c := &clusterProcesses{
		urls: clusterURLs(nodes), secretKey: base64.StdEncoding.EncodeToString(key),
		user: randomSecret(t, 24), org: randomSecret(t, 24), sharedDataDir: t.TempDir(),
		delivery: []string{"--retry-schedule", "200ms,500ms,1s,2s,3s,5s,8s,12s,16s,20s,25s,30s,40s,50s,60s", "--delivery-timeout", "2s"},
	}
	c.pollers = []*poller{c.startPoller(t), c.startPoller(t)}
	c.dispatchers = []*dispatcherProcess{c.startDispatcher(t, "--replicas", "3"), c.startDispatcher(t, "--replicas", "3")}

	var targets []*chaosTarget
	var keaps []*simulators.Keap
	for i := range 3 {
		keap := simulators.NewKeap(t)
		keap.SetLatency(50 * time.Millisecond) // polls that overlapped would show
		tg := &chaosTarget{name: fmt.Sprintf("keap%d", i), idField: field("id"), batch: 5, sink: newSink(t)}
		cfg := keap.InstanceConfiguration()
		cfg["event.poller.refresh_interval"] = "0.05"
		tg.id, tg.created = connectorInstance(t, c.pollers[0], "infusionsoftrest", cfg, map[string]any{"code": keap.IssueCode()}, nil, tg.sink.URL(), tg.batch)
		tg.expect = func() expectation { return windowExpectation(keapLedger(keap)) }
		targets, keaps = append(targets, tg), append(keaps, keap)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, keap := range keaps {
		change := keapChanges(keap)
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(400 * time.Millisecond):
					change()
				}
			}
		})
	}

	waitFor(t, 30*time.Second, "a scheduler leader", func() bool { return c.leader(t) >= 0 })
	time.Sleep(8 * time.Second)

	// The leading poller dies; the other must lead within 10 s.
	lead := c.leader(t)
	c.pollers[lead].kill()
	died := time.Now()
	waitFor(t, 15*time.Second, "the other poller leading", func() bool { return c.leader(t) == 1-lead })
	takeover := time.Since(died)
	if takeover > 10*time.Second {
		t.Errorf("the new leader took over %v after the old one died, want within 10 s", takeover)
	}
	c.pollers[lead] = c.pollers[lead].restart()
	time.Sleep(5 * time.Second)

	// A dispatcher dies mid-delivery.
	c.dispatchers[0].kill()
	time.Sleep(2 * time.Second)
	c.dispatchers[0] = c.startDispatcher(t) // with the default --replicas 1: it must not shrink the streams
	time.Sleep(5 * time.Second)

	// A NATS node dies; the processes connected to it move to the others.
	nodes[1].kill()
	time.Sleep(8 * time.Second)
	nodes[1].start(natsServerBinary(t))
	time.Sleep(5 * time.Second)

	close(stop)
	wg.Wait()
	for i, tg := range targets {
		waitFor(t, 2*time.Minute, tg.name+": every required change accepted by the sink", func() bool { return tg.missing(t) == 0 })
		tg.check(t)
		if dead := deadLetters(t, c.pollers[0], tg.id); len(dead) != 0 {
			t.Errorf("%s: %d dead letters: %+v", tg.name, len(dead), dead[0])
		}
		if n := keaps[i].MaxConcurrentAPIRequests(); n != 1 {
			t.Errorf("%s: Keap answered %d requests of the instance at once: two polls overlapped", tg.name, n)
		}
	}
	checkReplicas(t, c.urls, 3)
	var report strings.Builder
	fmt.Fprintf(&report, "leader takeover %v after SIGKILL\n", takeover.Round(100*time.Millisecond))
	for _, tg := range targets {
		fmt.Fprintf(&report, "%s: ledger %d, required %d, delivered %d, duplicates %d, POSTs %d\n",
			tg.name, tg.ledger, tg.required, tg.delivered, tg.duplicates, tg.posts)
	}
	t.Log("\n" + report.String())
}

// jetStreamAt connects to the NATS servers at urls (reconnecting as they
// come and go) until tb ends.
func jetStreamAt(tb testing.TB, urls string) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(urls, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

// checkReplicas fails t unless every pollhook stream and bucket has want
// replicas.
func checkReplicas(t *testing.T, urls string, want int) {
	t.Helper()
	js := jetStreamAt(t, urls)
	names := js.StreamNames(t.Context())
	n := 0
	for name := range names.Name() {
		if !strings.HasPrefix(name, "POLLHOOK_") && !strings.HasPrefix(name, "KV_POLLHOOK_") {
			continue
		}
		n++
		s, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != want {
			t.Errorf("stream %s has %d replicas, want %d", name, r, want)
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 9 {
		t.Errorf("%d pollhook streams and buckets, want every one of them", n)
	}
}
