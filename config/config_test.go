package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// env builds a getenv from pairs.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const testKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" // bytes 0..31

func TestPollerDefaults(t *testing.T) {
	t.Parallel()
	p, err := LoadPoller(nil, env())
	if err != nil {
		t.Fatal(err)
	}
	want := Poller{
		Listen:             "127.0.0.1:8080",
		NATSListen:         "127.0.0.1:4222",
		DataDir:            "./data",
		MinRefreshInterval: time.Minute,
		Delivery: Delivery{
			RetrySchedule:       []time.Duration{4 * time.Second, 16 * time.Second, 64 * time.Second, 256 * time.Second, 1024 * time.Second, 4096 * time.Second, 16384 * time.Second, 65536 * time.Second, 262144 * time.Second},
			DeliveryTimeout:     15 * time.Second,
			EventRetention:      168 * time.Hour,
			DeadletterRetention: 720 * time.Hour,
			Replicas:            1,
		},
		LogLevel:  slog.LevelInfo,
		LogFormat: LogFormatText,
	}
	p.set = nil
	if !reflect.DeepEqual(*p, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *p, want)
	}
	if !p.DispatchEnabled() || !p.Embedded() {
		t.Errorf("embedded poller without --dispatch: DispatchEnabled=%v Embedded=%v, want both true", p.DispatchEnabled(), p.Embedded())
	}
}

func TestPollerEveryKeyFromFile(t *testing.T) {
	t.Parallel()
	p, err := LoadPoller([]string{"--config", "testdata/good.yml"}, env())
	if err != nil {
		t.Fatal(err)
	}
	p.set = nil
	f := false
	want := Poller{
		Listen:             "127.0.0.1:9000",
		NATSListen:         "127.0.0.1:0",
		DataDir:            "/var/lib/pollhook",
		Dispatch:           &f,
		OrgSecret:          "org-0123456789abcdef",
		UserSecret:         "user-0123456789abcdef",
		SecretKey:          []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31},
		MinRefreshInterval: time.Second,
		Delivery: Delivery{
			RetrySchedule:         []time.Duration{time.Second, 2 * time.Second, 4 * time.Second},
			DeliveryTimeout:       5 * time.Second,
			BlockPrivateCallbacks: true,
			EventRetention:        24 * time.Hour,
			DeadletterRetention:   48 * time.Hour,
			Replicas:              3,
			ConnectorsDir:         "./connectors.d",
		},
		LogLevel:   slog.LevelDebug,
		LogFormat:  LogFormatJSON,
		ConfigFile: "testdata/good.yml",
	}
	if !reflect.DeepEqual(*p, want) {
		t.Errorf("from file:\n got %+v\nwant %+v", *p, want)
	}
	if p.DispatchEnabled() {
		t.Error("dispatch: false in the file, DispatchEnabled() = true")
	}
}

