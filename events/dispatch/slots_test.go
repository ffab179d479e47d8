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
