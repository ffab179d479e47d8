package dispatch

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Outcomes of an attempt, and of a notification.
const (
	OutcomeDelivered = "delivered"
	OutcomeRetry     = "retry"
	OutcomeFailed    = "failed"
)

// Reasons: why an attempt ended as it did, and why a notification failed.
// They are the reason label of pollhook_deliveries_total.
const (
	ReasonOK             = "ok"
	ReasonGone           = "gone"            // 410: fail at once
	ReasonHTTP3xx        = "http_3xx"        // a redirect, which is not followed
	ReasonHTTP4xx        = "http_4xx"        // other 4xx
	ReasonHTTP429        = "http_429"        // too many requests
	ReasonHTTP5xx        = "http_5xx"        // 5xx
	ReasonHTTPOther      = "http_other"      // 1xx or a status outside 100..599
	ReasonTimeout        = "timeout"         // no complete answer within --delivery-timeout
	ReasonConnection     = "connection"      // DNS, connect, TLS, reset...
	ReasonBlockedAddress = "blocked_address" // --block-private-callbacks refused the address
	ReasonNoCallback     = "no_callback_url" // the instance has no usable callback URL

	// Reasons a notification fails without (more) attempts.
	ReasonRetriesExhausted       = "retries_exhausted"       // the schedule's last offset passed
	ReasonDestinationUnavailable = "destination_unavailable" // ... while its destination was held
	ReasonInstanceDisabled       = "instance_disabled"       // ... while its instance was disabled
)

// Result is what one attempt gave.
type Result struct {
	StatusCode int         // 0 when there was no response
	Err        error       // transport error, when StatusCode is 0
	Header     http.Header // response headers (Retry-After)
	Excerpt    string      // the start of the response body
}

// Decision is what to do after an attempt.
type Decision struct {
	Outcome string // OutcomeDelivered, OutcomeRetry or OutcomeFailed
	Reason  string // a Reason* constant
}

// Classify decides an attempt's outcome: a 2xx is delivered, a 410 fails at
// once, anything else (another status, a timeout, a connection error, a
// refused address) is retried. It is a pure function.
func Classify(r Result) Decision {
	switch {
	case r.StatusCode >= 200 && r.StatusCode < 300:
		return Decision{OutcomeDelivered, ReasonOK}
	case r.StatusCode == http.StatusGone:
		return Decision{OutcomeFailed, ReasonGone}
	case r.StatusCode == http.StatusTooManyRequests:
		return Decision{OutcomeRetry, ReasonHTTP429}
	case r.StatusCode >= 300 && r.StatusCode < 400:
		return Decision{OutcomeRetry, ReasonHTTP3xx}
	case r.StatusCode >= 400 && r.StatusCode < 500:
		return Decision{OutcomeRetry, ReasonHTTP4xx}
	case r.StatusCode >= 500 && r.StatusCode < 600:
		return Decision{OutcomeRetry, ReasonHTTP5xx}
	case r.StatusCode != 0:
		return Decision{OutcomeRetry, ReasonHTTPOther}
	case errors.Is(r.Err, ErrBlockedAddress):
		return Decision{OutcomeRetry, ReasonBlockedAddress}
	case errors.Is(r.Err, errNoCallback):
		return Decision{OutcomeRetry, ReasonNoCallback}
	case isTimeout(r.Err):
		return Decision{OutcomeRetry, ReasonTimeout}
	default:
		return Decision{OutcomeRetry, ReasonConnection}
	}
}

// MaxRetryAfter bounds how far a Retry-After can push the next attempt.
const MaxRetryAfter = 24 * time.Hour

// RetryAfter reads the Retry-After of a 429 or 503 response (delay seconds
// or an HTTP date), bounded to [0, MaxRetryAfter]. ok is false for other
// statuses and for a missing or unreadable header.
func RetryAfter(statusCode int, header string, now time.Time) (d time.Duration, ok bool) {
	if statusCode != http.StatusTooManyRequests && statusCode != http.StatusServiceUnavailable {
		return 0, false
	}
	header = strings.TrimSpace(header)
	if header == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(header, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(header)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), MaxRetryAfter), true
}

// Jittered returns offset scaled by 1 + j/10, for j in [-1, 1]: ±10%.
func Jittered(offset time.Duration, j float64) time.Duration {
	j = min(max(j, -1), 1)
	return offset + time.Duration(float64(offset)*j/10)
}

// NextRetry says when the next retry of a notification is due. schedule is
// --retry-schedule, anchor the end of the notification's first failed
// attempt (or the moment it was first held), next the 0-based index of the
// retry to schedule (how many retries are behind it), j the jitter in
// [-1, 1], retryAfter the delay a 429/503 asked for (hasRetryAfter false
// when none). ok is false when no retry is left: the notification fails.
// A Retry-After replaces the due time of this retry, not the schedule.
func NextRetry(schedule []time.Duration, anchor time.Time, next int, j float64, now time.Time, retryAfter time.Duration, hasRetryAfter bool) (due time.Time, ok bool) {
	if next >= len(schedule) {
		return time.Time{}, false
	}
	if hasRetryAfter {
		return now.Add(min(retryAfter, MaxRetryAfter)), true
	}
	return anchor.Add(Jittered(schedule[next], j)), true
}
