package instances

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/broker"
	"github.com/pollhook/pollhook/connectors"
	"github.com/pollhook/pollhook/events/dispatch"
)

// Bucket is the KV bucket holding instances ("instance.<id>") and the id
// sequence ("seq").
const Bucket = "POLLHOOK_INSTANCES"

const (
	seqKey         = "seq"
	instancePrefix = "instance."
)

// Store errors, matched with errors.Is.
var (
	ErrNotFound = errors.New("instance not found")
	ErrConflict = errors.New("instance changed concurrently")
)

// Store keeps instances in a JetStream KV bucket, secrets sealed. It is safe
// for concurrent use by any number of processes sharing the bucket: ids come
// from a compare-and-set sequence and updates check the revision read.
type Store struct {
	kv       jetstream.KeyValue
	sealer   *Sealer
	registry *connectors.Registry
}

// OpenStore creates the bucket if needed (idempotent) and returns a Store.
func OpenStore(ctx context.Context, js jetstream.JetStream, replicas int, sealer *Sealer, registry *connectors.Registry) (*Store, error) {
	kv, err := broker.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "pollhook connector instances",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", Bucket, err)
	}
	return &Store{kv: kv, sealer: sealer, registry: registry}, nil
}

// record is an instance as stored: secrets and token sealed.
type record struct {
	ID            int64             `json:"id"`
	Name          string            `json:"name"`
	ElementKey    string            `json:"elementKey"`
	Token         string            `json:"token"`
	CreatedDate   time.Time         `json:"createdDate"`
	Configuration map[string]any    `json:"configuration"`
	Secrets       map[string]string `json:"secrets,omitempty"`
	Tags          []string          `json:"tags,omitempty"`
	Disabled      bool              `json:"disabled,omitempty"`
	Status        string            `json:"status"`
	StatusMessage string            `json:"statusMessage,omitempty"`
	// ResourcesAdded is Instance.ResourcesAdded.
	ResourcesAdded map[string]time.Time `json:"resourcesAdded,omitempty"`
}

func key(id int64) string { return instancePrefix + strconv.FormatInt(id, 10) }

func sealedAt(id int64, name string) string { return fmt.Sprintf("instance/%d/%s", id, name) }

func (s *Store) encode(in *Instance) ([]byte, error) {
	rec := record{
		ID: in.ID, Name: in.Name, ElementKey: in.ElementKey,
		Token:       s.sealer.Seal(in.Token, sealedAt(in.ID, "token")),
		CreatedDate: in.CreatedDate, Configuration: in.Configuration,
		Tags: in.Tags, Disabled: in.Disabled, Status: in.Status, StatusMessage: in.StatusMessage,
		ResourcesAdded: in.ResourcesAdded,
	}
	if len(in.Secrets) > 0 {
		rec.Secrets = make(map[string]string, len(in.Secrets))
		for k, v := range in.Secrets {
			rec.Secrets[k] = s.sealer.Seal(v, sealedAt(in.ID, "configuration/"+k))
		}
	}
	return json.Marshal(rec)
}

func (s *Store) decode(data []byte, revision uint64) (*Instance, error) {
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("decode stored instance: %w", err)
	}
	in := &Instance{
		ID: rec.ID, Name: rec.Name, ElementKey: rec.ElementKey, CreatedDate: rec.CreatedDate,
		Configuration: rec.Configuration, Tags: rec.Tags, Disabled: rec.Disabled,
		Status: rec.Status, StatusMessage: rec.StatusMessage, Revision: revision,
		ResourcesAdded: rec.ResourcesAdded,
		Secrets:        make(map[string]string, len(rec.Secrets)),
	}
	var err error
	if in.Token, err = s.sealer.Open(rec.Token, sealedAt(rec.ID, "token")); err != nil {
		return nil, fmt.Errorf("instance %d token: %w", rec.ID, err)
	}
	for k, v := range rec.Secrets {
		if in.Secrets[k], err = s.sealer.Open(v, sealedAt(rec.ID, "configuration/"+k)); err != nil {
			return nil, fmt.Errorf("instance %d %s: %w", rec.ID, k, err)
		}
	}
	if problems := in.Derive(s.registry); len(problems) > 0 {
		// Still readable, changeable and deletable; not polled until a
		// PATCH makes it valid again (a connector definition changed?).
		in.Resources = nil
		in.StatusMessage = fmt.Sprintf("not polled: the stored configuration is no longer valid: %s: %s", problems[0].Field, problems[0].Message)
	}
	return in, nil
}

// Create assigns in the next id (never reused, also across restarts) and
// stores it, setting in.ID and in.Revision.
func (s *Store) Create(ctx context.Context, in *Instance) error {
	id, err := s.nextID(ctx)
	if err != nil {
		return err
	}
	in.ID = id
	data, err := s.encode(in)
	if err != nil {
		return err
	}
	rev, err := s.kv.Create(ctx, key(id), data)
	if err != nil {
		return fmt.Errorf("store instance %d: %w", id, err)
	}
	in.Revision = rev
	return nil
}

