package config

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/pollhook/pollhook/broker"
)

// The parsers turn one raw value into a typed one. Their errors say what is
// wrong with the value; the caller adds the setting's name and the source.

func parseString(s string) (string, error) { return s, nil }

func parseNonEmpty(s string) (string, error) {
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("must not be empty")
	}
	return s, nil
}

func parseBool(s string) (bool, error) {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("invalid boolean %q, want true or false", s)
	}
	return b, nil
}

func parseOptionalBool(s string) (*bool, error) {
	b, err := parseBool(s)
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// parseAddress accepts host:port with a numeric port 0-65535; an empty host
// means every interface.
func parseAddress(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("invalid address %q, want host:port", s)
	}
	if strings.ContainsAny(host, "/ \t") {
		return "", fmt.Errorf("invalid host in address %q", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", fmt.Errorf("invalid port in address %q, want 0-65535", s)
	}
	return s, nil
}

// parseNATSURL accepts "" (the poller's embedded mode) or a comma-separated
// list of NATS server URLs (nats, tls, ws or wss; nats:// is assumed when the
// scheme is missing, as nats.go does).
func parseNATSURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		full := part
		if !strings.Contains(full, "://") {
			full = "nats://" + full
		}
		u, err := url.Parse(full)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("invalid URL %q", broker.RedactURLs(part))
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return "", fmt.Errorf("invalid URL %q: scheme must be nats, tls, ws or wss", broker.RedactURLs(part))
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return "", fmt.Errorf("invalid port in URL %q", broker.RedactURLs(part))
			}
		}
	}
	return s, nil
}

func parsePositiveDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q, want e.g. 15s, 1m or 168h", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("must be positive, got %s", s)
	}
	return d, nil
}

// parseSchedule reads comma-separated positive durations that strictly
// increase.
func parseSchedule(s string) ([]time.Duration, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("must list at least one delay")
	}
	var out []time.Duration
	for part := range strings.SplitSeq(s, ",") {
		d, err := parsePositiveDuration(part)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", len(out)+1, err)
		}
		if n := len(out); n > 0 && d <= out[n-1] {
			return nil, fmt.Errorf("item %d: %s is not after %s; delays must strictly increase", n+1, d, out[n-1])
		}
		out = append(out, d)
	}
	return out, nil
}

func parseIntRange(lo, hi int) func(string) (int, error) {
	return func(s string) (int, error) {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return 0, fmt.Errorf("invalid integer %q", s)
		}
		if n < lo || n > hi {
			return 0, fmt.Errorf("must be between %d and %d, got %d", lo, hi, n)
		}
		return n, nil
	}
}

// SecretKeySize is the length of the decoded --secret-key.
const SecretKeySize = 32

// parseSecretKey decodes base64 (standard or URL alphabet, padded or not)
// into exactly SecretKeySize bytes. Its errors never contain the value.
func parseSecretKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(b) != SecretKeySize {
			return nil, fmt.Errorf("must be %d bytes, got %d; generate one with: head -c 32 /dev/urandom | base64", SecretKeySize, len(b))
		}
		return b, nil
	}
	return nil, fmt.Errorf("not valid base64; generate one with: head -c 32 /dev/urandom | base64")
}

// parseAPISecret accepts an organization or user secret. It goes into an
// Authorization header of comma-separated "Scheme value" parts, so it may not
// contain commas, whitespace or control characters. Errors never contain the
// value.
func parseAPISecret(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("must not be empty")
	}
	for _, r := range s {
		if r == ',' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return "", fmt.Errorf("must not contain commas, whitespace or control characters")
		}
	}
	return s, nil
}

func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("invalid level %q, want debug, info, warn or error", s)
}

// Log formats of --log-format.
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
)

func parseLogFormat(s string) (string, error) {
	switch f := strings.ToLower(strings.TrimSpace(s)); f {
	case LogFormatText, LogFormatJSON:
		return f, nil
	}
	return "", fmt.Errorf("invalid format %q, want text or json", s)
}
