package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"

	"github.com/pollhook/pollhook/broker"
)

// TokenBucket is the KV bucket holding OAuth2 tokens, one key per instance
// id (the id in decimal).
const TokenBucket = "POLLHOOK_TOKENS"

// Sealer encrypts values at rest, bound to where they are stored.
// *instances.Sealer satisfies it. Implementations must be safe for
// concurrent use.
type Sealer interface {
	Seal(plain, where string) string
	Open(sealed, where string) (string, error)
}

// TokenStore keeps one OAuth2 token per instance in the KV bucket
// TokenBucket. The access token, refresh token, type and expiry are sealed
// together (bound to "tokens/<id>"), so the stored bytes hold no token in
// clear and a value copied to another key does not open. Safe for concurrent
// use by any number of processes; the last Save wins.
type TokenStore struct {
	kv     jetstream.KeyValue
	sealer Sealer
}

// OpenTokenStore creates the bucket if needed (idempotent; replicas as
// --replicas) and returns a TokenStore.
func OpenTokenStore(ctx context.Context, js jetstream.JetStream, replicas int, sealer Sealer) (*TokenStore, error) {
	if sealer == nil {
		return nil, errors.New("open token store: no sealer")
	}
	if replicas < 1 {
		replicas = 1
	}
	kv, err := broker.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      TokenBucket,
		Description: "pollhook upstream OAuth2 tokens (sealed)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", TokenBucket, err)
	}
	return &TokenStore{kv: kv, sealer: sealer}, nil
}

// storedToken is the plain form of a token before sealing.
type storedToken struct {
	AccessToken  string    `json:"accessToken"`
	RefreshToken string    `json:"refreshToken,omitempty"`
	TokenType    string    `json:"tokenType,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	ExpiresIn    int64     `json:"expiresIn,omitempty"` // the lifetime in seconds, as the upstream gave it
}

func tokenKey(id int64) string { return strconv.FormatInt(id, 10) }

func tokenWhere(id int64) string { return "tokens/" + strconv.FormatInt(id, 10) }

// Save stores tok for instance id, replacing any previous token.
func (s *TokenStore) Save(ctx context.Context, id int64, tok *oauth2.Token) error {
	if tok == nil || tok.AccessToken == "" {
		return fmt.Errorf("save token of instance %d: empty token", id)
	}
	plain, err := json.Marshal(storedToken{
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		TokenType:    tok.TokenType,
		Expiry:       tok.Expiry.UTC(),
		ExpiresIn:    tok.ExpiresIn,
	})
	if err != nil {
		return fmt.Errorf("save token of instance %d: %w", id, err)
	}
	sealed := s.sealer.Seal(string(plain), tokenWhere(id))
	if _, err := s.kv.Put(ctx, tokenKey(id), []byte(sealed)); err != nil {
		return fmt.Errorf("save token of instance %d: %w", id, err)
	}
	return nil
}

// Load returns the token stored for instance id, or an error wrapping
// ErrNoToken when there is none. A value that does not open (another
// --secret-key) is an error, not ErrNoToken.
func (s *TokenStore) Load(ctx context.Context, id int64) (*oauth2.Token, error) {
	e, err := s.kv.Get(ctx, tokenKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("load token of instance %d: %w", id, ErrNoToken)
	}
	if err != nil {
		return nil, fmt.Errorf("load token of instance %d: %w", id, err)
	}
	plain, err := s.sealer.Open(string(e.Value()), tokenWhere(id))
	if err != nil {
		return nil, fmt.Errorf("load token of instance %d: %w", id, err)
	}
	var st storedToken
	if err := json.Unmarshal([]byte(plain), &st); err != nil {
		return nil, fmt.Errorf("load token of instance %d: corrupt value: %w", id, err)
	}
	return &oauth2.Token{
		AccessToken:  st.AccessToken,
		RefreshToken: st.RefreshToken,
		TokenType:    st.TokenType,
		Expiry:       st.Expiry,
		ExpiresIn:    st.ExpiresIn,
	}, nil
}

// Delete removes the token of instance id (DELETE /instances/{id}). Deleting
// a missing token is not an error.
func (s *TokenStore) Delete(ctx context.Context, id int64) error {
	err := s.kv.Purge(ctx, tokenKey(id))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete token of instance %d: %w", id, err)
	}
	return nil
}
