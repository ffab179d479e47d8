package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pollhook/pollhook/e2e/simulators"
)

// The dashboard in headless Chromium (Debian's chromium; .ci/run installs
// it): sign in, poll now, see the delivery, see a dead letter, redeliver it.
// Screenshots of each step go to artifacts/dashboard/ at the repository's
// root (or $POLLHOOK_ARTIFACTS/dashboard).

func TestDashboardInABrowserFromSignInToRedelivery(t *testing.T) {
	t.Parallel()
	browser := newBrowser(t)
	p := startPoller(t, t.TempDir(), "", "--retry-schedule", "100ms,200ms", "--delivery-timeout", "2s")
	keap, s := simulators.NewKeap(t), newSink(t)
	shots := screenshotDir(t)
	user, org := apiSecrets(t, p)

	b := browser.step(t, "sign in", shots, "1-signed-in.png",
		chromedp.Navigate(p.base+"/ui/"),
		chromedp.WaitVisible(chromedp.ID("user")),
		chromedp.SendKeys(chromedp.ID("user"), user),
		chromedp.SendKeys(chromedp.ID("organization"), org),
		chromedp.Submit(chromedp.ID("user")),
		chromedp.WaitVisible(chromedp.ID("instance-list")),
	)
	if got := b.text(t, "h1"); got != "Instances" {
		t.Fatalf("after signing in the page is %q, want Instances", got)
	}

	id := keapInstanceWithCallback(t, p, keap, s.URL(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 10)
	contact := keap.CreateContact(simulators.ContactFields("Ada", "Lovelace", "ada@example.com"))
	instancePage := fmt.Sprintf("%s/ui/instances/%d", p.base, id)

	// The list shows the instance; its page is reached from it. Poll now by
	// keyboard alone.
	link := chromedp.CSS(fmt.Sprintf(`a[href="/ui/instances/%d"]`, id))
	b.run(t, chromedp.Navigate(p.base+"/ui/"), chromedp.WaitVisible(link))
	b.run(t, chromedp.Click(link), chromedp.WaitVisible(chromedp.ID("poll-now")))
	b.pressUntilFocused(t, "poll-now")
	b.run(t, chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.CSS(".run")))
	if got := b.text(t, ".run tbody tr"); !strings.Contains(got, "contacts") || !strings.Contains(got, "ok") {
		t.Fatalf("poll summary row %q, want contacts ok", got)
	}
	first := waitForDelivery(t, s, 1)
	// The page refreshes itself: the footer says when it last did.
	b.run(t, chromedp.WaitVisible(chromedp.Search(`//span[@data-live-clock][contains(., "updated")]`)))
	b.step(t, "the delivered notification appears by itself", shots, "2-delivered.png",
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#notifications tr[data-event-id=%q] .status-delivered`, first))))

	// The sink fails: the next notification ends as a dead letter.
	s.set(func(int) sinkAnswer {
		return sinkAnswer{Status: http.StatusInternalServerError, Body: `{"error":"database down"}`}
	})
	if _, err := keap.UpdateContact(contact.ID, map[string]any{"given_name": "Augusta"}); err != nil {
		t.Fatal(err)
	}
	b.run(t, chromedp.Navigate(instancePage), chromedp.WaitVisible(chromedp.ID("poll-now")),
		chromedp.Click(chromedp.ID("poll-now")), chromedp.WaitVisible(chromedp.CSS(".run")))
	b.step(t, "the dead letter appears by itself", shots, "3-dead-letter.png",
		chromedp.WaitVisible(chromedp.CSS(`#dead-letters tr[data-event-id] button`)))
	dead := b.attribute(t, `#dead-letters tr[data-event-id]`, "data-event-id")
	if dead == first {
		t.Fatalf("the dead letter is the first, delivered notification %s", dead)
	}
	if got := b.text(t, `#dead-letters tr[data-event-id]`); !strings.Contains(got, "500") || !strings.Contains(got, "database down") {
		t.Errorf("dead letter row %q, want its last status and the response excerpt", got)
	}

	// The sink recovers; Redeliver delivers it with the same eventId.
	s.set(func(int) sinkAnswer { return answerStatus(http.StatusOK) })
	b.step(t, "redelivered", shots, "4-redelivered.png",
		chromedp.Click(chromedp.CSS(`#dead-letters tr[data-event-id] button`)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#notifications tr[data-event-id=%q] .status-delivered`, dead))),
		chromedp.WaitVisible(chromedp.Search(`//section[@id="dead-letters"]/p[contains(., "No dead letters")]`)),
	)
	if !acceptedEventID(s, dead) {
		t.Errorf("the sink never accepted %s", dead)
	}

	// Readable on a phone: nothing wider than the screen but the tables,
	// which scroll inside their own box.
	b.step(t, "on a phone", shots, "5-phone.png",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)),
		chromedp.Navigate(instancePage),
		chromedp.WaitVisible(chromedp.ID("notifications")),
	)
	if overflow := evaluate[bool](t, b, `document.documentElement.scrollWidth > window.innerWidth`); overflow {
		t.Error("on a 390 px wide screen the page scrolls sideways")
	}
}

