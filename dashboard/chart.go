package dashboard

import (
	"fmt"

	"github.com/pollhook/pollhook/events/dispatch"
)

// Chart geometry, in SVG user units.
const (
	chartBarWidth = 10
	chartHeight   = 100
)

// chart is the last hour's delivery attempts as stacked bars, one a minute:
// delivered at the bottom, failed attempts above.
type chart struct {
	Bars                   []bar
	Width, Height          int
	Max                    int64 // attempts of the busiest minute
	Delivered, Failed      int64 // over the hour
	FirstMinute, LastLabel string
}

type bar struct {
	X, Width                    int
	DeliveredY, DeliveredHeight int
	FailedY, FailedHeight       int
	Title                       string
}

func newChart(minutes []dispatch.MinuteActivity) chart {
	c := chart{Width: len(minutes) * chartBarWidth, Height: chartHeight}
	for _, m := range minutes {
		c.Max = max(c.Max, m.Delivered+m.AttemptsFailed)
		c.Delivered += m.Delivered
		c.Failed += m.AttemptsFailed
	}
	if len(minutes) > 0 {
		c.FirstMinute = minutes[0].Minute.UTC().Format("15:04")
		c.LastLabel = minutes[len(minutes)-1].Minute.UTC().Format("15:04") + " UTC"
	}
	scale := func(n int64) int {
		if c.Max == 0 || n == 0 {
			return 0
		}
		return int(max(1, n*chartHeight/c.Max))
	}
	for i, m := range minutes {
		dh, fh := scale(m.Delivered), scale(m.AttemptsFailed)
		fh = min(fh, chartHeight-dh) // the 1-unit minimum of a small count may overshoot
		c.Bars = append(c.Bars, bar{
			X: i * chartBarWidth, Width: chartBarWidth - 2,
			DeliveredY: chartHeight - dh, DeliveredHeight: dh,
			FailedY: chartHeight - dh - fh, FailedHeight: fh,
			Title: fmt.Sprintf("%s UTC: %d delivered, %d failed", m.Minute.UTC().Format("15:04"), m.Delivered, m.AttemptsFailed),
		})
	}
	return c
}
