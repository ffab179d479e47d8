package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pollhook/pollhook/internal/testnet"
)

// instanceBody is a create body for the generic connector carrying the given
// secret values.
func instanceBody(name, password, signatureKey string) map[string]any {
	return map[string]any{
		"name":    name,
		"element": map[string]any{"key": "generic"},
		"configuration": map[string]any{
			"base.url":                         "http://127.0.0.1:9/api",
			"auth.type":                        "basic",
			"username":                         "alice",
			"password":                         password,
			"event.notification.enabled":       "true",
			"event.notification.callback.url":  "http://127.0.0.1:9/hooks",
			"event.notification.signature.key": signatureKey,
			"event.poller.refresh_interval":    "60",
			"event.poller.configuration": map[string]any{
				"contacts": map[string]any{
					"url":     "/contacts?since=${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}",
					"idField": "id",
					"datesConfiguration": map[string]any{
						"updatedDateField":  "updated",
						"updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ss'Z'",
					},
				},
			},
		},
		"tags": []string{"e2e"},
	}
}

type instanceView struct {
	ID            int64          `json:"id"`
	Name          string         `json:"name"`
	Token         string         `json:"token"`
	Configuration map[string]any `json:"configuration"`
}

func TestInstancesSurviveSIGKILLAndIDsAreNeverReused(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	p := startPoller(t, dataDir, "")
	created := map[int64]string{}
	for i := range 3 {
		var in instanceView
		if status, raw := p.do(http.MethodPost, "/instances", instanceBody(fmt.Sprintf("before-%d", i), "pw", "key"), &in); status != http.StatusOK {
			t.Fatalf("create: %d %s", status, raw)
		}
		created[in.ID] = in.Name
	}
	var deleted instanceView
	p.do(http.MethodPost, "/instances", instanceBody("deleted", "pw", "key"), &deleted)
	if status, raw := p.do(http.MethodDelete, fmt.Sprintf("/instances/%d", deleted.ID), nil, nil); status != http.StatusOK {
		t.Fatalf("delete: %d %s", status, raw)
	}
	p.kill()

	p2 := startPoller(t, dataDir, p.auth)
	for id, name := range created {
		var in instanceView
		if status, raw := p2.do(http.MethodGet, fmt.Sprintf("/instances/%d", id), nil, &in); status != http.StatusOK || in.Name != name {
			t.Errorf("instance %d after restart: %d %s, want name %q", id, status, raw, name)
		}
	}
	if status, _ := p2.do(http.MethodGet, fmt.Sprintf("/instances/%d", deleted.ID), nil, nil); status != http.StatusNotFound {
		t.Errorf("deleted instance %d after restart: status %d, want 404", deleted.ID, status)
	}
	var next instanceView
	p2.do(http.MethodPost, "/instances", instanceBody("after", "pw", "key"), &next)
	for id := range created {
		if next.ID <= id {
			t.Errorf("id after restart %d, want above every earlier id (had %d)", next.ID, id)
		}
	}
	if next.ID <= deleted.ID {
		t.Errorf("id after restart %d reuses or precedes deleted id %d", next.ID, deleted.ID)
	}
}

func TestInstanceSecretsAppearNeitherInResponsesNorInTheDataDir(t *testing.T) {
	t.Parallel()
	const password, signatureKey = "pw-Xq7-never-stored-in-clear", "sig-K9z-never-stored-in-clear"
	dataDir := t.TempDir()
	p := startPoller(t, dataDir, "")
	var in instanceView
	status, raw := p.do(http.MethodPost, "/instances", instanceBody("secret", password, signatureKey), &in)
	if status != http.StatusOK {
		t.Fatalf("create: %d %s", status, raw)
	}
	responses := [][]byte{raw}
	_, raw = p.do(http.MethodGet, fmt.Sprintf("/instances/%d", in.ID), nil, nil)
	responses = append(responses, raw)
	_, raw = p.do(http.MethodGet, "/instances", nil, nil)
	responses = append(responses, raw)
	_, raw = p.do(http.MethodPatch, fmt.Sprintf("/instances/%d", in.ID), map[string]any{"name": "renamed"}, nil)
	responses = append(responses, raw)
	for _, body := range responses {
		for _, secret := range []string{password, signatureKey} {
			if bytes.Contains(body, []byte(secret)) {
				t.Errorf("a response holds the secret %q: %s", secret, body)
			}
		}
	}
	if in.Configuration["password"] != "********" || in.Configuration["event.notification.signature.key"] != "********" {
		t.Errorf("secrets not shown as ********: %v", in.Configuration)
	}
	if err := p.stop(); err != nil {
		t.Fatalf("SIGTERM: exit %v, want 0", err)
	}
	scanDataDir(t, dataDir, []string{password, signatureKey, in.Token})
	if strings.Contains(p.Output(), password) || strings.Contains(p.Output(), signatureKey) {
		t.Error("the process output holds a secret")
	}
}

