package dispatch

import (
	"context"
	"testing"
	"time"
)

func TestDestSlotsHandOverToTheOldestWaiterAndBoundTheWaiting(t *testing.T) {
	t.Parallel()
	s := newDestSlots(4, 2)
	ctx := context.Background()
	for range 4 {
		if got, _ := s.acquire(ctx, "a", 0); !got {
			t.Fatal("one of the first four slots was refused")
		}
	}
	if got, _ := s.acquire(ctx, "a", 0); got {
		t.Fatal("a fifth slot without waiting")
	}
	if got, _ := s.acquire(ctx, "b", 0); !got {
		t.Fatal("another destination's slot was refused")
	}

	// Two wait (the bound); a third is refused at once.
	got := make(chan int, 2)
	for i := range 2 {
		go func() {
			if ok, waited := s.acquire(ctx, "a", 5*time.Second); ok && waited {
				got <- i
			}
		}()
		waitUntilWaiting(t, s, i+1)
	}
	began := time.Now()
	if got, waited := s.acquire(ctx, "a", 5*time.Second); got || waited {
		t.Fatalf("a waiter beyond maxWaiting: got %v, waited %v; want neither", got, waited)
	}
	if time.Since(began) > time.Second {
		t.Error("a waiter beyond maxWaiting waited")
	}
	s.release("a")
	if first := <-got; first != 0 {
		t.Errorf("waiter %d got the slot first, want the oldest", first)
	}
	s.release("a")
	<-got

	// A wait that ends without a slot gives its place back.
	began = time.Now()
	if got, waited := s.acquire(ctx, "a", 50*time.Millisecond); got || !waited {
		t.Fatalf("with every slot taken: got %v, waited %v; want a wait without a slot", got, waited)
	}
	if d := time.Since(began); d < 50*time.Millisecond {
		t.Errorf("gave up after %v, want the wait", d)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if got, _ := s.acquire(canceled, "a", time.Minute); got {
		t.Fatal("a slot came after ctx ended")
	}
	s.mu.Lock()
	waiting := s.waiting
	s.mu.Unlock()
	if waiting != 0 {
		t.Errorf("%d waiters left", waiting)
	}
	for range 4 {
		s.release("a")
	}
	s.release("b")
	if len(s.dests) != 0 {
		t.Errorf("destinations kept after every slot came back: %v", s.dests)
	}
}

func waitUntilWaiting(t *testing.T, s *destSlots, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		w := s.waiting
		s.mu.Unlock()
		if w == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiting, want %d", w, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBriefReturnsAreBoundedTakenOnceAndForgottenWhenOld(t *testing.T) {
	t.Parallel()
	b := newBriefReturns(2)
	if !b.put(&record{Seq: 1}, time.Minute) || !b.put(&record{Seq: 2}, 10*time.Millisecond) {
		t.Fatal("a return within the bound was refused")
	}
	if b.put(&record{Seq: 3}, time.Minute) {
		t.Fatal("a third return with two out")
	}
	if r := b.take(1); r == nil || r.Seq != 1 {
		t.Fatalf("take(1) = %v, want the record put back as 1", r)
	}
	if r := b.take(1); r != nil {
		t.Error("a return taken twice")
	}
	time.Sleep(20 * time.Millisecond)
	if !b.put(&record{Seq: 3}, time.Minute) || !b.put(&record{Seq: 4}, time.Minute) {
		t.Fatal("the places of a taken and an old return were not given back")
	}
	if r := b.take(2); r != nil {
		t.Error("an old return was taken")
	}
}
