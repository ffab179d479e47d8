package pollers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/pollhook/pollhook/internal/jsondepth"
	"github.com/pollhook/pollhook/internal/jsonscan"
)

// ErrMalformedJSON is wrapped by ExtractRecords (and so FetchPages) when a
// response body is not valid JSON.
var ErrMalformedJSON = errors.New("malformed JSON")

// MaxResponseDepth is how deeply a response body may nest arrays and
// objects. Deeper bodies fail the poll of the resource: encoding/json would
// refuse their records when events are encoded, and gjson's recursion over
// millions of levels (a 12 MB body, well within MaxPageBytes) overflows the
// goroutine stack, which kills the whole process.
const MaxResponseDepth = 10000

// utf8BOM is skipped at the start of a body: some upstreams send one.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// ExtractRecords returns the records of one page of a poll of resource
// resourceName, each as the exact JSON text the upstream sent (gjson's Raw:
// whitespace, key order and escapes untouched, never re-encoded).
//
// Where the records are:
//   - res.RecordsPath when set: an array there gives its elements, an object
//     one record (XML-to-JSON upstreams write a lone element so); a missing
//     or null value is zero records (upstreams that omit empty arrays);
//     anything else is an error;
//   - else the body itself when it is an array;
//   - else, in an object, the field named resourceName (exactly, then
//     ignoring case) when it is an array or null;
//   - else the object's first array field; an object with none is an error
//     (a 200 carrying an error message must not pass for "no changes").
//
// An empty body (or only whitespace) and a null body are zero records. A
// body that is not valid JSON is an error wrapping ErrMalformedJSON that
// gives the byte offset and a short excerpt; one nesting deeper than
// MaxResponseDepth is an error too. A nil res means no
// recordsPath. Safe for concurrent use. The returned strings share body's
// memory, uncopied: body must not change while they are in use (FetchPages
// reads each page into a buffer of its own).
func ExtractRecords(body []byte, res *Resource, resourceName string) ([]string, error) {
	body = bytes.TrimPrefix(body, utf8BOM)
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	scan, err := jsonscan.Scan(body, MaxResponseDepth)
	if err != nil {
		// Scan stops at the first fault; a body nested too deep is refused
		// as such even when a syntax error comes first.
		if errors.Is(err, jsonscan.ErrTooDeep) || jsondepth.Exceeds(body, MaxResponseDepth) {
			return nil, fmt.Errorf("the response nests arrays and objects more than %d levels deep: %s", MaxResponseDepth, excerptAt(body, 0))
		}
		return nil, malformed(body)
	}
	doc := unsafe.String(unsafe.SliceData(body), len(body)) // body is not changed: see above
	if res != nil && !res.RecordsPath.IsZero() {
		v := res.RecordsPath.Get(doc)
		switch {
		case !v.Exists() || v.Type == gjson.Null:
			return nil, nil
		case v.IsArray():
			return elements(v), nil
		case v.IsObject():
			return []string{v.Raw}, nil
		}
		return nil, fmt.Errorf("recordsPath %s: expected an array of records, got %s", res.RecordsPath, describe(v))
	}
	switch doc[scan.Root.Start] {
	case 'n':
		return nil, nil
	case '[':
		return texts(doc, scan.Elements), nil
	case '{': // the records are in one of its members
	default:
		return nil, fmt.Errorf("expected an array of records or an object holding one, got %s", describe(gjson.Parse(doc)))
	}
	exact, folded, first := -1, -1, -1
	for i, m := range scan.Members {
		isArray := doc[m.Value.Start] == '['
		if (isArray || doc[m.Value.Start] == 'n') && resourceName != "" {
			key := memberKey(doc, m.Key)
			if key == resourceName {
				exact = i
				break
			}
			if folded < 0 && strings.EqualFold(key, resourceName) {
				folded = i
			}
		}
		if isArray && first < 0 {
			first = i
		}
	}
	for _, i := range []int{exact, folded, first} {
		if i >= 0 {
			return texts(doc, scan.Members[i].Elements), nil
		}
	}
	return nil, fmt.Errorf("no array of records in the response object (expected the body to be an array, a field %q, or any array field; set recordsPath): %s",
		resourceName, excerptAt(body, 0))
}

// texts returns the pieces of doc at spans; nil for none.
func texts(doc string, spans []jsonscan.Span) []string {
	if len(spans) == 0 {
		return nil
	}
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = doc[s.Start:s.End]
	}
	return out
}

// memberKey returns the key at span (between its quotes), unescaped.
func memberKey(doc string, span jsonscan.Span) string {
	key := doc[span.Start:span.End]
	if strings.IndexByte(key, '\\') >= 0 {
		return gjson.Parse(doc[span.Start-1 : span.End+1]).Str
	}
	return key
}

// elements returns the Raw text of each element of an array.
func elements(arr gjson.Result) []string {
	var out []string
	arr.ForEach(func(_, e gjson.Result) bool {
		out = append(out, e.Raw)
		return true
	})
	return out
}

// describe names a JSON value's type for messages.
func describe(v gjson.Result) string {
	switch {
	case v.IsObject():
		return "an object"
	case v.IsArray():
		return "an array"
	case v.Type == gjson.String:
		return "a string"
	case v.Type == gjson.Number:
		return "a number"
	case v.Type == gjson.True || v.Type == gjson.False:
		return "a boolean"
	}
	return "null"
}

// malformed builds the error for a body gjson refused, locating the fault
// with encoding/json (only on this error path).
func malformed(body []byte) error {
	var raw json.RawMessage
	err := json.Unmarshal(body, &raw)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off := int(se.Offset)
		if off > 0 {
			off-- // Offset counts the byte that broke the syntax
		}
		return fmt.Errorf("%w at byte %d (%s) near %s", ErrMalformedJSON, off, se.Error(), excerptAt(body, off))
	}
	// encoding/json accepts what gjson refused (e.g. control characters
	// in strings): no offset to give.
	return fmt.Errorf("%w: %s", ErrMalformedJSON, excerptAt(body, 0))
}

// excerptLen bounds excerpts of bodies in messages.
const excerptLen = 80

// excerptAt is excerptText(body, off) in backquotes.
func excerptAt(body []byte, off int) string {
	return "`" + excerptText(body, off) + "`"
}

// excerptText returns up to excerptLen bytes of body around off as valid
// UTF-8 on one line, with "…" where it was cut.
func excerptText(body []byte, off int) string {
	start := max(0, off-excerptLen/2)
	end := min(len(body), start+excerptLen)
	for start > 0 && start < len(body) && !utf8.RuneStart(body[start]) {
		start--
	}
	s := strings.ToValidUTF8(string(body[start:end]), "\uFFFD")
	prefix, suffix := "", ""
	if start > 0 {
		prefix = "…"
	}
	if end < len(body) {
		suffix = "…"
	}
	return prefix + strings.Join(strings.Fields(s), " ") + suffix
}
