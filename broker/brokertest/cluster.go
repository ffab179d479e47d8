package brokertest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/broker"
	"github.com/pollhook/pollhook/internal/testnet"
)

// Cluster is a JetStream cluster of in-process servers on loopback, routed
// to each other, with file storage in temporary directories. A node can be
// stopped and started again on the same data, as after a crash.
type Cluster struct {
	tb    testing.TB
	dir   string
	nodes []*clusterNode
}

type clusterNode struct {
	clientPort, routePort int
	srv                   *server.Server // nil while stopped
}

// StartCluster starts n servers and waits until their JetStream answers.
// They are shut down when tb ends.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	c := &Cluster{tb: tb, dir: tb.TempDir()}
	for range n {
		c.nodes = append(c.nodes, &clusterNode{clientPort: testnet.Port(tb), routePort: testnet.Port(tb)})
	}
	tb.Cleanup(func() {
		for i := range c.nodes {
			c.Stop(i)
		}
	})
	for i := range c.nodes {
		c.Start(i)
	}
	return c
}

// URLs are the client URLs of every node, comma-separated.
func (c *Cluster) URLs() string {
	var urls []string
	for i := range c.nodes {
		urls = append(urls, c.url(i))
	}
	return strings.Join(urls, ",")
}

func (c *Cluster) url(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].clientPort) }

// JetStream connects to the given nodes, every node when none is given
// (reconnecting as they come and go), and waits until the cluster's
// JetStream answers; the connection is closed when tb ends.
func (c *Cluster) JetStream(nodes ...int) jetstream.JetStream {
	c.tb.Helper()
	urls := c.URLs()
	if len(nodes) > 0 {
		var some []string
		for _, i := range nodes {
			some = append(some, c.url(i))
		}
		urls = strings.Join(some, ",")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, js, err := broker.Connect(ctx, urls, broker.Logger(quiet), broker.Name(c.tb.Name()))
	if err != nil {
		c.tb.Fatal(err)
	}
	c.tb.Cleanup(nc.Close)
	for {
		try, cancelTry := context.WithTimeout(ctx, time.Second)
		_, err := js.AccountInfo(try)
		cancelTry()
		if err == nil {
			return js
		}
		if ctx.Err() != nil {
			c.tb.Fatalf("JetStream of the cluster: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Start starts node i (again, on its data) and waits until it accepts
// connections; a node whose server gives up (a port it cannot listen on)
// fails the test at once, with the server's reason.
func (c *Cluster) Start(i int) {
	c.tb.Helper()
	n := c.nodes[i]
	var routes []string
	for _, other := range c.nodes {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", other.routePort))
	}
	opts := &server.Options{
		ServerName: fmt.Sprintf("n%d", i+1),
		Host:       "127.0.0.1",
		Port:       n.clientPort,
		JetStream:  true,
		StoreDir:   filepath.Join(c.dir, fmt.Sprintf("n%d", i+1)),
		NoSigs:     true,
		Cluster:    server.ClusterOpts{Name: "brokertest", Host: "127.0.0.1", Port: n.routePort},
		Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
	}
	srv, err := broker.RunServer(opts, quiet, 30*time.Second)
	if err != nil {
		c.tb.Fatalf("node %d: %v", i+1, err)
	}
	n.srv = srv
}

// Stop shuts node i down, if it runs.
func (c *Cluster) Stop(i int) {
	n := c.nodes[i]
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
}
