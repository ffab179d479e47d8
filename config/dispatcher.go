package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"

	"github.com/pollhook/pollhook/broker"
)

// Dispatcher is the resolved configuration of cmd/dispatcher (SPEC §1).
type Dispatcher struct {
	NATSURL string // NATS server URL(s), comma-separated
	// SecretKey is --secret-key or, when not given, the key an embedded poller
	// generated into --data-dir; LoadDispatcher fails when neither exists.
	SecretKey []byte
	DataDir   string // where to read the generated secret key; "" = none

	MetricsListen string // health and metrics address
	Concurrency   int    // deliveries in flight at most
	Delivery

	LogLevel   slog.Level // debug, info, warn or error
	LogFormat  string     // LogFormatText or LogFormatJSON
	ConfigFile string     // --config, "" when none
}

func dispatcherSettings(d *Dispatcher) *settings {
	s := &settings{cmd: "dispatcher"}
	add(s, &d.NATSURL, "nats-url", "url", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated", parseRequiredNATSURL)
	add(s, &d.SecretKey, "secret-key", "base64", "", "32 bytes, base64: the poller's key for credentials and signature keys at rest (or give --data-dir)", parseSecretKey, secretSetting)
	add(s, &d.DataDir, "data-dir", "dir", "", "data directory of an embedded poller, to read the secret key it generated", parseNonEmpty)
	add(s, &d.MetricsListen, "metrics-listen", "address", "127.0.0.1:8081", "address of /healthz, /readyz and /metrics", parseAddress)
	add(s, &d.Concurrency, "concurrency", "n", "64", "deliveries in flight at most", parseIntRange(1, 100000), intSetting)
	addDelivery(s, &d.Delivery)
	add(s, &d.LogLevel, "log-level", "level", "info", "debug, info, warn or error", parseLogLevel)
	add(s, &d.LogFormat, "log-format", "format", LogFormatText, "text or json", parseLogFormat)
	add(s, &d.ConfigFile, "config", "file", "", "YAML file of settings, keyed by flag name", parseNonEmpty, cliOnly)
	return s
}

func parseRequiredNATSURL(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("must not be empty")
	}
	return parseNATSURL(s)
}

// DispatcherUsage is the --help text of cmd/dispatcher.
func DispatcherUsage() string {
	return dispatcherSettings(&Dispatcher{}).usage("pollhook dispatcher: delivers notifications from NATS to callback URLs.")
}

// LoadDispatcher resolves the dispatcher's settings like LoadPoller. When
// --secret-key is not given it reads the key from --data-dir's secrets file
// (written by an embedded poller); with neither it is an error.
func LoadDispatcher(args []string, getenv func(string) string) (*Dispatcher, error) {
	d := &Dispatcher{}
	s := dispatcherSettings(d)
	if err := s.load(args, getenv); err != nil {
		return nil, err
	}
	if d.SecretKey != nil {
		return d, nil
	}
	if d.DataDir == "" {
		return nil, errors.New("--secret-key: required; give it, or --data-dir of the embedded poller that generated one")
	}
	path := filepath.Join(d.DataDir, SecretsFile)
	stored, err := readSecretsFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("--secret-key: not given, and %s does not exist (start the embedded poller once, or give --secret-key)", path)
	case err != nil:
		return nil, err
	}
	if stored.secretKey == nil {
		return nil, fmt.Errorf("--secret-key: not given, and %s has none", path)
	}
	d.SecretKey = stored.secretKey
	return d, nil
}

// LogValue logs the settings without secrets (slog.LogValuer).
func (d *Dispatcher) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("nats_url", broker.RedactURLs(d.NATSURL)),
		slog.String("data_dir", d.DataDir),
		slog.String("metrics_listen", d.MetricsListen),
		slog.Int("concurrency", d.Concurrency),
		slog.String("retry_schedule", formatSchedule(d.RetrySchedule)),
		slog.Duration("delivery_timeout", d.DeliveryTimeout),
		slog.Bool("block_private_callbacks", d.BlockPrivateCallbacks),
		slog.Duration("event_retention", d.EventRetention),
		slog.Duration("deadletter_retention", d.DeadletterRetention),
		slog.Int("replicas", d.Replicas),
		slog.String("connectors_dir", d.ConnectorsDir),
		slog.String("log_level", d.LogLevel.String()),
		slog.String("config", d.ConfigFile),
	)
}
