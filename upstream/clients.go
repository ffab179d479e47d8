package upstream

import "sync"

// Clients hands out one Client per instance id, so that every poll and
// resource of an instance shares its rate limiter and credential state.
// Safe for concurrent use; it starts no goroutines. Call Forget when an
// instance is deleted.
type Clients struct {
	opts     Options
	mu       sync.Mutex
	clients  map[int64]*Client
	limiters map[int64]*pacer // outlive rebuilds of the Client
}

// NewClients returns an empty registry whose Clients use opts.
func NewClients(opts Options) *Clients {
	return &Clients{
		opts:     opts.withDefaults(),
		clients:  map[int64]*Client{},
		limiters: map[int64]*pacer{},
	}
}

// Get returns the Client of t.ID: the one already built for t.Revision, or
// a new one when the revision changed (its credentials may have: the token
// state is rebuilt from the token store, and the rate limiter is kept, with
// the new limit). A Client built for an older revision keeps working for
// the requests already using it. Errors are NewClient's; it does no I/O.
func (cs *Clients) Get(t Target) (*Client, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if c := cs.clients[t.ID]; c != nil && c.revision == t.Revision {
		return c, nil
	}
	delete(cs.clients, t.ID)
	c, err := newClient(t, cs.opts, cs.limiters[t.ID])
	if err != nil {
		return nil, err
	}
	cs.clients[t.ID] = c
	cs.limiters[t.ID] = c.limiter
	return c, nil
}

// Forget drops the Client and limiter of instance id (after DELETE
// /instances/{id}).
func (cs *Clients) Forget(id int64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.clients, id)
	delete(cs.limiters, id)
}