func TestPrecedenceFlagBeatsEnvBeatsFileBeatsDefault(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "pollhook.yml", `
listen: 127.0.0.1:1001
delivery-timeout: 1s
replicas: 2
block-private-callbacks: true
retry-schedule: [1s, 2s]
dispatch: true
`)
	type got struct {
		Listen   string
		Timeout  time.Duration
		Replicas int
		Block    bool
		Schedule []time.Duration
		Dispatch bool
	}
	tests := []struct {
		name string
		args []string
		env  []string
		want got
	}{
		{"default", nil, nil,
			got{"127.0.0.1:8080", 15 * time.Second, 1, false, nil, true}},
		{"file beats default", []string{"--config", file}, nil,
			got{"127.0.0.1:1001", time.Second, 2, true, []time.Duration{time.Second, 2 * time.Second}, true}},
		{"config file named by env", nil, []string{"POLLHOOK_CONFIG", file},
			got{"127.0.0.1:1001", time.Second, 2, true, []time.Duration{time.Second, 2 * time.Second}, true}},
		{"env beats file", []string{"--config", file}, []string{
			"POLLHOOK_LISTEN", "127.0.0.1:2002", "POLLHOOK_DELIVERY_TIMEOUT", "2s", "POLLHOOK_REPLICAS", "3",
			"POLLHOOK_BLOCK_PRIVATE_CALLBACKS", "false", "POLLHOOK_RETRY_SCHEDULE", "2s,3s", "POLLHOOK_DISPATCH", "false"},
			got{"127.0.0.1:2002", 2 * time.Second, 3, false, []time.Duration{2 * time.Second, 3 * time.Second}, false}},
		{"empty env is unset", []string{"--config", file}, []string{"POLLHOOK_LISTEN", "", "POLLHOOK_REPLICAS", ""},
			got{"127.0.0.1:1001", time.Second, 2, true, []time.Duration{time.Second, 2 * time.Second}, true}},
		{"flag beats env", []string{"--config", file, "--listen", "127.0.0.1:3003", "--delivery-timeout=3s", "-replicas", "4",
			"--block-private-callbacks", "--retry-schedule", "3s,4s", "--dispatch=false"}, []string{
			"POLLHOOK_LISTEN", "127.0.0.1:2002", "POLLHOOK_DELIVERY_TIMEOUT", "2s", "POLLHOOK_REPLICAS", "3",
			"POLLHOOK_BLOCK_PRIVATE_CALLBACKS", "false", "POLLHOOK_RETRY_SCHEDULE", "2s,3s", "POLLHOOK_DISPATCH", "true"},
			got{"127.0.0.1:3003", 3 * time.Second, 4, true, []time.Duration{3 * time.Second, 4 * time.Second}, false}},
		{"flag --config beats POLLHOOK_CONFIG", []string{"--config", file}, []string{"POLLHOOK_CONFIG", "testdata/does-not-exist.yml"},
			got{"127.0.0.1:1001", time.Second, 2, true, []time.Duration{time.Second, 2 * time.Second}, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := LoadPoller(tt.args, env(tt.env...))
			if err != nil {
				t.Fatal(err)
			}
			g := got{p.Listen, p.DeliveryTimeout, p.Replicas, p.BlockPrivateCallbacks, p.RetrySchedule, p.DispatchEnabled()}
			if tt.want.Schedule == nil {
				tt.want.Schedule = p.RetrySchedule // the default, tested elsewhere
			}
			if !reflect.DeepEqual(g, tt.want) {
				t.Errorf("got %+v\nwant %+v", g, tt.want)
			}
		})
	}
}

func TestDispatchIsOffWithExternalNATSUnlessGiven(t *testing.T) {
	t.Parallel()
	base := []string{"--nats-url", "nats://n1:4222,nats://n2:4222", "--secret-key", testKey, "--org-secret", "o", "--user-secret", "u"}
	p, err := LoadPoller(base, env())
	if err != nil {
		t.Fatal(err)
	}
	if p.DispatchEnabled() {
		t.Error("with --nats-url and no --dispatch: DispatchEnabled() = true")
	}
	p, err = LoadPoller(append(base, "--dispatch"), env())
	if err != nil {
		t.Fatal(err)
	}
	if !p.DispatchEnabled() {
		t.Error("with --nats-url and --dispatch: DispatchEnabled() = false")
	}
}

