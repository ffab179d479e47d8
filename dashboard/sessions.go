package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollhook/pollhook/broker"
	"github.com/pollhook/pollhook/instances"
	"github.com/pollhook/pollhook/pollers/engine"
)

// SessionBucket is the KV bucket of dashboard sessions, keyed by the
// SHA-256 of the session cookie, so the store never holds a usable cookie.
const SessionBucket = "POLLHOOK_UI_SESSIONS"

// SessionLifetime is how long a session lasts after sign-in.
const SessionLifetime = 12 * time.Hour

// session is one signed-in browser.
type session struct {
	// Authorization is the caller's Authorization header, sealed.
	Authorization string `json:"authorization"`
	// InstanceID is the instance of an Element-token session; 0 for the
	// organization.
	InstanceID int64     `json:"instanceId,omitempty"`
	CSRF       string    `json:"csrf"`
	ExpiresAt  time.Time `json:"expiresAt"`
	// LastRun is the result of the last "Poll now", and Notice a message
	// about the last action; each is shown once.
	LastRun *engine.RunResult `json:"lastRun,omitempty"`
	Notice  string            `json:"notice,omitempty"`

	key string // the KV key
	rev uint64 // the KV revision read
}

// sessions stores sessions in SessionBucket.
type sessions struct {
	kv     jetstream.KeyValue
	sealer *instances.Sealer
	now    func() time.Time
}

func openSessions(ctx context.Context, js jetstream.JetStream, replicas int, sealer *instances.Sealer) (*sessions, error) {
	kv, err := broker.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      SessionBucket,
		Description: "pollhook dashboard sessions (credentials sealed under --secret-key)",
		History:     1,
		TTL:         SessionLifetime,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", SessionBucket, err)
	}
	return &sessions{kv: kv, sealer: sealer, now: time.Now}, nil
}

// randomToken returns 256 random bits, URL-safe.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

func sessionKey(cookie string) string {
	sum := sha256.Sum256([]byte(cookie))
	return hex.EncodeToString(sum[:])
}

// create stores a new session for authorization and returns its cookie
// value.
func (s *sessions) create(ctx context.Context, authorization string, instanceID int64) (string, error) {
	cookie := randomToken()
	key := sessionKey(cookie)
	ses := &session{
		Authorization: s.sealer.Seal(authorization, "dashboard/session/"+key),
		InstanceID:    instanceID,
		CSRF:          randomToken(),
		ExpiresAt:     s.now().Add(SessionLifetime).UTC(),
		key:           key,
	}
	data, err := json.Marshal(ses)
	if err != nil {
		return "", err
	}
	if _, err := s.kv.Create(ctx, key, data); err != nil {
		return "", err
	}
	return cookie, nil
}

// errNoSession means the cookie names no live session.
var errNoSession = errors.New("no such session")

// load returns the session of a cookie and its Authorization in clear.
func (s *sessions) load(ctx context.Context, cookie string) (*session, string, error) {
	key := sessionKey(cookie)
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, "", errNoSession
	}
	if err != nil {
		return nil, "", err
	}
	var ses session
	if err := json.Unmarshal(e.Value(), &ses); err != nil {
		return nil, "", errNoSession
	}
	ses.key, ses.rev = key, e.Revision()
	if !s.now().Before(ses.ExpiresAt) {
		_ = s.delete(ctx, &ses)
		return nil, "", errNoSession
	}
	auth, err := s.sealer.Open(ses.Authorization, "dashboard/session/"+key)
	if err != nil {
		return nil, "", errNoSession // sealed under another --secret-key
	}
	return &ses, auth, nil
}

// save writes ses back if it is unchanged since load: a session signed out
// meanwhile stays signed out.
func (s *sessions) save(ctx context.Context, ses *session) error {
	data, err := json.Marshal(ses)
	if err != nil {
		return err
	}
	rev, err := s.kv.Update(ctx, ses.key, data, ses.rev)
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return errNoSession
	}
	if err == nil {
		ses.rev = rev
	}
	return err
}

func (s *sessions) delete(ctx context.Context, ses *session) error {
	return s.kv.Purge(ctx, ses.key)
}
