package dashboard

import (
	"testing"
	"time"

	"github.com/pollhook/pollhook/events/dispatch"
)

func TestChartScalesTheBusiestMinuteToTheFullHeight(t *testing.T) {
	first := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	minutes := make([]dispatch.MinuteActivity, 60)
	for i := range minutes {
		minutes[i].Minute = first.Add(time.Duration(i) * time.Minute)
	}
	minutes[10].ActivityCounts = dispatch.ActivityCounts{Delivered: 30, AttemptsFailed: 10}
	minutes[59].Delivered = 1
	c := newChart(minutes)
	if c.Max != 40 || c.Delivered != 31 || c.Failed != 10 || len(c.Bars) != 60 || c.Width != 600 {
		t.Fatalf("chart %+v", c)
	}
	busy := c.Bars[10]
	if busy.DeliveredHeight != 75 || busy.FailedHeight != 25 || busy.FailedY != 0 || busy.DeliveredY != 25 {
		t.Errorf("busiest bar %+v, want delivered 75 high under failed 25", busy)
	}
	if small := c.Bars[59]; small.DeliveredHeight != 2 || small.X != 590 { // 1 of 40, of 100
		t.Errorf("a minute with one delivery %+v, want a visible bar at x 590", small)
	}
	if quiet := c.Bars[0]; quiet.DeliveredHeight != 0 || quiet.FailedHeight != 0 {
		t.Errorf("a quiet minute %+v, want no bar", quiet)
	}
	if c.FirstMinute != "14:00" || c.LastLabel != "14:59 UTC" || busy.Title != "14:10 UTC: 30 delivered, 10 failed" {
		t.Errorf("labels %q %q %q", c.FirstMinute, c.LastLabel, busy.Title)
	}
}

func TestWhenSaysHowFarFromNow(t *testing.T) {
	now := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	for _, tc := range []struct {
		t    *time.Time
		want string
	}{
		{nil, "—"},
		{&time.Time{}, "—"},
		{at(0), `2026-12-01 15:00:00 UTC <span class="ago">(now)</span>`},
		{at(-42 * time.Second), `2026-12-01 14:59:18 UTC <span class="ago">(42 s ago)</span>`},
		{at(5 * time.Minute), `2026-12-01 15:05:00 UTC <span class="ago">(5 min from now)</span>`},
		{at(-3 * time.Hour), `2026-12-01 12:00:00 UTC <span class="ago">(3 h ago)</span>`},
		{at(-72 * time.Hour), `2026-11-28 15:00:00 UTC <span class="ago">(3 days ago)</span>`},
	} {
		if got := string(when(tc.t, now)); got != tc.want {
			t.Errorf("when(%v) = %q, want %q", tc.t, got, tc.want)
		}
	}
}
