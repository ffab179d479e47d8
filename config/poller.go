package config

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/pollhook/pollhook/broker"
)

// DefaultRetrySchedule is SPEC §1's --retry-schedule: Open Connectors' nine
// retries at 4^k seconds, as offsets from the end of the first failed attempt.
const DefaultRetrySchedule = "4s,16s,64s,256s,1024s,4096s,16384s,65536s,262144s"

// Poller is the resolved configuration of cmd/poller (SPEC §1). Load it with
// LoadPoller; in embedded mode call ResolveSecrets before using the secrets.
type Poller struct {
	Listen     string // REST API address, host:port
	NATSURL    string // external NATS; "" = embedded server
	NATSListen string // client address of the embedded server
	DataDir    string // JetStream storage and generated secrets of the embedded mode

	// Dispatch is --dispatch; nil when not given. Use DispatchEnabled.
	Dispatch *bool

	OrgSecret  string // API credential "Organization <secret>"
	UserSecret string // API credential "User <secret>"
	SecretKey  []byte // SecretKeySize bytes: encrypts credentials at rest

	MinRefreshInterval time.Duration // lower bound of event.poller.refresh_interval
	Delivery

	LogLevel   slog.Level // debug, info, warn or error
	LogFormat  string     // LogFormatText or LogFormatJSON
	ConfigFile string     // --config, "" when none

	set *settings // how each value was resolved, for later messages
}

func pollerSettings(p *Poller) *settings {
	s := &settings{cmd: "poller"}
	add(s, &p.Listen, "listen", "address", "127.0.0.1:8080", "REST API address", parseAddress)
	add(s, &p.NATSURL, "nats-url", "url", "", "external NATS server URL(s), comma-separated; empty = run an embedded NATS server", parseNATSURL)
	add(s, &p.NATSListen, "nats-listen", "address", "127.0.0.1:4222", "client address of the embedded NATS server (port 0 = random)", parseAddress)
	add(s, &p.DataDir, "data-dir", "dir", "./data", "JetStream storage and generated secrets of the embedded mode", parseNonEmpty)
	add(s, &p.Dispatch, "dispatch", "bool", "", "run a dispatcher in this process (unset: on when --nats-url is empty, off otherwise)", parseOptionalBool, boolSetting)
	add(s, &p.OrgSecret, "org-secret", "secret", "", "organization secret of the API (generated in embedded mode when unset)", parseAPISecret, secretSetting)
	add(s, &p.UserSecret, "user-secret", "secret", "", "user secret of the API (generated in embedded mode when unset)", parseAPISecret, secretSetting)
	add(s, &p.SecretKey, "secret-key", "base64", "", "32 bytes, base64: encrypts upstream credentials and signature keys at rest (generated in embedded mode when unset)", parseSecretKey, secretSetting)
	add(s, &p.MinRefreshInterval, "min-refresh-interval", "duration", "1m", "lower bound for event.poller.refresh_interval", parsePositiveDuration)
	addDelivery(s, &p.Delivery)
	add(s, &p.LogLevel, "log-level", "level", "info", "debug, info, warn or error", parseLogLevel)
	add(s, &p.LogFormat, "log-format", "format", LogFormatText, "text or json", parseLogFormat)
	add(s, &p.ConfigFile, "config", "file", "", "YAML file of settings, keyed by flag name", parseNonEmpty, cliOnly)
	return s
}

// PollerUsage is the --help text of cmd/poller: every flag with its
// environment variable and default.
func PollerUsage() string {
	return pollerSettings(&Poller{}).usage("pollhook poller: polls REST APIs and publishes their changes as events (embedded NATS unless --nats-url is given).")
}

// LoadPoller resolves the poller's settings from args (os.Args[1:]), getenv
// (os.Getenv) and the --config file. It returns ErrHelp for -h/--help, and
// an error naming every bad setting and its source. It does not touch the
// data directory: in embedded mode, call ResolveSecrets next.
func LoadPoller(args []string, getenv func(string) string) (*Poller, error) {
	p := &Poller{}
	s := pollerSettings(p)
	if err := s.load(args, getenv); err != nil {
		return nil, err
	}
	p.set = s
	if p.NATSURL != "" {
		var missing []string
		for _, name := range secretNames {
			if !s.lookup(name).isSet {
				missing = append(missing, "--"+name)
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("%s: required with --nats-url (from %s)", strings.Join(missing, ", "), s.lookup("nats-url").src)
		}
	}
	return p, nil
}

// Embedded reports whether the poller runs its own NATS server (no --nats-url).
func (p *Poller) Embedded() bool { return p.NATSURL == "" }

// DispatchEnabled reports whether the poller delivers notifications itself:
// --dispatch when given, else true exactly in embedded mode.
func (p *Poller) DispatchEnabled() bool {
	if p.Dispatch != nil {
		return *p.Dispatch
	}
	return p.Embedded()
}

// Authorization is the Authorization header value that may do everything:
// "User <user secret>, Organization <org secret>". It is a credential: print
// it only when ResolveSecrets generated it, never log it.
func (p *Poller) Authorization() string {
	return "User " + p.UserSecret + ", Organization " + p.OrgSecret
}

// LogValue logs the settings without secrets (slog.LogValuer).
func (p *Poller) LogValue() slog.Value {
	dispatch := "auto"
	if p.Dispatch != nil {
		dispatch = fmt.Sprint(*p.Dispatch)
	}
	return slog.GroupValue(
		slog.String("listen", p.Listen),
		slog.String("nats_url", broker.RedactURLs(p.NATSURL)),
		slog.String("nats_listen", p.NATSListen),
		slog.String("data_dir", p.DataDir),
		slog.String("dispatch", dispatch),
		slog.Bool("dispatch_enabled", p.DispatchEnabled()),
		slog.Duration("min_refresh_interval", p.MinRefreshInterval),
		slog.String("retry_schedule", formatSchedule(p.RetrySchedule)),
		slog.Duration("delivery_timeout", p.DeliveryTimeout),
		slog.Bool("block_private_callbacks", p.BlockPrivateCallbacks),
		slog.Duration("event_retention", p.EventRetention),
		slog.Duration("deadletter_retention", p.DeadletterRetention),
		slog.Int("replicas", p.Replicas),
		slog.String("connectors_dir", p.ConnectorsDir),
		slog.String("log_level", p.LogLevel.String()),
		slog.String("config", p.ConfigFile),
	)
}

func formatSchedule(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.String()
	}
	return strings.Join(parts, ",")
}
