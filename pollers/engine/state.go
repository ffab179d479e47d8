package engine

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/broker"
)

// StateBucket is the KV bucket holding each resource's poll state under
// "<instanceId>.<hex of the resource name>".
const StateBucket = "POLLHOOK_POLL_STATE"

// ResourceState is what pollhook remembers of one resource between polls.
type ResourceState struct {
	// Watermark is the UTC start of the last successful poll; at first, when
	// the resource was added. Nothing dated before Since(Watermark) is read.
	Watermark time.Time `json:"watermark"`
	// Seen holds the change ids reported inside the current window, with
	// their event dates, so overlapping polls report each change once.
	// Ids older than the window are dropped: the set stays bounded.
	Seen map[string]time.Time `json:"seen,omitempty"`

	LastRunAt     time.Time   `json:"lastRunAt,omitzero"`
	LastSuccessAt time.Time   `json:"lastSuccessAt,omitzero"`
	LastError     string      `json:"lastError,omitempty"`
	LastRun       ResourceRun `json:"lastRun"`
	Counts        Counts      `json:"counts"`

	revision uint64 // KV revision read; 0 = not stored yet
}

// Counts are a resource's totals since it was added.
type Counts struct {
	Polls          int64 `json:"polls"`
	Failures       int64 `json:"failures"`
	Records        int64 `json:"records"`
	Events         int64 `json:"events"`
	SkippedRecords int64 `json:"skippedRecords"`
}

// ErrStateChanged means another process saved the state meanwhile: the
// poll's result is dropped and the next tick polls again.
var ErrStateChanged = errors.New("poll state changed concurrently")

// StateStore keeps ResourceStates in KV. Safe for concurrent use; Save
// checks the revision Load returned.
type StateStore struct {
	kv jetstream.KeyValue
}

// OpenStateStore creates the bucket if needed (idempotent).
func OpenStateStore(ctx context.Context, js jetstream.JetStream, replicas int) (*StateStore, error) {
	kv, err := broker.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      StateBucket,
		Description: "pollhook poll state: watermark and recently seen changes per resource",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", StateBucket, err)
	}
	return &StateStore{kv: kv}, nil
}

func stateKey(instanceID int64, resource string) string {
	return strconv.FormatInt(instanceID, 10) + "." + hex.EncodeToString([]byte(resource))
}

// Load returns the state of a resource; a resource never polled gets a
// state whose watermark is since (when the resource was added).
func (s *StateStore) Load(ctx context.Context, instanceID int64, resource string, since time.Time) (*ResourceState, error) {
	entry, err := s.kv.Get(ctx, stateKey(instanceID, resource))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return &ResourceState{Watermark: since.UTC()}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load poll state %d/%s: %w", instanceID, resource, err)
	}
	var st ResourceState
	if err := json.Unmarshal(entry.Value(), &st); err != nil {
		return nil, fmt.Errorf("load poll state %d/%s: %w", instanceID, resource, err)
	}
	st.revision = entry.Revision()
	return &st, nil
}

// Save stores st if nobody saved the resource's state since st was loaded,
// else returns ErrStateChanged.
func (s *StateStore) Save(ctx context.Context, instanceID int64, resource string, st *ResourceState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("save poll state %d/%s: %w", instanceID, resource, err)
	}
	key := stateKey(instanceID, resource)
	var rev uint64
	if st.revision == 0 {
		rev, err = s.kv.Create(ctx, key, data)
	} else {
		rev, err = s.kv.Update(ctx, key, data, st.revision)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return ErrStateChanged
	}
	if err != nil {
		return fmt.Errorf("save poll state %d/%s: %w", instanceID, resource, err)
	}
	st.revision = rev
	return nil
}

// Forget drops the state of every resource of an instance (after DELETE).
func (s *StateStore) Forget(ctx context.Context, instanceID int64) error {
	lister, err := s.kv.ListKeysFiltered(ctx, strconv.FormatInt(instanceID, 10)+".*")
	if err != nil {
		return fmt.Errorf("forget poll state of %d: %w", instanceID, err)
	}
	for key := range lister.Keys() {
		if err := s.kv.Purge(ctx, key); err != nil {
			return fmt.Errorf("forget poll state of %d: %w", instanceID, err)
		}
	}
	return nil
}
