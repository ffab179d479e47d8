package dispatch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestClassifyDecidesRetryOrGiveUpWithAReason(t *testing.T) {
	t.Parallel()
	timeout := fmt.Errorf("post: %w", context.DeadlineExceeded)
	tests := []struct {
		res  Result
		want Decision
	}{
		{Result{StatusCode: 200}, Decision{OutcomeDelivered, ReasonOK}},
		{Result{StatusCode: 204}, Decision{OutcomeDelivered, ReasonOK}},
		{Result{StatusCode: 299}, Decision{OutcomeDelivered, ReasonOK}},
		{Result{StatusCode: 410}, Decision{OutcomeFailed, ReasonGone}},
		{Result{StatusCode: 301}, Decision{OutcomeRetry, ReasonHTTP3xx}},
		{Result{StatusCode: 400}, Decision{OutcomeRetry, ReasonHTTP4xx}},
		{Result{StatusCode: 404}, Decision{OutcomeRetry, ReasonHTTP4xx}},
		{Result{StatusCode: 429}, Decision{OutcomeRetry, ReasonHTTP429}},
		{Result{StatusCode: 500}, Decision{OutcomeRetry, ReasonHTTP5xx}},
		{Result{StatusCode: 503}, Decision{OutcomeRetry, ReasonHTTP5xx}},
		{Result{StatusCode: 102}, Decision{OutcomeRetry, ReasonHTTPOther}},
		{Result{Err: timeout}, Decision{OutcomeRetry, ReasonTimeout}},
		{Result{Err: errors.New("connection refused")}, Decision{OutcomeRetry, ReasonConnection}},
		{Result{Err: fmt.Errorf("dial: %w", ErrBlockedAddress)}, Decision{OutcomeRetry, ReasonBlockedAddress}},
		{Result{Err: errNoCallback}, Decision{OutcomeRetry, ReasonNoCallback}},
	}
	for _, tt := range tests {
		if got := Classify(tt.res); got != tt.want {
			t.Errorf("Classify(%d, %v) = %+v, want %+v", tt.res.StatusCode, tt.res.Err, got, tt.want)
		}
	}
}

func TestRetryAfterReadsSecondsAndDatesOn429And503Only(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)
	tests := []struct {
		status int
		header string
		want   time.Duration
		ok     bool
	}{
		{429, "1", time.Second, true},
		{503, "120", 2 * time.Minute, true},
		{503, " 0 ", 0, true},
		{429, now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{429, now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{429, "999999999", MaxRetryAfter, true},
		{429, now.Add(48 * time.Hour).Format(http.TimeFormat), MaxRetryAfter, true},
		{500, "1", 0, false},
		{429, "", 0, false},
		{429, "-5", 0, false},
		{429, "soon", 0, false},
	}
	for _, tt := range tests {
		got, ok := RetryAfter(tt.status, tt.header, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("RetryAfter(%d, %q) = %s, %v; want %s, %v", tt.status, tt.header, got, ok, tt.want, tt.ok)
		}
	}
}

func TestNextRetryFollowsTheScheduleFromTheFirstFailure(t *testing.T) {
	t.Parallel()
	schedule := []time.Duration{4 * time.Second, 16 * time.Second, 64 * time.Second}
	anchor := time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)
	now := anchor.Add(20 * time.Second)
	tests := []struct {
		name   string
		next   int
		j      float64
		ra     time.Duration
		hasRA  bool
		want   time.Time
		wantOK bool
	}{
		{"first retry", 0, 0, 0, false, anchor.Add(4 * time.Second), true},
		{"second retry, from the anchor not from now", 1, 0, 0, false, anchor.Add(16 * time.Second), true},
		{"jitter +10%", 2, 1, 0, false, anchor.Add(64*time.Second + 6400*time.Millisecond), true},
		{"jitter -10%", 2, -1, 0, false, anchor.Add(64*time.Second - 6400*time.Millisecond), true},
		{"jitter is bounded", 0, 7, 0, false, anchor.Add(4*time.Second + 400*time.Millisecond), true},
		{"Retry-After replaces the due time", 1, 0, 3 * time.Second, true, now.Add(3 * time.Second), true},
		{"Retry-After at most 24h", 1, 0, 48 * time.Hour, true, now.Add(24 * time.Hour), true},
		{"after the last offset: none", 3, 0, 0, false, time.Time{}, false},
		{"after the last offset even with Retry-After", 3, 0, time.Second, true, time.Time{}, false},
	}
	for _, tt := range tests {
		got, ok := NextRetry(schedule, anchor, tt.next, tt.j, now, tt.ra, tt.hasRA)
		if !got.Equal(tt.want) || ok != tt.wantOK {
			t.Errorf("%s: NextRetry = %s, %v; want %s, %v", tt.name, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestDestinationIsSchemeHostAndPort(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://Hooks.Example.com/a?b=c":          "https://hooks.example.com:443",
		"http://hooks.example.com/":                "http://hooks.example.com:80",
		"https://user:pw@hooks.example.com:8443/x": "https://hooks.example.com:8443",
		"http://[::1]:9000/":                       "http://[::1]:9000",
		"not a url":                                "",
		"ftp://x/":                                 "",
	} {
		if got := Destination(in); got != want {
			t.Errorf("Destination(%q) = %q, want %q", in, got, want)
		}
	}
}
