package instances

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Sealer encrypts secrets at rest with AES-256-GCM under --secret-key. Each
// ciphertext is bound to where it is stored (its associated data, e.g.
// "instance/12/oauth.api.secret"), so a sealed value copied to another
// instance or key does not open. Safe for concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

const sealPrefix = "v1:"

// NewSealer returns a Sealer for a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("secret key: want 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plain for the place named by where.
func (s *Sealer) Seal(plain, where string) string {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce) // crypto/rand never fails on supported platforms
	sealed := s.aead.Seal(nonce, nonce, []byte(plain), []byte(where))
	return sealPrefix + base64.RawStdEncoding.EncodeToString(sealed)
}

// ErrUnseal means a sealed value is corrupt, was sealed for another place,
// or under another --secret-key.
var ErrUnseal = errors.New("cannot decrypt a stored secret: was --secret-key changed?")

// Open decrypts a value Seal returned for the same where.
func (s *Sealer) Open(sealed, where string) (string, error) {
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(sealed, sealPrefix))
	if err != nil || !strings.HasPrefix(sealed, sealPrefix) || len(raw) < s.aead.NonceSize() {
		return "", ErrUnseal
	}
	nonce, box := raw[:s.aead.NonceSize()], raw[s.aead.NonceSize():]
	plain, err := s.aead.Open(nil, nonce, box, []byte(where))
	if err != nil {
		return "", ErrUnseal
	}
	return string(plain), nil
}