// nextID increments the sequence with compare-and-set until it wins.
func (s *Store) nextID(ctx context.Context) (int64, error) {
	for {
		entry, err := s.kv.Get(ctx, seqKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if _, err := s.kv.Create(ctx, seqKey, []byte("1")); err == nil {
				return 1, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return 0, fmt.Errorf("allocate instance id: %w", err)
			}
		case err != nil:
			return 0, fmt.Errorf("allocate instance id: %w", err)
		default:
			last, err := strconv.ParseInt(string(entry.Value()), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("allocate instance id: corrupt sequence %q", entry.Value())
			}
			next := last + 1
			if _, err := s.kv.Update(ctx, seqKey, []byte(strconv.FormatInt(next, 10)), entry.Revision()); err == nil {
				return next, nil
			} else if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
				return 0, fmt.Errorf("allocate instance id: %w", err)
			}
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
}

// Get returns the instance with this id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id int64) (*Instance, error) {
	entry, err := s.kv.Get(ctx, key(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get instance %d: %w", id, err)
	}
	return s.decode(entry.Value(), entry.Revision())
}

// Update stores in if the stored instance is still at in.Revision, else
// returns ErrConflict (or ErrNotFound if it was deleted). On success
// in.Revision is the new revision.
func (s *Store) Update(ctx context.Context, in *Instance) error {
	data, err := s.encode(in)
	if err != nil {
		return err
	}
	rev, err := s.kv.Update(ctx, key(in.ID), data, in.Revision)
	switch {
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyExists):
		if _, getErr := s.kv.Get(ctx, key(in.ID)); errors.Is(getErr, jetstream.ErrKeyNotFound) {
			return ErrNotFound
		}
		return ErrConflict
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return ErrNotFound
	case err != nil:
		return fmt.Errorf("update instance %d: %w", in.ID, err)
	}
	in.Revision = rev
	return nil
}

// Delete removes the instance, or returns ErrNotFound.
func (s *Store) Delete(ctx context.Context, id int64) error {
	entry, err := s.kv.Get(ctx, key(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete instance %d: %w", id, err)
	}
	if err := s.kv.Purge(ctx, key(id), jetstream.LastRevision(entry.Revision())); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return ErrConflict
		}
		return fmt.Errorf("delete instance %d: %w", id, err)
	}
	return nil
}

// IDs returns the ids of every stored instance, ascending.
func (s *Store) IDs(ctx context.Context) ([]int64, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, instancePrefix+">")
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	var ids []int64
	for k := range lister.Keys() {
		if id, err := strconv.ParseInt(strings.TrimPrefix(k, instancePrefix), 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// List returns up to limit instances with ids above after that match (nil
// matches all), ascending, and whether more may follow.
func (s *Store) List(ctx context.Context, after int64, limit int, match func(*Instance) bool) (page []*Instance, more bool, err error) {
	ids, err := s.IDs(ctx)
	if err != nil {
		return nil, false, err
	}
	start, _ := slices.BinarySearch(ids, after+1)
	for _, id := range ids[start:] {
		if len(page) == limit {
			return page, true, nil
		}
		in, err := s.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, false, err
		}
		if match != nil && !match(in) {
			continue
		}
		page = append(page, in)
	}
	return page, false, nil
}

// MarkReauthorizationRequired sets the instance's status to
// reauthorization_required with message, so polling pauses until a PATCH
// brings new credentials. A deleted instance is not an error.
func (s *Store) MarkReauthorizationRequired(ctx context.Context, id int64, message string) error {
	for {
		in, err := s.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		in.Status, in.StatusMessage = StatusReauthorizationRequired, message
		switch err := s.Update(ctx, in); {
		case err == nil, errors.Is(err, ErrNotFound):
			return nil
		case !errors.Is(err, ErrConflict):
			return err
		}
	}
}

// Endpoint is where and how the notifications of instance id are delivered
// now (dispatch.Instances): each attempt reads it, so a PATCH applies to
// the next attempt. A deleted instance is dispatch.ErrInstanceGone.
func (s *Store) Endpoint(ctx context.Context, id int64) (dispatch.Endpoint, error) {
	in, err := s.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return dispatch.Endpoint{}, fmt.Errorf("instance %d: %w", id, dispatch.ErrInstanceGone)
	}
	if err != nil {
		return dispatch.Endpoint{}, err
	}
	return dispatch.Endpoint{CallbackURL: in.CallbackURL, SignatureKey: in.Secrets[KeySignatureKey], Disabled: in.Disabled}, nil
}

// Bucket is the KV bucket of instances, for watchers of their changes
// (keys "instance.<id>"; read values with Get, which opens the secrets).
func (s *Store) Bucket() jetstream.KeyValue { return s.kv }