// badFiles maps each testdata/*.bad.yml to the exact error it gives.
var badFiles = map[string]string{
	"address":           `--listen: invalid address "localhost", want host:port (from testdata/address.bad.yml line 1)`,
	"bool_type":         `--block-private-callbacks: want true or false, got integer "1" (from testdata/bool_type.bad.yml line 1)`,
	"config_key":        `unknown setting "config" (from testdata/config_key.bad.yml line 1)`,
	"duplicate":         `--config: testdata/duplicate.bad.yml line 3: "listen" is already set on line 1 (from command line)`,
	"duration":          `--delivery-timeout: invalid duration "abc", want e.g. 15s, 1m or 168h (from testdata/duration.bad.yml line 1)`,
	"list_for_scalar":   `--listen: want a single value, got a list (from testdata/list_for_scalar.bad.yml line 1)`,
	"log_level":         `--log-level: invalid level "verbose", want debug, info, warn or error (from testdata/log_level.bad.yml line 1)`,
	"mapping":           `--data-dir: want a single value, got a mapping (from testdata/mapping.bad.yml line 1)`,
	"min_refresh_zero":  `--min-refresh-interval: must be positive, got 0s (from testdata/min_refresh_zero.bad.yml line 1)`,
	"nats_url_scheme":   `--nats-url: invalid URL "http://127.0.0.1:4222": scheme must be nats, tls, ws or wss (from testdata/nats_url_scheme.bad.yml line 1)`,
	"negative_duration": `--event-retention: must be positive, got -1h (from testdata/negative_duration.bad.yml line 2)`,
	"not_mapping":       `--config: testdata/not_mapping.bad.yml line 1: want a mapping of setting names to values, got a list (from command line)`,
	"org_secret_comma":  `--org-secret: must not contain commas, whitespace or control characters (from testdata/org_secret_comma.bad.yml line 1)`,
	"port":              `--nats-listen: invalid port in address "127.0.0.1:70000", want 0-65535 (from testdata/port.bad.yml line 1)`,
	"replicas_range":    `--replicas: must be between 1 and 5, got 7 (from testdata/replicas_range.bad.yml line 1)`,
	"replicas_type":     `--replicas: want an integer, got string "3" (from testdata/replicas_type.bad.yml line 1)`,
	"schedule_empty":    `--retry-schedule: must list at least one delay (from testdata/schedule_empty.bad.yml line 1)`,
	"schedule_negative": `--retry-schedule: item 2: must be positive, got -1s (from testdata/schedule_negative.bad.yml line 1)`,
	"schedule_order":    `--retry-schedule: item 3: 8s is not after 16s; delays must strictly increase (from testdata/schedule_order.bad.yml line 1)`,
	"secret_key_base64": `--secret-key: not valid base64; generate one with: head -c 32 /dev/urandom | base64 (from testdata/secret_key_base64.bad.yml line 1)`,
	"secret_key_length": `--secret-key: must be 32 bytes, got 5; generate one with: head -c 32 /dev/urandom | base64 (from testdata/secret_key_length.bad.yml line 1)`,
	"secrets_required":  `--secret-key, --user-secret: required with --nats-url (from testdata/secrets_required.bad.yml line 2)`,
	"unknown_key":       `unknown setting "natsurl" (from testdata/unknown_key.bad.yml line 1)`,
}

