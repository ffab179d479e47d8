package pollers

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pollhook/pollhook/internal/jsondepth"
)

// resourceWithRecordsPath returns a Resource whose only setting is
// recordsPath ("" = automatic).
func resourceWithRecordsPath(t testing.TB, path string) *Resource {
	t.Helper()
	r := &Resource{}
	if path != "" {
		fp, err := ParseFieldPath(path)
		if err != nil {
			t.Fatal(err)
		}
		r.RecordsPath = fp
	}
	return r
}

func TestExtractRecordsFindsTheRecords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, recordsPath, body string
		want                    []string
	}{
		{"array body", "", `[{"id":1},{"id":2}]`, []string{`{"id":1}`, `{"id":2}`}},
		{"field named like the resource", "", `{"count":2,"other":[{"x":1}],"contacts":[{"id":1},{"id":2}]}`, []string{`{"id":1}`, `{"id":2}`}},
		{"field named like the resource ignoring case", "", `{"other":[{"x":1}],"Contacts":[{"id":1}]}`, []string{`{"id":1}`}},
		{"exact name wins over folded name", "", `{"CONTACTS":[{"id":9}],"contacts":[{"id":1}]}`, []string{`{"id":1}`}},
		{"named field null is zero records", "", `{"data":[{"x":1}],"contacts":null}`, nil},
		{"named field not an array falls back to the first array", "", `{"contacts":{"total":1},"items":[{"id":1}]}`, []string{`{"id":1}`}},
		{"first array field", "", `{"count":1,"next":"x","items":[{"id":"a"}],"more":[1]}`, []string{`{"id":"a"}`}},
		{"empty array", "", `{"contacts":[]}`, nil},
		{"recordsPath nested", "data.results", `{"data":{"results":[{"id":1}],"other":[{"id":2}]}}`, []string{`{"id":1}`}},
		{"recordsPath with brackets", "['the records']", `{"the records":[{"id":1}]}`, []string{`{"id":1}`}},
		{"recordsPath missing is zero records", "data.results", `{"data":{}}`, nil},
		{"recordsPath null is zero records", "items", `{"items":null}`, nil},
		{"recordsPath object is one record", "data.item", `{"data":{"item":{"id":7}}}`, []string{`{"id":7}`}},
		{"recordsPath into an array body", "[1].items", `[{"items":[]},{"items":[{"id":3}]}]`, []string{`{"id":3}`}},
		{"empty body", "", ``, nil},
		{"whitespace body", "", " \r\n\t ", nil},
		{"null body", "", `null`, nil},
		{"byte order mark", "", "\xEF\xBB\xBF[{\"id\":1}]", []string{`{"id":1}`}},
		{"non-object elements are kept for the classifier to refuse", "", `[1,"a",null,{"id":1}]`, []string{`1`, `"a"`, `null`, `{"id":1}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ExtractRecords([]byte(tc.body), resourceWithRecordsPath(t, tc.recordsPath), "contacts")
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestExtractRecordsKeepsTheUpstreamsBytes(t *testing.T) {
	t.Parallel()
	rec1 := "{ \"z\" : 1,\n\t\"a\":\"caf\\u00e9 \\/ é\",  \"n\": 1.50E+2, \"o\":{ \"b\":[ 1 , 2 ] } }"
	rec2 := `{"id":"2","big":123456789012345678901234567890}`
	body := "{\"contacts\" : [ " + rec1 + " ,\n   " + rec2 + "\n] }"
	got, err := ExtractRecords([]byte(body), &Resource{}, "contacts")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != rec1 || got[1] != rec2 {
		t.Fatalf("records changed:\n got %q\nwant %q", got, []string{rec1, rec2})
	}
}

func TestExtractRecordsRejectsMalformedJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body, want string
	}{
		{"truncated", `[{"id":1},{"id":`, "malformed JSON at byte"},
		{"garbage in the middle", `{"contacts":[{"id":1} {"id":2}]}`, "malformed JSON at byte 22 (invalid character '{' after array element) near `{\"contacts\":[{\"id\":1} {\"id\":2}]}`"},
		{"html error page", `<html><body>Service Unavailable</body></html>`, `malformed JSON at byte 0`},
		{"trailing garbage", `[{"id":1}]xyz`, "malformed JSON at byte 10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ExtractRecords([]byte(tc.body), &Resource{}, "contacts")
			if !errors.Is(err, ErrMalformedJSON) {
				t.Fatalf("error %v, want ErrMalformedJSON", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// A 12 MB body of nested arrays, well within MaxPageBytes, overflowed the
// goroutine stack in gjson's recursion: a fatal error that killed the
// process. It must fail the page instead.
func TestExtractRecordsRefusesBodiesNestedDeeperThanMaxResponseDepth(t *testing.T) {
	t.Parallel()
	nested := func(n int) []byte {
		return []byte(strings.Repeat("[", n) + strings.Repeat("]", n))
	}
	for _, levels := range []int{MaxResponseDepth + 1, 6_000_000} {
		if _, err := ExtractRecords(nested(levels), nil, "contacts"); err == nil || !strings.Contains(err.Error(), "levels deep") {
			t.Errorf("%d levels: error %v, want the body refused as nested too deep", levels, err)
		}
	}
	records, err := ExtractRecords(nested(MaxResponseDepth), nil, "contacts")
	if err != nil || len(records) != 1 {
		t.Errorf("%d levels: %d records, %v; want the one record", MaxResponseDepth, len(records), err)
	}
}

func TestExtractRecordsMalformedExcerptIsShortAndOneLine(t *testing.T) {
	t.Parallel()
	body := "[" + strings.Repeat("{\"id\":1},\n", 1000) + "oops]"
	_, err := ExtractRecords([]byte(body), &Resource{}, "contacts")
	if err == nil {
		t.Fatal("no error")
	}
	if len(err.Error()) > 300 || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "oops") {
		t.Fatalf("excerpt not short, one line, near the fault: %q", err)
	}
}

func TestExtractRecordsRejectsBodiesWithoutRecords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, recordsPath, body, want string
	}{
		{"object without arrays", "", `{"error":"invalid session"}`, "no array of records"},
		{"scalar body", "", `"ok"`, "got a string"},
		{"recordsPath to a number", "count", `{"count":3}`, "recordsPath count: expected an array of records, got a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ExtractRecords([]byte(tc.body), resourceWithRecordsPath(t, tc.recordsPath), "contacts")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// FuzzExtractRecords reads upstream response bodies: every error is one
// short line, and a body that is not JSON (nor nested deeper than
// MaxResponseDepth) is an ErrMalformedJSON error; each record found is a
// piece of the body and valid JSON, as notifications splice it in verbatim.
func FuzzExtractRecords(f *testing.F) {
	for _, s := range []string{
		`[{"id":1}]`, `{"contacts":[{"id":1}]}`, `{"a":{"b":[1,2]}}`, ``, `null`, `{`, `[1,`,
		"\xEF\xBB\xBF[]", `{"contacts":null,"x":[]}`, `"\u00e9"`, "[\"\xff\"]",
	} {
		f.Add([]byte(s), "")
		f.Add([]byte(s), "a.b")
	}
	f.Fuzz(func(t *testing.T, body []byte, recordsPath string) {
		res := &Resource{}
		if fp, err := ParseFieldPath(recordsPath); err == nil {
			res.RecordsPath = fp
		}
		recs, err := ExtractRecords(body, res, "contacts")
		if err != nil {
			msg := err.Error()
			if msg == "" || strings.Contains(msg, "\n") || len(msg) > 400+len(recordsPath) {
				t.Fatalf("error not one short line: %q", msg)
			}
			doc := bytes.TrimPrefix(body, utf8BOM)
			if !jsondepth.Exceeds(doc, MaxResponseDepth) && errors.Is(err, ErrMalformedJSON) == json.Valid(doc) {
				t.Fatalf("error %q for a body json.Valid says is %v", msg, json.Valid(doc))
			}
			return
		}
		for _, r := range recs {
			if !strings.Contains(string(body), r) {
				t.Fatalf("record %q is not a part of the body", r)
			}
			if !json.Valid([]byte(r)) {
				t.Fatalf("record %q is not valid JSON", r)
			}
		}
	})
}
