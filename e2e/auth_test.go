package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/pollhook/pollhook/e2e/simulators"
)

func TestARefusedAuthorizationCodeIsA502AndCreatesNothing(t *testing.T) {
	t.Parallel()
	keap := simulators.NewKeap(t)
	p := startPoller(t, t.TempDir(), "")
	body := keapInstanceBody(keap, "60")
	body["providerData"] = map[string]any{"code": "a-code-keap-never-issued"}
	status, raw := p.do(http.MethodPost, "/instances", body, nil)
	if status != http.StatusBadGateway || !strings.Contains(string(raw), "invalid_grant") {
		t.Fatalf("create with a refused code: %d %s, want 502 quoting the provider's error", status, raw)
	}
	if status, raw := p.do(http.MethodGet, "/instances", nil, nil); status != http.StatusOK || strings.TrimSpace(string(raw)) != "[]" {
		t.Errorf("instances after a refused code: %d %s, want none", status, raw)
	}
}

func TestARefusedRefreshPausesTheInstanceUntilAPatchBringsANewCode(t *testing.T) {
	t.Parallel()
	keap := simulators.NewKeap(t)
	p := startPoller(t, t.TempDir(), "")
	var in instanceView
	if status, raw := p.do(http.MethodPost, "/instances", keapInstanceBody(keap, "60"), &in); status != http.StatusOK {
		t.Fatalf("create: %d %s", status, raw)
	}
	keap.RevokeRefreshTokens() // also ends the access token
	res := p.runPoll(in.ID)
	if res.Resources[0].Status != "failed" {
		t.Fatalf("poll with revoked tokens: %+v, want failed", res)
	}
	var got struct {
		Status        string `json:"status"`
		StatusMessage string `json:"statusMessage"`
	}
	p.do(http.MethodGet, fmt.Sprintf("/instances/%d", in.ID), nil, &got)
	if got.Status != "reauthorization_required" || got.StatusMessage == "" {
		t.Fatalf("instance after a refused refresh: %+v, want reauthorization_required with a message", got)
	}
	if status, raw := p.do(http.MethodPost, fmt.Sprintf("/instances/%d/poller/run", in.ID), nil, nil); status != http.StatusConflict {
		t.Errorf("poll of a paused instance: %d %s, want 409", status, raw)
	}

	patch := map[string]any{"providerData": map[string]any{"code": keap.IssueCode()}}
	if status, raw := p.do(http.MethodPatch, fmt.Sprintf("/instances/%d", in.ID), patch, &got); status != http.StatusOK || got.Status != "active" {
		t.Fatalf("PATCH with a new code: %d %s, want active", status, raw)
	}
	created := keap.CreateContact(simulators.ContactFields("Back", "Again", "back@example.com"))
	res = p.runPoll(in.ID)
	if res.Resources[0].Status != "ok" || res.Resources[0].Events != 1 {
		t.Fatalf("poll after the new code: %+v, want contact %s reported", res, created.IDString())
	}
}
