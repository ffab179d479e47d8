package engine_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pollhook/pollhook/instances"
)

func TestPollJobReturnsFailedResourcesAndAStop(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	store, in := r.storedKeapInstance()
	job := r.engine.PollJob(store)
	if err := job(r.ctx, in.ID); err != nil {
		t.Errorf("a healthy poll: %v, want nil", err)
	}
	r.keap.FailNext(20, 500)
	if err := job(r.ctx, in.ID); err == nil || !strings.Contains(err.Error(), "resource contacts") {
		t.Errorf("a failed poll: %v, want an error naming resource contacts", err)
	}
	r.keap.ClearFaults()
	stopped, cancel := context.WithCancel(r.ctx)
	cancel()
	if err := job(stopped, in.ID); !errors.Is(err, context.Canceled) {
		t.Errorf("a poll cut short by a stop: %v, want context.Canceled (the job is handed back)", err)
	}
}

// storedKeapInstance stores a polled Keap instance (events enabled; this
// rig's engine stores no notifications) in an instances.Store on the rig's
// NATS, as PollJob reads it.
func (r *rig) storedKeapInstance() (*instances.Store, *instances.Instance) {
	r.t.Helper()
	sealer, err := instances.NewSealer(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		r.t.Fatal(err)
	}
	store, err := instances.OpenStore(r.ctx, r.js, 1, sealer, r.registry)
	if err != nil {
		r.t.Fatal(err)
	}
	in := r.keapInstance(contactsResource(nil))
	in.EventsEnabled = true
	in.Configuration[instances.KeyEventsEnabled] = true
	in.Configuration[instances.KeyCallbackURL] = "http://127.0.0.1:9/hooks"
	tokenID := in.ID
	if err := store.Create(r.ctx, in); err != nil || in.ID != tokenID {
		r.t.Fatalf("create: id %d (token saved for %d), %v", in.ID, tokenID, err)
	}
	return store, in
}
