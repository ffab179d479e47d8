package instances

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func viewJSON(t *testing.T, in *Instance, includeToken bool) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(in.View(includeToken)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestViewNeverShowsASecret parses every good body, then checks that no
// secret value appears anywhere in the view's JSON and that each secret key
// is shown as "********".
func TestViewNeverShowsASecret(t *testing.T) {
	files, _ := filepath.Glob("testdata/create/good/*.json")
	if len(files) == 0 {
		t.Fatal("no good bodies")
	}
	secretsSeen := 0
	for _, file := range files {
		in, _, probs := ParseCreate(readTestdata(t, file), parseRules(t))
		if len(probs) > 0 {
			t.Fatalf("%s refused: %+v", file, probs)
		}
		in.Token = "tok-" + strings.Repeat("x", 40)
		for _, withToken := range []bool{false, true} {
			out := viewJSON(t, in, withToken)
			for k, v := range in.Secrets {
				secretsSeen++
				if len(v) >= 4 && bytes.Contains(out, []byte(v)) {
					t.Errorf("%s: the value of secret %s is in the view:\n%s", file, k, out)
				}
			}
			var doc struct {
				Token         *string        `json:"token"`
				Configuration map[string]any `json:"configuration"`
			}
			if err := json.Unmarshal(out, &doc); err != nil {
				t.Fatal(err)
			}
			for k := range in.Secrets {
				if doc.Configuration[k] != Redacted {
					t.Errorf("%s: secret %s shown as %v", file, k, doc.Configuration[k])
				}
			}
			if withToken != (doc.Token != nil) {
				t.Errorf("%s: includeToken %v but token present %v", file, withToken, doc.Token != nil)
			}
		}
	}
	if secretsSeen == 0 {
		t.Error("no good body has a secret")
	}
}

func TestViewHasTheResponseShape(t *testing.T) {
	in, _, probs := ParseCreate(readTestdata(t, "testdata/create/good/spec_example.json"), parseRules(t))
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	in.ID = 12
	in.Token = "element-token"
	in.CreatedDate = time.Date(2026, 11, 22, 9, 35, 27, 123456789, time.FixedZone("CET", 3600))
	checkGolden(t, "testdata/create/good/spec_example.view.golden", viewJSON(t, in, true))

	var doc map[string]any
	if err := json.Unmarshal(viewJSON(t, in, true), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["createdDate"] != "2026-11-22T08:35:27.123Z" {
		t.Errorf("createdDate = %v", doc["createdDate"])
	}
	if _, ok := doc["configuration"].(map[string]any)[KeyPollerConfig].(map[string]any); !ok {
		t.Errorf("event.poller.configuration is not an object in the view")
	}
	if _, ok := doc["statusMessage"]; ok {
		t.Error("statusMessage shown while empty")
	}
}

func TestViewOfABareInstance(t *testing.T) {
	in := &Instance{ID: 3, Name: "bare", ElementKey: "generic", Disabled: true,
		Status: StatusReauthorizationRequired, StatusMessage: "refresh refused: invalid_grant"}
	out := string(viewJSON(t, in, false))
	for _, want := range []string{`"tags": []`, `"configuration": {}`, `"statusMessage": "refresh refused: invalid_grant"`,
		`"status": "reauthorization_required"`, `"element": {`, `"key": "generic"`, `"disabled": true`, `"eventsEnabled": false`} {
		if !strings.Contains(out, want) {
			t.Errorf("view lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"token"`) {
		t.Errorf("token shown without includeToken:\n%s", out)
	}
	// A view does not share maps with the instance.
	in.Configuration = map[string]any{"a": map[string]any{"b": 1.0}}
	v := in.View(true)
	v.Configuration["a"].(map[string]any)["b"] = 2.0
	v.Tags = append(v.Tags, "x")
	if in.Configuration["a"].(map[string]any)["b"] != 1.0 || len(in.Tags) != 0 {
		t.Error("changing the view changed the instance")
	}
}
