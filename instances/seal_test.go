package instances

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestSealerOpensOnlyWhatItSealedForThatPlace(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	s, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	const plain, where = "upstream-password-1", "instance/12/password"
	sealed := s.Seal(plain, where)
	if strings.Contains(sealed, plain) || !strings.HasPrefix(sealed, sealPrefix) {
		t.Fatalf("Seal gave %q: want %q followed by ciphertext", sealed, sealPrefix)
	}
	if again := s.Seal(plain, where); again == sealed {
		t.Error("sealing the same value twice gave the same ciphertext (nonce reused)")
	}
	if got, err := s.Open(sealed, where); err != nil || got != plain {
		t.Fatalf("Open = %q, %v; want %q", got, err, plain)
	}

	otherKey, err := NewSealer(bytes.Repeat([]byte{8}, 32))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(sealed, sealPrefix))
	raw[len(raw)-1] ^= 1
	tampered := sealPrefix + base64.RawStdEncoding.EncodeToString(raw)
	refused := []struct {
		name   string
		sealer *Sealer
		sealed string
		where  string
	}{
		{"another place", s, sealed, "instance/13/password"},
		{"another key", otherKey, sealed, where},
		{"tampered", s, tampered, where},
		{"no prefix", s, strings.TrimPrefix(sealed, sealPrefix), where},
		{"not base64", s, sealPrefix + "!!!", where},
		{"too short", s, sealPrefix + "AAAA", where},
		{"empty", s, "", where},
	}
	for _, tt := range refused {
		if got, err := tt.sealer.Open(tt.sealed, tt.where); !errors.Is(err, ErrUnseal) || got != "" {
			t.Errorf("%s: Open = %q, %v; want ErrUnseal", tt.name, got, err)
		}
	}
}

func TestNewSealerWantsThirtyTwoBytes(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := NewSealer(make([]byte, n)); err == nil {
			t.Errorf("NewSealer with %d bytes: no error", n)
		}
	}
}