func TestEveryBadFileGivesItsError(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/*.bad.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(badFiles) {
		t.Errorf("%d testdata/*.bad.yml files, %d expected errors: keep them in step", len(files), len(badFiles))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".bad.yml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, ok := badFiles[name]
			if !ok {
				t.Fatalf("no expected error for %s", file)
			}
			_, err := LoadPoller([]string{"--config", file}, env())
			if err == nil || err.Error() != want {
				t.Errorf("error:\n got %v\nwant %s", err, want)
			}
		})
	}
}

func TestBadFlagsAndEnvironmentNameTheirSource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"duration from env", nil, []string{"POLLHOOK_DELIVERY_TIMEOUT", "abc"},
			`--delivery-timeout: invalid duration "abc", want e.g. 15s, 1m or 168h (from POLLHOOK_DELIVERY_TIMEOUT)`},
		{"replicas from flag", []string{"--replicas=0"}, nil,
			`--replicas: must be between 1 and 5, got 0 (from command line)`},
		{"replicas not a number", nil, []string{"POLLHOOK_REPLICAS", "three"},
			`--replicas: invalid integer "three" (from POLLHOOK_REPLICAS)`},
		{"tri-state bool", []string{"--dispatch=maybe"}, nil,
			`--dispatch: invalid boolean "maybe", want true or false (from command line)`},
		{"negative timeout", []string{"--delivery-timeout", "-5s"}, nil,
			`--delivery-timeout: must be positive, got -5s (from command line)`},
		{"secret key is never quoted", nil, []string{"POLLHOOK_SECRET_KEY", "hunter2!"},
			`--secret-key: not valid base64; generate one with: head -c 32 /dev/urandom | base64 (from POLLHOOK_SECRET_KEY)`},
		{"empty org secret", []string{"--org-secret="}, nil,
			`--org-secret: must not be empty (from command line)`},
		{"nats url password is redacted", []string{"--nats-url", "http://me:pw@nats:4222"}, nil,
			`--nats-url: invalid URL "http://****@nats:4222": scheme must be nats, tls, ws or wss (from command line)`},
		{"every bad value at once", []string{"--listen", "nope"}, []string{"POLLHOOK_REPLICAS", "9"},
			"--listen: invalid address \"nope\", want host:port (from command line)\n--replicas: must be between 1 and 5, got 9 (from POLLHOOK_REPLICAS)"},
		{"missing secrets with nats-url", nil, []string{"POLLHOOK_NATS_URL", "nats://nats:4222"},
			`--secret-key, --org-secret, --user-secret: required with --nats-url (from POLLHOOK_NATS_URL)`},
		{"missing config file", nil, []string{"POLLHOOK_CONFIG", "testdata/missing.yml"},
			`--config: open testdata/missing.yml: no such file or directory (from POLLHOOK_CONFIG)`},
		{"unknown flag", []string{"--nats"}, nil,
			`flag provided but not defined: -nats (see --help)`},
		{"positional argument", []string{"--listen", "127.0.0.1:1", "serve"}, nil,
			`unexpected argument "serve": settings are flags, e.g. --listen=127.0.0.1:8080 (see --help)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadPoller(tt.args, env(tt.env...))
			if err == nil || err.Error() != tt.want {
				t.Errorf("error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestHelpListsEveryFlagWithItsEnvironmentVariable(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		load  func() error
		usage string
		set   *settings
	}{
		{"poller", func() error { _, err := LoadPoller([]string{"-h"}, env()); return err }, PollerUsage(), pollerSettings(&Poller{})},
		{"dispatcher", func() error { _, err := LoadDispatcher([]string{"--help"}, env()); return err }, DispatcherUsage(), dispatcherSettings(&Dispatcher{})},
	} {
		if err := tt.load(); !errors.Is(err, ErrHelp) {
			t.Errorf("%s -h: error %v, want ErrHelp", tt.name, err)
		}
		for _, st := range tt.set.list {
			if !strings.Contains(tt.usage, "--"+st.name+" ") && !strings.Contains(tt.usage, "--"+st.name+"[") {
				t.Errorf("%s usage lacks --%s", tt.name, st.name)
			}
			if !strings.Contains(tt.usage, "env "+EnvName(st.name)+")") {
				t.Errorf("%s usage lacks %s", tt.name, EnvName(st.name))
			}
		}
	}
	if u := PollerUsage(); !strings.Contains(u, "default 127.0.0.1:8080; env POLLHOOK_LISTEN") {
		t.Errorf("poller usage does not show --listen's default:\n%s", u)
	}
}

func TestSecretsAreGeneratedOnceAndReused(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")

	p1, err := LoadPoller([]string{"--data-dir", dir}, env())
	if err != nil {
		t.Fatal(err)
	}
	generated, err := p1.ResolveSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(generated, secretNames) || !GeneratedCredentials(generated) {
		t.Errorf("first start generated %v, want %v", generated, secretNames)
	}
	if len(p1.SecretKey) != SecretKeySize || len(p1.OrgSecret) < 22 || len(p1.UserSecret) < 22 || p1.OrgSecret == p1.UserSecret {
		t.Errorf("generated secrets: key %d bytes, org %q, user %q", len(p1.SecretKey), p1.OrgSecret, p1.UserSecret)
	}
	if _, err := parseAPISecret(p1.OrgSecret); err != nil {
		t.Errorf("generated org secret is not a valid --org-secret: %v", err)
	}
	assertMode(t, dir, 0o700|os.ModeDir)
	assertMode(t, filepath.Join(dir, SecretsFile), 0o600)

	p2, err := LoadPoller([]string{"--data-dir", dir}, env())
	if err != nil {
		t.Fatal(err)
	}
	generated, err = p2.ResolveSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if len(generated) != 0 || GeneratedCredentials(generated) {
		t.Errorf("second start generated %v, want nothing", generated)
	}
	if !bytes.Equal(p2.SecretKey, p1.SecretKey) || p2.OrgSecret != p1.OrgSecret || p2.UserSecret != p1.UserSecret {
		t.Error("second start did not reuse the generated secrets")
	}
	if got, want := p2.Authorization(), "User "+p1.UserSecret+", Organization "+p1.OrgSecret; got != want {
		t.Errorf("Authorization() = %q, want %q", got, want)
	}

	// The dispatcher reads the same key from the data directory.
	d, err := LoadDispatcher([]string{"--data-dir", dir}, env())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.SecretKey, p1.SecretKey) {
		t.Error("dispatcher --data-dir did not read the poller's generated secret key")
	}
}

func TestGivenSecretsWinAndAreNotWritten(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, err := LoadPoller([]string{"--data-dir", dir, "--org-secret", "my-org-secret"}, env("POLLHOOK_SECRET_KEY", testKey))
	if err != nil {
		t.Fatal(err)
	}
	generated, err := p.ResolveSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(generated, []string{"user-secret"}) {
		t.Errorf("generated %v, want [user-secret]", generated)
	}
	if p.OrgSecret != "my-org-secret" || base64.StdEncoding.EncodeToString(p.SecretKey) != testKey {
		t.Error("given secrets were replaced")
	}
	data, err := os.ReadFile(filepath.Join(dir, SecretsFile))
	if err != nil {
		t.Fatal(err)
	}
	if s := string(data); strings.Contains(s, "my-org-secret") || strings.Contains(s, testKey) || strings.Contains(s, "org-secret:") {
		t.Errorf("secrets file holds given values:\n%s", s)
	}

	// A later start without flags generates the missing ones and keeps the user secret.
	user := p.UserSecret
	p, err = LoadPoller([]string{"--data-dir", dir}, env())
	if err != nil {
		t.Fatal(err)
	}
	generated, err = p.ResolveSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(generated, []string{"secret-key", "org-secret"}) || p.UserSecret != user {
		t.Errorf("generated %v (want [secret-key org-secret]); user secret kept: %v", generated, p.UserSecret == user)
	}
}

func TestExternalNATSNeverTouchesTheDataDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	p, err := LoadPoller([]string{"--data-dir", dir, "--nats-url", "nats://nats:4222"},
		env("POLLHOOK_SECRET_KEY", testKey, "POLLHOOK_ORG_SECRET", "o", "POLLHOOK_USER_SECRET", "u"))
	if err != nil {
		t.Fatal(err)
	}
	if generated, err := p.ResolveSecrets(); err != nil || len(generated) != 0 {
		t.Fatalf("ResolveSecrets() = %v, %v; want nothing", generated, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir: %v, want it not created", err)
	}
}

func TestBadSecretsFileNamesTheFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, SecretsFile)
	if err := os.WriteFile(path, []byte("secret-key: c2hvcnQ=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPoller([]string{"--data-dir", dir}, env())
	if err != nil {
		t.Fatal(err)
	}
	want := "--secret-key: must be 32 bytes, got 5; generate one with: head -c 32 /dev/urandom | base64 (from " + path + " line 1)"
	if _, err := p.ResolveSecrets(); err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
}

func TestDispatcherSettings(t *testing.T) {
	t.Parallel()
	d, err := LoadDispatcher([]string{"--secret-key", testKey}, env("POLLHOOK_CONCURRENCY", "8"))
	if err != nil {
		t.Fatal(err)
	}
	if d.NATSURL != "nats://127.0.0.1:4222" || d.MetricsListen != "127.0.0.1:8081" || d.Concurrency != 8 ||
		d.DeliveryTimeout != 15*time.Second || len(d.RetrySchedule) != 9 || d.LogLevel != slog.LevelInfo {
		t.Errorf("dispatcher settings: %+v", d)
	}

	for _, tt := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"no key", nil, nil, "--secret-key: required; give it, or --data-dir of the embedded poller that generated one"},
		{"no generated key yet", []string{"--data-dir", "testdata/nowhere"}, nil,
			"--secret-key: not given, and testdata/nowhere/secrets.yaml does not exist (start the embedded poller once, or give --secret-key)"},
		{"concurrency", []string{"--secret-key", testKey, "--concurrency", "0"}, nil,
			"--concurrency: must be between 1 and 100000, got 0 (from command line)"},
		{"empty nats url", []string{"--secret-key", testKey}, []string{"POLLHOOK_METRICS_LISTEN", ":x"},
			`--metrics-listen: invalid port in address ":x", want 0-65535 (from POLLHOOK_METRICS_LISTEN)`},
		{"nats url required", []string{"--secret-key", testKey, "--nats-url="}, nil,
			"--nats-url: must not be empty (from command line)"},
		{"poller-only key in file", []string{"--secret-key", testKey, "--config", "testdata/good.yml"}, nil,
			`unknown setting "listen" (from testdata/good.yml line 2)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadDispatcher(tt.args, env(tt.env...))
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestLogValueHasNoSecrets(t *testing.T) {
	t.Parallel()
	p, err := LoadPoller([]string{"--config", "testdata/good.yml", "--nats-url", "nats://me:topsecret@nats:4222"}, env())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "config", p)
	out := buf.String()
	for _, secret := range []string{p.OrgSecret, p.UserSecret, testKey, "topsecret"} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds a secret %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "config.listen=127.0.0.1:9000") {
		t.Errorf("log lacks the settings:\n%s", out)
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != want {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
	}
}

func TestConcurrentFirstStartsAgreeOnTheSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const n = 8
	results := make([]*Poller, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			p, err := LoadPoller([]string{"--data-dir", dir}, env())
			if err == nil {
				_, err = p.ResolveSecrets()
			}
			results[i], errs[i] = p, err
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if results[i].Authorization() != results[0].Authorization() || !bytes.Equal(results[i].SecretKey, results[0].SecretKey) {
			t.Fatal("processes starting at once ended with different secrets")
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// FuzzSettingsFile loads the poller's settings from a fuzzed --config file.
// No file makes loading panic; every line of an error names the file; a
// secret's value is never quoted in an error; whatever loads is valid.
func FuzzSettingsFile(f *testing.F) {
	for _, name := range []string{"testdata/good.yml", "testdata/schedule_order.bad.yml", "testdata/mapping.bad.yml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("retry-schedule: [1s, *a]\nx: &a 2s"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "settings.yml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := LoadPoller([]string{"--config", path}, env())
		if err != nil {
			for line := range strings.Lines(err.Error()) {
				if !strings.Contains(line, path) {
					t.Fatalf("error line %q does not name the file", line)
				}
			}
			for _, v := range secretValues(data) {
				if strings.Contains(err.Error(), strconv.Quote(v)) {
					t.Fatalf("error %q quotes the secret %q", err, v)
				}
			}
			return
		}
		if len(p.RetrySchedule) == 0 || p.RetrySchedule[0] <= 0 {
			t.Fatalf("accepted schedule %v", p.RetrySchedule)
		}
		for i := 1; i < len(p.RetrySchedule); i++ {
			if p.RetrySchedule[i] <= p.RetrySchedule[i-1] {
				t.Fatalf("accepted schedule %v", p.RetrySchedule)
			}
		}
		if p.SecretKey != nil && len(p.SecretKey) != SecretKeySize {
			t.Fatalf("accepted a %d-byte key", len(p.SecretKey))
		}
		for _, s := range []string{p.OrgSecret, p.UserSecret} {
			if _, err := parseAPISecret(s); s != "" && err != nil {
				t.Fatalf("accepted the secret %q: %v", s, err)
			}
		}
		if p.MinRefreshInterval <= 0 || p.DeliveryTimeout <= 0 || p.Replicas < 1 {
			t.Fatalf("accepted %+v", p)
		}
	})
}

// secretValues returns the values of the secret settings in a YAML
// settings file that no other key or value of the file contains, so that an
// error quoting one of them can only be quoting the secret.
func secretValues(data []byte) []string {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	var scalars []string
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode {
			scalars = append(scalars, n.Value)
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
	var out []string
	root := doc.Content[0].Content
	for i := 0; i+1 < len(root); i += 2 {
		if !slices.Contains(secretNames, root[i].Value) || root[i+1].Kind != yaml.ScalarNode || len(root[i+1].Value) < 4 {
			continue
		}
		v, n := root[i+1].Value, 0
		for _, s := range scalars {
			if strings.Contains(s, v) {
				n++
			}
		}
		if n == 1 {
			out = append(out, v)
		}
	}
	return out
}
