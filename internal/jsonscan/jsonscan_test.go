package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/pollhook/pollhook/internal/jsondepth"
)

func TestScanLocatesTheTopValues(t *testing.T) {
	t.Parallel()
	data := []byte(` { "a" : [ 1 , {"b":[2]} ,"x" ] , "k\"e" :{"c":[3]}, "e":[] } `)
	doc, err := Scan(data, 10)
	if err != nil {
		t.Fatal(err)
	}
	text := func(s Span) string { return string(data[s.Start:s.End]) }
	texts := func(spans []Span) []string {
		out := []string{}
		for _, s := range spans {
			out = append(out, text(s))
		}
		return out
	}
	if got, want := text(doc.Root), strings.TrimSpace(string(data)); got != want {
		t.Errorf("root %q, want %q", got, want)
	}
	var got [][]string
	for _, m := range doc.Members {
		got = append(got, append([]string{text(m.Key), text(m.Value)}, texts(m.Elements)...))
	}
	want := [][]string{
		{"a", `[ 1 , {"b":[2]} ,"x" ]`, "1", `{"b":[2]}`, `"x"`},
		{`k\"e`, `{"c":[3]}`},
		{"e", "[]"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("members %q, want %q", got, want)
	}
	if doc.Elements != nil {
		t.Errorf("elements %v for an object", doc.Elements)
	}

	data = []byte(`[{"id":1}, [2,[3]] ,"s",-1.5e3,true,null]`)
	if doc, err = Scan(data, 10); err != nil {
		t.Fatal(err)
	}
	if got, want := texts(doc.Elements), []string{`{"id":1}`, `[2,[3]]`, `"s"`, `-1.5e3`, `true`, `null`}; !reflect.DeepEqual(got, want) {
		t.Errorf("elements %q, want %q", got, want)
	}
}

func TestScanRefusesInvalidAndDeepTexts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		data  string
		limit int
		want  error
	}{
		{``, 10, ErrSyntax},
		{` `, 10, ErrSyntax},
		{`[1,]`, 10, ErrSyntax},
		{`{"a":1,}`, 10, ErrSyntax},
		{`{"a" 1}`, 10, ErrSyntax},
		{`{1:1}`, 10, ErrSyntax},
		{`[1 2]`, 10, ErrSyntax},
		{`[1}`, 10, ErrSyntax},
		{`01`, 10, ErrSyntax},
		{`-`, 10, ErrSyntax},
		{`1.`, 10, ErrSyntax},
		{`1e+`, 10, ErrSyntax},
		{`"\x"`, 10, ErrSyntax},
		{`"\u12g4"`, 10, ErrSyntax},
		{"\"a\tb\"", 10, ErrSyntax},
		{"[\"a string longer than sixteen bytes\x01\"]", 10, ErrSyntax},
		{`["a string longer than sixteen bytes \"\\\/\b\f\n\r\t\u00e9 and more"]`, 10, nil},
		{`tru`, 10, ErrSyntax},
		{`[1] x`, 10, ErrSyntax},
		{`[[[]]]`, 2, ErrTooDeep},
		{`[[[]]]`, 3, nil},
		{`[{"a":[[1]]}]`, 3, ErrTooDeep},
		{`x[[[`, 2, ErrSyntax},
		{`[[[x`, 2, ErrTooDeep},
		{strings.Repeat("[", 1_000_000), 10_000, ErrTooDeep},
	} {
		if _, err := Scan([]byte(tc.data), tc.limit); !errors.Is(err, tc.want) {
			t.Errorf("Scan(%.40q, %d) = %v, want %v", tc.data, tc.limit, err, tc.want)
		}
	}
}

// FuzzScan compares Scan with encoding/json.Valid (which refuses texts
// nested more than 10,000 levels too), its depth bound with jsondepth, and
// what it locates with gjson's reading of the same text.
func FuzzScan(f *testing.F) {
	for _, s := range []string{
		`{"contacts":[{"id":1,"a":[1,{"b":null}]},{"id":"x\"y"}],"n":-0.5e-3,"t":true,"e":[]}`,
		` [ 1 , "a\u00e9\\" , [ [ ] ] , { } ] `, `"\ud800"`, "\"\xff\"", `{"a\\":[1,]}`, `[1e+5,`, `0`,
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, limit uint8) {
		doc, err := Scan(data, 10_000)
		if valid := json.Valid(data); (err == nil) != valid || valid != gjson.ValidBytes(data) {
			t.Fatalf("Scan error %v; json.Valid %v, gjson.ValidBytes %v", err, valid, gjson.ValidBytes(data))
		}
		deep := jsondepth.Exceeds(data, int(limit))
		switch _, small := Scan(data, int(limit)); {
		case err == nil && (errors.Is(small, ErrTooDeep) != deep || !deep && small != nil),
			err != nil && (errors.Is(small, ErrTooDeep) && !deep || !deep && !errors.Is(small, ErrSyntax)):
			t.Fatalf("limit %d: %v; the text is valid: %v, nests deeper: %v", limit, small, err == nil, deep)
		}
		if err != nil {
			return
		}
		text := func(s Span) string { return string(data[s.Start:s.End]) }
		if got := text(doc.Root); got != string(bytes.TrimSpace(data)) {
			t.Fatalf("root %q", got)
		}
		root := gjson.ParseBytes(data)
		if !root.IsObject() && doc.Members != nil {
			t.Fatalf("members %v outside an object", doc.Members)
		}
		root.ForEach(func(k, v gjson.Result) bool {
			if !root.IsObject() {
				return false
			}
			if len(doc.Members) == 0 {
				t.Fatalf("gjson reads a member more: %s", k.Raw)
			}
			m := doc.Members[0]
			doc.Members = doc.Members[1:]
			if `"`+text(m.Key)+`"` != k.Raw || text(m.Value) != v.Raw {
				t.Fatalf("member %q: %q, gjson reads %s: %q", text(m.Key), text(m.Value), k.Raw, v.Raw)
			}
			checkElements(t, data, m.Elements, v)
			return true
		})
		if len(doc.Members) != 0 {
			t.Fatalf("%d members more than gjson reads", len(doc.Members))
		}
		checkElements(t, data, doc.Elements, root)
	})
}

// checkElements compares the elements Scan located with gjson's reading of
// the same value (none when it is not an array).
func checkElements(t *testing.T, data []byte, got []Span, v gjson.Result) {
	t.Helper()
	var texts, want []string
	for _, s := range got {
		texts = append(texts, string(data[s.Start:s.End]))
	}
	if v.IsArray() {
		v.ForEach(func(_, e gjson.Result) bool {
			want = append(want, e.Raw)
			return true
		})
	}
	if !reflect.DeepEqual(texts, want) {
		t.Fatalf("elements %q, gjson reads %q", texts, want)
	}
}
