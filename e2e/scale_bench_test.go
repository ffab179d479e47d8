package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollhook/pollhook/pollers"
)

// BenchmarkTenThousandInstances runs the poller binary (embedded NATS)
// with 10,000 instances of one resource each, polled every minute against
// an upstream that answers at once with no records, for 5 minutes, and
// reports how late each poll's request reached the upstream after its
// slot (p50, p99), the process's RSS and CPU (embedded NATS included), and
// the memory an idle instance costs. It runs once whatever b.N is:
//
//	go test ./e2e -run '^$' -bench TenThousandInstances -benchtime 1x -timeout 30m -v
//
// POLLHOOK_SCALE_INSTANCES and POLLHOOK_SCALE_DURATION (a Go duration)
// change the size and the length.
func BenchmarkTenThousandInstances(b *testing.B) {
	n := envInt(b, "POLLHOOK_SCALE_INSTANCES", 10000)
	run := 5 * time.Minute
	if v := os.Getenv("POLLHOOK_SCALE_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("POLLHOOK_SCALE_DURATION=%q: %v", v, err)
		}
		run = d
	}
	const interval = time.Minute
	up := newArrivals()
	defer up.Close()
	sink := newBenchSink()
	defer sink.Close()
	p := startPoller(b, b.TempDir(), "")
	pid := p.cmd.Process.Pid
	time.Sleep(2 * time.Second)
	rssEmpty := rssOf(b, pid)

	// Idle: every instance created disabled.
	ids := make([]int64, n)
	began := time.Now()
	parallel(n, 8, func(i int) {
		body := scaleInstanceBody(up.URL, i, sink.URL())
		body["disabled"] = true
		var in instanceView
		if status, raw := apiDo(b, p, http.MethodPost, "/instances", body, &in); status != http.StatusOK {
			b.Fatalf("create: %d %s", status, raw)
		}
		ids[i] = in.ID
	})
	created := time.Since(began)
	time.Sleep(5 * time.Second)
	rssIdle := rssOf(b, pid)
	perInstance := float64(rssIdle-rssEmpty) / float64(n)
	b.ReportMetric(perInstance/1024, "KiB/idle-instance")
	b.Logf("%d instances created in %v (%.0f/s); RSS %.0f MiB empty, %.0f MiB with them idle: %.1f KiB an instance",
		n, created.Round(time.Millisecond), float64(n)/created.Seconds(), mib(rssEmpty), mib(rssIdle), perInstance/1024)

	// Active: enabled, then measured for run.
	parallel(n, 8, func(i int) {
		if status, raw := apiDo(b, p, http.MethodPatch, fmt.Sprintf("/instances/%d", ids[i]), map[string]any{"disabled": false}, nil); status != http.StatusOK {
			b.Fatalf("enable: %d %s", status, raw)
		}
	})
	time.Sleep(interval) // every instance reaches its first slot
	up.reset()
	cpu0, wall0 := cpuOf(b, pid), time.Now()
	var rss []int64
	for time.Since(wall0) < run {
		time.Sleep(5 * time.Second)
		rss = append(rss, rssOf(b, pid))
	}
	cores := (cpuOf(b, pid) - cpu0).Seconds() / time.Since(wall0).Seconds()

	byPath := up.take()
	var late []time.Duration
	polls := 0
	for i, id := range ids {
		offset := pollers.Offset(id, interval)
		for _, at := range byPath[fmt.Sprintf("/%d/records", i)] {
			slot := pollers.NextSlot(at.Add(-interval), interval, offset)
			late = append(late, at.Sub(slot))
			polls++
		}
	}
	slices.Sort(late)
	if len(late) == 0 {
		b.Fatal("no poll reached the upstream")
	}
	p50, p99 := late[len(late)/2], late[len(late)*99/100]
	expected := float64(n) * run.Seconds() / interval.Seconds()
	b.ReportMetric(p50.Seconds(), "p50-late-s")
	b.ReportMetric(p99.Seconds(), "p99-late-s")
	b.ReportMetric(mib(slices.Max(rss)), "max-RSS-MiB")
	b.ReportMetric(cores, "cores")
	b.Logf("%v: %d polls (%.1f%% of the %d slots), late after their slot p50 %v, p99 %v, max %v; RSS max %.0f MiB, mean %.0f MiB; CPU %.2f cores",
		run, polls, 100*float64(polls)/expected, int(expected), p50.Round(time.Millisecond), p99.Round(time.Millisecond),
		late[len(late)-1].Round(time.Millisecond), mib(slices.Max(rss)), mib(mean(rss)), cores)
}

func scaleInstanceBody(upstream string, i int, callback string) map[string]any {
	return map[string]any{
		"name": fmt.Sprint("scale ", i), "element": map[string]any{"key": "generic"},
		"configuration": map[string]any{
			"base.url":                        upstream,
			"event.notification.enabled":      true,
			"event.notification.callback.url": callback,
			"event.poller.refresh_interval":   "1",
			"event.poller.configuration": map[string]any{"records": map[string]any{
				"url": fmt.Sprintf("/%d/records?since=${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}", i), "idField": "id",
				"datesConfiguration": map[string]any{"updatedDateField": "updated", "updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ssX"},
			}},
		},
	}
}

// arrivals is an upstream that answers [] at once and notes when each
// path was asked for.
type arrivals struct {
	*httptest.Server
	mu sync.Mutex
	at map[string][]time.Time
}

func newArrivals() *arrivals {
	a := &arrivals{at: map[string][]time.Time{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		a.mu.Lock()
		a.at[r.URL.Path] = append(a.at[r.URL.Path], now)
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("[]"))
	}))
	return a
}

func (a *arrivals) take() map[string][]time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	at := a.at
	a.at = map[string][]time.Time{}
	return at
}

func (a *arrivals) reset() { a.take() }

// parallel calls f(0..n-1), workers at a time.
func parallel(n, workers int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// rssOf reads a process's resident set size in bytes from /proc.
func rssOf(b *testing.B, pid int) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb * 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// cpuOf reads a process's user and system CPU time from /proc.
func cpuOf(b *testing.B, pid int) time.Duration {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command (which may hold spaces) start after ')'.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // clock ticks of 1/100 s
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func mib(bytes int64) float64 { return float64(bytes) / (1 << 20) }

func mean(xs []int64) int64 {
	var sum int64
	for _, x := range xs {
		sum += x
	}
	return sum / int64(max(len(xs), 1))
}
