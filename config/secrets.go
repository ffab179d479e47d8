package config

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// SecretsFile is the file in --data-dir where an embedded poller keeps the
// secrets it generated, as YAML keyed by flag name (secret-key, org-secret,
// user-secret). It is written with mode 0600 in a 0700 directory;
// cmd/dispatcher --data-dir reads its secret-key.
const SecretsFile = "secrets.yaml"

// secretNames are the settings ResolveSecrets may generate.
var secretNames = []string{"secret-key", "org-secret", "user-secret"}

// storedSecrets is the content of a SecretsFile; empty fields are absent.
type storedSecrets struct {
	secretKey  []byte
	orgSecret  string
	userSecret string
}

// readSecretsFile reads and validates path. A missing file is an error
// matching fs.ErrNotExist.
func readSecretsFile(path string) (storedSecrets, error) {
	var out storedSecrets
	entries, err := readYAMLFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return out, err
		}
		return out, fmt.Errorf("read secrets: %w", err)
	}
	s := &settings{cmd: "secrets"}
	add(s, &out.secretKey, "secret-key", "", "", "", parseSecretKey, secretSetting)
	add(s, &out.orgSecret, "org-secret", "", "", "", parseAPISecret, secretSetting)
	add(s, &out.userSecret, "user-secret", "", "", "", parseAPISecret, secretSetting)
	var errs []error
	for _, kv := range entries {
		src := source{kind: fromFile, name: path, line: kv.line}
		st := s.lookup(kv.key)
		if st == nil {
			errs = append(errs, fmt.Errorf("unknown setting %q (from %s)", kv.key, src))
			continue
		}
		raw, set, err := yamlRaw(st, kv.value)
		if err == nil && set {
			err = st.apply(raw)
		}
		if err != nil {
			errs = append(errs, settingError(st, src, err.Error()))
		}
	}
	return out, errors.Join(errs...)
}

// ResolveSecrets completes the secrets of an embedded poller: each of
// --secret-key, --org-secret and --user-secret that was not given is read
// from DataDir/SecretsFile or, when absent there, generated and added to that
// file (mode 0600; DataDir is created with mode 0700). Given values win over
// stored ones and are never written.
//
// It returns the names of the settings it generated ("secret-key",
// "org-secret", "user-secret"); when org-secret or user-secret is among them
// this is the first start, and the caller prints Authorization() once, to
// stdout, not to the log. With --nats-url it does nothing: LoadPoller has
// already required all three.
func (p *Poller) ResolveSecrets() (generated []string, err error) {
	if !p.Embedded() || (p.SecretKey != nil && p.OrgSecret != "" && p.UserSecret != "") {
		return nil, nil
	}
	if err := os.MkdirAll(p.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create --data-dir: %w", err)
	}
	path := filepath.Join(p.DataDir, SecretsFile)
	// Two processes starting at once on a fresh directory: the second one
	// to write loses the exclusive create and reads what the first wrote.
	for range 2 {
		stored, err := readSecretsFile(path)
		exists := err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		generated = generated[:0]
		if p.SecretKey == nil && stored.secretKey == nil {
			stored.secretKey = randomBytes(SecretKeySize)
			generated = append(generated, "secret-key")
		}
		if p.OrgSecret == "" && stored.orgSecret == "" {
			stored.orgSecret = randomToken()
			generated = append(generated, "org-secret")
		}
		if p.UserSecret == "" && stored.userSecret == "" {
			stored.userSecret = randomToken()
			generated = append(generated, "user-secret")
		}
		if len(generated) > 0 {
			err := writeSecretsFile(path, stored, exists)
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
		}
		if p.SecretKey == nil {
			p.SecretKey = stored.secretKey
		}
		if p.OrgSecret == "" {
			p.OrgSecret = stored.orgSecret
		}
		if p.UserSecret == "" {
			p.UserSecret = stored.userSecret
		}
		return generated, nil
	}
	return nil, fmt.Errorf("write %s: another process keeps creating it", path)
}

// GeneratedCredentials reports whether generated (from ResolveSecrets) holds
// an API credential, i.e. whether the caller should print Authorization().
func GeneratedCredentials(generated []string) bool {
	for _, g := range generated {
		if g == "org-secret" || g == "user-secret" {
			return true
		}
	}
	return false
}

// randomBytes returns n bytes from crypto/rand, which never fails on the
// platforms Go supports.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// randomToken is a 192-bit base64url API secret: no commas or whitespace, safe
// in an Authorization header.
func randomToken() string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(24))
}

// writeSecretsFile writes s to path through a temporary file. When the file
// did not exist it is created exclusively (fs.ErrExist if another process won
// the race); otherwise it is replaced.
func writeSecretsFile(path string, s storedSecrets, replace bool) error {
	var b strings.Builder
	b.WriteString("# Generated by pollhook on first start. Keep private: the API credentials and\n")
	b.WriteString("# the key that encrypts upstream credentials at rest. Losing secret-key makes\n")
	b.WriteString("# stored credentials unreadable.\n")
	if s.secretKey != nil {
		fmt.Fprintf(&b, "secret-key: %s\n", base64.StdEncoding.EncodeToString(s.secretKey))
	}
	if s.orgSecret != "" {
		fmt.Fprintf(&b, "org-secret: %q\n", s.orgSecret)
	}
	if s.userSecret != "" {
		fmt.Fprintf(&b, "user-secret: %q\n", s.userSecret)
	}

	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+SecretsFile+".*") // mode 0600
	if err != nil {
		return fmt.Errorf("write secrets: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		return fmt.Errorf("write secrets: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write secrets: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write secrets: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write secrets: %w", err)
	}
	if replace {
		err = os.Rename(tmp.Name(), path)
	} else {
		err = os.Link(tmp.Name(), path) // fails with fs.ErrExist if someone else created it
	}
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		return fmt.Errorf("write secrets: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the new name durable; best effort
		d.Close()
	}
	return nil
}
