package dispatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/broker/brokertest"
)

// putKeys writes n entries "<prefix><i>" = "v<i>" to the bucket, a
// thousand at a time.
func putKeys(t *testing.T, e *env, prefix string, n int) {
	t.Helper()
	for from := 0; from < n; from += 1000 {
		acks := make([]jetstream.PubAckFuture, 0, 1000)
		for i := from; i < min(from+1000, n); i++ {
			ack, err := e.js.PublishMsgAsync(kvWrite(fmt.Sprint(prefix, i), fmt.Appendf(nil, "v%d", i)))
			if err != nil {
				t.Fatal(err)
			}
			acks = append(acks, ack)
		}
		select {
		case <-e.js.PublishAsyncComplete():
		case <-time.After(30 * time.Second):
			t.Fatal("entries not stored")
		}
		for _, ack := range acks {
			select {
			case err := <-ack.Err():
				t.Fatal(err)
			default:
			}
		}
	}
}

func TestAScanVisitsEachLiveEntryOnceAsOfItsStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	putKeys(t, e, "n.7.", 3000)
	putKeys(t, e, "n.8.", 10) // another instance
	for _, k := range []string{"n.7.0", "n.7.1"} {
		if err := e.store.kv.Delete(t.Context(), k); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.store.kv.Purge(t.Context(), "n.7.2"); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	err := e.store.scan(t.Context(), "n.7.>", true, func(key string, value []byte, _ uint64) error {
		seen[key]++
		if want := "v" + key[len("n.7."):]; string(value) != want {
			t.Errorf("%s = %q, want %q", key, value, want)
		}
		if len(seen) == 1 { // written while the scan runs
			putKeys(t, e, "n.7.", 10) // again: these come back, later
			putKeys(t, e, "n.7.x", 5) // new
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for key, n := range seen {
		if n != 1 {
			t.Errorf("%s visited %d times", key, n)
		}
	}
	for _, gone := range []string{"n.7.0", "n.7.1", "n.7.2", "n.7.x0", "n.8.0"} {
		if seen[gone] > 0 {
			t.Errorf("%s visited", gone)
		}
	}
	// Those rewritten during the scan may be missed; every other is there.
	if len(seen) < 2997-10 || seen["n.7.2999"] != 1 {
		t.Errorf("%d entries visited (n.7.2999: %d), want at least %d", len(seen), seen["n.7.2999"], 2997-10)
	}
}

func TestAScanOnAClusterReadsEachEntryOnceWhileANodeCatchesUp(t *testing.T) {
	t.Parallel()
	cluster := brokertest.StartCluster(t, 3)
	e := &env{t: t, js: cluster.JetStream(0)}
	e.store = clusterStore(t, e.js)
	const n = 10_000
	putKeys(t, e, "n.7.", n)
	for _, node := range []int{1, 2} { // e is connected to the first
		info, err := e.store.bucket.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		stale := info.State.LastSeq // every entry is rewritten after this
		cluster.Stop(node)
		eventually(t, 30*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			info, err := e.store.bucket.Info(ctx)
			return err == nil && info.Cluster != nil && info.Cluster.Leader != "" && info.Cluster.Leader != fmt.Sprintf("n%d", node+1)
		}, func() string { return "no leader of the bucket's stream" })
		putKeys(t, e, "n.7.", n)
		putKeys(t, e, "n.7.", n)
		cluster.Start(node) // it has the entries of before
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
			revs := scanOnce(t, e.store, "n.7.>")
			if len(revs) != n {
				t.Fatalf("node n%d restarted: %d entries visited, want %d", node+1, len(revs), n)
			}
			for key, rev := range revs {
				if rev <= stale {
					t.Fatalf("node n%d restarted: %s visited at revision %d, rewritten after %d", node+1, key, rev, stale)
				}
			}
		}
	}
}

func TestAScanOnAClusterSeesEveryAcknowledgedWriteOnce(t *testing.T) {
	t.Parallel()
	cluster := brokertest.StartCluster(t, 3)
	writer := &env{t: t, js: cluster.JetStream(0)}
	writer.store = clusterStore(t, writer.js)
	reader := clusterStore(t, cluster.JetStream(2)) // its direct gets may be answered by its own node
	const n = 300
	for round := range 300 {
		putKeys(t, writer, "n.9.r", n)                          // rewritten each round
		putKeys(t, writer, fmt.Sprintf("n.9.new%d-", round), 1) // new
		// A replica that has not applied the rewrites yet may be read (an
		// old state), but no key twice, and nothing acknowledged is missed.
		revs := scanOnce(t, reader, "n.9.>")
		if len(revs) != n+round+1 || revs[fmt.Sprintf("n.9.new%d-0", round)] == 0 {
			t.Fatalf("round %d: %d entries visited, want %d with the new one", round, len(revs), n+round+1)
		}
	}
}

// clusterStore opens a Store with three replicas over js, once every node
// of its cluster has joined.
func clusterStore(t *testing.T, js jetstream.JetStream) *Store {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		store, err := OpenStore(ctx, js, Options{Replicas: 3, RetrySchedule: testSchedule})
		cancel()
		if err == nil {
			return store
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// scanOnce scans the entries matching filter and returns the revision
// each was visited at; a key visited twice fails the test.
func scanOnce(t *testing.T, store *Store, filter string) map[string]uint64 {
	t.Helper()
	revs := map[string]uint64{}
	err := store.scan(t.Context(), filter, false, func(key string, _ []byte, rev uint64) error {
		if revs[key] != 0 {
			return fmt.Errorf("%s visited twice, at revisions %d and %d", key, revs[key], rev)
		}
		revs[key] = rev
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return revs
}

func TestAScanOfNothingOfKeysOnlyOrStoppedEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	putKeys(t, e, "p.i1.1.", 5)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if keys, err := e.store.keys(ctx, "n.1.>"); err != nil || len(keys) != 0 {
		t.Errorf("no entries: %v, %v", keys, err)
	}
	keys, err := e.store.keys(ctx, "p.*.1.>")
	if err != nil || len(keys) != 5 {
		t.Errorf("keys %v, %v; want 5", keys, err)
	}
	visited := 0
	err = e.store.scan(ctx, "p.>", false, func(string, []byte, uint64) error {
		visited++
		return errScanStopped
	})
	if err != nil || visited != 1 {
		t.Errorf("stopped at once: %d visited, %v", visited, err)
	}
}

func TestAScanEndsWhenWhatItReadsIsPurgedMeanwhile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	putKeys(t, e, "n.3.", 20_000)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	visited := 0
	err := e.store.scan(ctx, "n.3.>", true, func(string, []byte, uint64) error {
		if visited++; visited == 1000 {
			return e.store.bucket.Purge(ctx, jetstream.WithPurgeSubject(bucketSubject("n.3.*")))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after %d visited: %v", visited, err)
	}
}

func TestAScanIsNotCutShortByEntriesRewrittenMeanwhile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	putKeys(t, e, "n.7.", 2000)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	rewriting := make(chan struct{})
	go func() { // other records of the instance keep changing
		defer close(rewriting)
		for i := 0; ctx.Err() == nil; i++ {
			if _, err := e.js.PublishMsgAsync(kvWrite(fmt.Sprint("n.7.hot", i%4), []byte("x"))); err != nil {
				return
			}
			if i%64 == 0 {
				<-e.js.PublishAsyncComplete()
			}
		}
	}()
	for range 20 {
		untouched := 0
		err := e.store.scan(ctx, "n.7.>", false, func(key string, _ []byte, _ uint64) error {
			if !strings.HasPrefix(key, "n.7.hot") {
				untouched++
			}
			return nil
		})
		if err != nil || untouched != 2000 {
			t.Fatalf("%d of 2000 entries visited, %v", untouched, err)
		}
	}
	cancel()
	<-rewriting
}

func TestAStatusListIsTheNewestInThatStatusUpToItsLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	// 100 notifications stored in an order of their own, every third failed:
	// enough failed ones that the list keeps only the newest as it reads.
	for _, i := range rand.Perm(100) {
		seq := uint64(i + 1)
		r := &record{EventID: fmt.Sprint("event-", seq), InstanceID: 1, Seq: seq, Status: StatusDelivered}
		if seq%3 == 0 {
			r.Status = StatusFailed
		}
		if _, err := e.store.put(t.Context(), stateKey(1, seq), r, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	// The newest, deleted: its marker still names it among the stream's
	// subjects, but it is not listed.
	if err := e.store.kv.Delete(t.Context(), stateKey(1, 100)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		status string
		limit  int
		want   []uint64
	}{
		{StatusFailed, 5, []uint64{99, 96, 93, 90, 87}},
		{"", 3, []uint64{99, 98, 97}},
		{StatusRetrying, 5, nil},
	} {
		views, err := e.store.List(t.Context(), 1, tt.status, tt.limit)
		var got []uint64
		for _, v := range views {
			if v.Status != cmp.Or(tt.status, v.Status) {
				t.Errorf("status %q listed %s in %s", tt.status, v.EventID, v.Status)
			}
			seq, _ := strconv.ParseUint(strings.TrimPrefix(v.EventID, "event-"), 10, 64)
			got = append(got, seq)
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("List(%q, %d) = %v, %v; want %v", tt.status, tt.limit, got, err, tt.want)
		}
	}
}

func TestTheRecordsOfAnInstanceWithMoreThanAPageOfSubjectsAreAllListed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	const n = subjectsPage + 1 // read with a scan, not in pages that may shift
	putKeys(t, e, statePrefix(5), n)
	seqs, err := e.store.seqs(t.Context(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != n || seqs[0] != 0 || seqs[n-1] != n-1 {
		t.Fatalf("%d sequences listed (first %v), want 0 to %d", len(seqs), seqs[:min(3, len(seqs))], n-1)
	}
}

func TestGoneIsTrueOnlyForAKeyWithoutAnEntryOnTheLeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	ctx := t.Context()
	putKeys(t, e, "n.6.", 4)
	if err := e.store.kv.Delete(ctx, "n.6.1"); err != nil {
		t.Fatal(err)
	}
	if err := e.store.kv.Purge(ctx, "n.6.2"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.putRaw(ctx, "n.6.9", []byte("v"), 0, time.Second); err != nil { // expires
		t.Fatal(err)
	}
	for key, want := range map[string]bool{"n.6.0": false, "n.6.3": false, "n.6.1": true, "n.6.2": true, "n.6.8": true} {
		if got, err := e.store.gone(ctx, key); err != nil || got != want {
			t.Errorf("gone(%s) = %v, %v; want %v", key, got, err, want)
		}
	}
	eventually(t, 10*time.Second, func() bool {
		got, err := e.store.gone(ctx, "n.6.9")
		return err == nil && got
	}, func() string { return "an expired entry is not gone" })
}

func TestAPurgeAtAnOldRevisionIsAConflictAndKeepsTheEntry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	ctx := t.Context()
	first, err := e.store.putRaw(ctx, "d.x", []byte("1"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.store.putRaw(ctx, "d.x", []byte("2"), first, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.purge(ctx, "d.x", first, time.Minute); !errors.Is(err, ErrConflict) {
		t.Fatalf("purge at an old revision: %v, want a conflict", err)
	}
	if gone, err := e.store.gone(ctx, "d.x"); err != nil || gone {
		t.Fatalf("after a conflicting purge: gone %v, %v", gone, err)
	}
	if err := e.store.purge(ctx, "d.x", second, time.Minute); err != nil {
		t.Fatal(err)
	}
	if gone, err := e.store.gone(ctx, "d.x"); err != nil || !gone {
		t.Fatalf("after a purge: gone %v, %v", gone, err)
	}
}
