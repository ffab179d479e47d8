package instances_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
)

func TestListFiltersByTagsAndStatus(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	ids := map[string]int64{}
	for _, in := range []struct {
		name string
		tags []string
	}{ // in id order
		{"eu shop", []string{"shop", "eu"}},
		{"us shop", []string{"shop", "us"}},
		{"eu crm", []string{"crm", "eu"}},
		{"untagged", []string{}},
	} {
		body := validBody(in.name)
		body["tags"] = in.tags
		ids[in.name] = a.create(body).ID
	}
	if status, raw, _ := a.do(http.MethodPatch, fmt.Sprintf("/instances/%d", ids["us shop"]), adminAuth, map[string]any{"disabled": true}); status != http.StatusOK {
		t.Fatalf("disable: %d %s", status, raw)
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"tags[]=shop", []string{"eu shop", "us shop"}},
		{"tags[]=shop&tags[]=eu", []string{"eu shop"}},
		{"tags[]=eu&pageSize=1", []string{"eu shop"}}, // a filtered page is still full
		{"status=disabled", []string{"us shop"}},
		{"status=active&tags[]=shop", []string{"eu shop"}},
		{"status=reauthorization_required", nil},
		{"tags[]=none", nil},
	} {
		status, raw, _ := a.do(http.MethodGet, "/instances?"+tc.query, adminAuth, nil)
		var page []view
		if status != http.StatusOK || json.Unmarshal(raw, &page) != nil {
			t.Fatalf("GET /instances?%s: %d %s", tc.query, status, raw)
		}
		var got []string
		for _, v := range page {
			for name, id := range ids {
				if id == v.ID {
					got = append(got, name)
				}
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("GET /instances?%s: %q, want %q", tc.query, got, tc.want)
		}
	}
	status, raw, _ := a.do(http.MethodGet, "/instances?status="+url.QueryEscape("paused"), adminAuth, nil)
	if status != http.StatusBadRequest || !json.Valid(raw) {
		t.Fatalf("GET /instances?status=paused: %d %s, want 400", status, raw)
	}
	var body struct {
		Errors []struct{ Field, Message string }
	}
	_ = json.Unmarshal(raw, &body)
	if len(body.Errors) != 1 || body.Errors[0].Field != "status" {
		t.Errorf("errors %+v, want one naming status", body.Errors)
	}
}