// waitForDelivery waits until the sink has accepted n notifications and
// returns the eventId of the n-th.
func waitForDelivery(t *testing.T, s *sink, n int) string {
	t.Helper()
	var ids []string
	waitFor(t, 15*time.Second, fmt.Sprintf("%d accepted notifications", n), func() bool {
		ids = ids[:0]
		for _, d := range s.received() {
			if d.accepted() {
				ids = append(ids, d.EventID())
			}
		}
		return len(ids) >= n
	})
	return ids[n-1]
}

func acceptedEventID(s *sink, eventID string) bool {
	for _, d := range s.received() {
		if d.accepted() && d.EventID() == eventID {
			return true
		}
	}
	return false
}

// browser is a headless Chromium tab.
type browser struct {
	ctx context.Context
}

// newBrowser starts headless Chromium for the test, or skips the test
// when the machine has none (CI installs it).
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Skip("no Chromium on this machine (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return &browser{ctx: ctx}
}

// run runs actions within 30 s.
func (b *browser) run(t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail(t, err)
	}
}

// fail ends the test with err and the page's main element.
func (b *browser) fail(t *testing.T, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
	t.Fatalf("%v\npage: %s", err, html)
}

// get runs one action within 30 s and returns its value.
func get[T any](t *testing.T, b *browser, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.fail(t, err)
	}
	return v
}

func evaluate[T any](t *testing.T, b *browser, expression string) T {
	t.Helper()
	return get(t, b, chromedp.Evaluate[T](expression))
}

// step runs actions and saves a screenshot of the page after them as name
// in dir.
func (b *browser) step(t *testing.T, what, dir, name string, actions ...chromedp.Action[chromedp.Void]) *browser {
	t.Helper()
	b.run(t, actions...)
	png := get(t, b, chromedp.FullScreenshot(100)) // quality 100: a PNG
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s", what, filepath.Join(dir, name))
	return b
}

func (b *browser) text(t *testing.T, selector string) string {
	t.Helper()
	return strings.TrimSpace(get(t, b, chromedp.Text(chromedp.CSS(selector))))
}

func (b *browser) attribute(t *testing.T, selector, name string) string {
	t.Helper()
	a := get(t, b, chromedp.AttributeValue(chromedp.CSS(selector), name))
	if !a.Exists {
		t.Fatalf("%s has no %s", selector, name)
	}
	return a.Value
}

// pressUntilFocused presses Tab until the element with id has the focus.
func (b *browser) pressUntilFocused(t *testing.T, id string) {
	t.Helper()
	for range 40 {
		b.run(t, chromedp.KeyEvent("\t"))
		if evaluate[string](t, b, `document.activeElement ? document.activeElement.id : ""`) == id {
			return
		}
	}
	t.Fatalf("40 presses of Tab never reached #%s", id)
}

// screenshotDir is where the test's screenshots go.
func screenshotDir(t *testing.T) string {
	t.Helper()
	root := os.Getenv("POLLHOOK_ARTIFACTS")
	if root == "" {
		root = filepath.Join("..", "artifacts")
	}
	dir := filepath.Join(root, "dashboard")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
