package dispatch

import (
	"context"
	"slices"
	"sync"
	"time"
)

// destSlots limits the attempts in flight per destination in this process
// (Config.PerDestination). A notification whose destination is at its
// limit may wait a moment for a slot, handed over by the attempt that
// ends, instead of going back to JetStream for DeferDelay: a burst to one
// destination is then sent back to back. Waiting holds one of the
// process's --concurrency slots, so at most maxWaiting notifications wait
// at once, whatever their destinations. A slow destination with a backlog
// can keep that many waiting (each at most DeferDelay) besides its own
// attempts; a cap per destination cost bursts to one destination their
// latency (p99 from 50 ms to 700 ms in the end-to-end benchmark).
type destSlots struct {
	perDest    int
	maxWaiting int

	mu      sync.Mutex
	dests   map[string]*dest
	waiting int
}

type dest struct {
	active  int
	waiters []chan struct{} // oldest first; each gets a slot handed over
}

func newDestSlots(perDest, maxWaiting int) *destSlots {
	return &destSlots{perDest: perDest, maxWaiting: max(maxWaiting, 1), dests: map[string]*dest{}}
}

// acquire takes a slot of destination name, waiting up to wait for one when
// all are taken and fewer than maxWaiting notifications wait. It reports
// whether it got one (the caller then releases it) and, when not, whether
// it waited (false: no slot free and no wait asked for or allowed).
func (s *destSlots) acquire(ctx context.Context, name string, wait time.Duration) (got, waited bool) {
	s.mu.Lock()
	d := s.dests[name]
	if d == nil {
		d = &dest{}
		s.dests[name] = d
	}
	if d.active < s.perDest {
		d.active++
		s.mu.Unlock()
		return true, false
	}
	if wait <= 0 || s.waiting >= s.maxWaiting {
		s.mu.Unlock()
		return false, false
	}
	handed := make(chan struct{}, 1)
	d.waiters = append(d.waiters, handed)
	s.waiting++
	s.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-handed:
		return true, true
	case <-timer.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	i := slices.Index(d.waiters, handed)
	if i >= 0 {
		d.waiters = slices.Delete(d.waiters, i, i+1)
		s.waiting--
	}
	s.mu.Unlock()
	if i < 0 { // handed over as the wait ended
		<-handed
		return true, true
	}
	return false, true
}

// release gives a slot of name back: to the oldest waiter, if any.
func (s *destSlots) release(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dests[name]
	if d == nil {
		return
	}
	if len(d.waiters) > 0 {
		handed := d.waiters[0]
		d.waiters = d.waiters[1:]
		s.waiting--
		handed <- struct{}{}
		return
	}
	if d.active--; d.active <= 0 {
		delete(s.dests, name)
	}
}

// briefReturns remembers the new notifications this process put back for a
// moment by redelivery (at most max at once, each for a while), so that a
// message that comes back here takes its notification up again without
// reading the indexes: they were checked, and no one has stored it (a write
// that finds it stored after all fails its compare-and-set, and the
// message comes back again to be read in full).
type briefReturns struct {
	max int

	mu  sync.Mutex
	out map[uint64]returned // by stream sequence
}

type returned struct {
	r     *record
	until time.Time
}

func newBriefReturns(max int) *briefReturns {
	return &briefReturns{max: max, out: map[uint64]returned{}}
}

// put remembers r until keep has passed; false when max are out already.
func (b *briefReturns) put(r *record, keep time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if len(b.out) >= b.max {
		for seq, e := range b.out {
			if now.After(e.until) {
				delete(b.out, seq)
			}
		}
		if len(b.out) >= b.max {
			return false
		}
	}
	b.out[r.Seq] = returned{r: r, until: now.Add(keep)}
	return true
}

// take returns and forgets the notification put back as seq, or nil.
func (b *briefReturns) take(seq uint64) *record {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.out[seq]
	delete(b.out, seq)
	if !ok || time.Now().After(e.until) {
		return nil
	}
	return e.r
}