func TestSIGTERMExitsZero(t *testing.T) {
	t.Parallel()
	p := startPoller(t, t.TempDir(), "")
	if err := p.stop(); err != nil {
		t.Fatalf("exit after SIGTERM: %v, want 0\n%s", err, p.Output())
	}
}

// TestSIGINTExitsZeroAndKeepsWhatWasStored: Ctrl-C stops the poller as
// SIGTERM does, and a new start on the same data dir finds the instance.
func TestSIGINTExitsZeroAndKeepsWhatWasStored(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	p := startPoller(t, dataDir, "")
	var in instanceView
	if status, raw := p.do(http.MethodPost, "/instances", instanceBody("kept", "pw", "key"), &in); status != http.StatusOK {
		t.Fatalf("create: %d %s", status, raw)
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if p.exitErr != nil {
			t.Fatalf("exit after SIGINT: %v, want 0\n%s", p.exitErr, p.Output())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("poller did not exit within 30 s of SIGINT\n%s", p.Output())
	}
	p2 := startPoller(t, dataDir, p.auth)
	var got instanceView
	if status, raw := p2.do(http.MethodGet, fmt.Sprintf("/instances/%d", in.ID), nil, &got); status != http.StatusOK || got.Name != "kept" {
		t.Errorf("instance %d after SIGINT and a new start: %d %s", in.ID, status, raw)
	}
}

// TestAPollerOnExternalNATSSharesInstancesAndTheirIDs runs a second poller
// with --nats-url on the first one's embedded server: both see every
// instance, and ids created through both never collide.
func TestAPollerOnExternalNATSSharesInstancesAndTheirIDs(t *testing.T) {
	t.Parallel()
	secrets := []string{"--secret-key", randomSecret(t, 32), "--user-secret", randomSecret(t, 24), "--org-secret", randomSecret(t, 24)}
	auth := "User " + secrets[3] + ", Organization " + secrets[5]
	embedded := startPoller(t, t.TempDir(), auth, secrets...)
	listen, dataDir := testnet.Addr(t), t.TempDir()
	external := (&poller{t: t, dataDir: dataDir, auth: auth, base: "http://" + listen, natsURL: embedded.natsURL}).start(
		append([]string{"--listen", listen, "--nats-url", embedded.natsURL, "--data-dir", dataDir, "--dispatch=false"}, secrets...))

	ids := map[int64]*poller{}
	for i := range 6 {
		p := []*poller{embedded, external}[i%2]
		var in instanceView
		if status, raw := p.do(http.MethodPost, "/instances", instanceBody(fmt.Sprint("shared-", i), "pw", "key"), &in); status != http.StatusOK {
			t.Fatalf("create %d: %d %s", i, status, raw)
		}
		if ids[in.ID] != nil {
			t.Errorf("id %d given twice", in.ID)
		}
		ids[in.ID] = p
	}
	for id := range ids {
		for _, p := range []*poller{embedded, external} {
			if status, raw := p.do(http.MethodGet, fmt.Sprintf("/instances/%d", id), nil, nil); status != http.StatusOK {
				t.Errorf("instance %d through %s: %d %s", id, p.base, status, raw)
			}
		}
	}
}

func TestBlockPrivateCallbacksRefusesALoopbackCallbackAtCreation(t *testing.T) {
	t.Parallel()
	p := startPoller(t, t.TempDir(), "", "--block-private-callbacks")
	status, raw := p.do(http.MethodPost, "/instances", instanceBody("private", "pw", "key"), nil)
	if status != http.StatusBadRequest || !strings.Contains(string(raw), `"field":"configuration.event.notification.callback.url"`) {
		t.Fatalf("create with a loopback callback: %d %s, want 400 naming the callback URL", status, raw)
	}
}
