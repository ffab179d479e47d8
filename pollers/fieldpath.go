package pollers

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/pollhook/pollhook/internal/jsonscan"
)

// FieldPath is a compiled path into a JSON record. The zero value is "not
// configured": IsZero reports it and Get returns a missing result. Safe for
// concurrent use.
type FieldPath struct {
	src   string
	gjson string
	first string // the first key, unescaped
	rest  string // the gjson path after the first key; "" when none
}

// ParseFieldPath compiles a path of dot-separated keys and brackets:
// properties.lastmodified, ['Modified Time'], items[0].id, a["b.c"], with an
// optional leading "$." as JSONPath writes it. Quoted keys may contain any
// character; a backslash escapes the next one. [N] indexes an array (on an
// object it reads the key "N"). Every other character of an unquoted key is
// literal (gjson's wildcards and modifiers are escaped). An empty path, an
// empty key, an unclosed bracket or quote is an error.
func ParseFieldPath(s string) (FieldPath, error) {
	bad := func(format string, a ...any) (FieldPath, error) {
		return FieldPath{}, fmt.Errorf("invalid field path %q: "+format, append([]any{s}, a...)...)
	}
	if strings.TrimSpace(s) == "" {
		return FieldPath{}, errors.New("empty field path")
	}
	rest := s
	if rest == "$" {
		return bad("no field after $")
	}
	if strings.HasPrefix(rest, "$.") || strings.HasPrefix(rest, "$[") {
		rest = strings.TrimPrefix(rest[1:], ".")
	}
	var comps, raw []string // gjson-escaped and as written
	expectKey := true       // at the start or after '.'
	for i := 0; i < len(rest); {
		c := rest[i]
		switch {
		case c == '[':
			j := i + 1
			if j < len(rest) && (rest[j] == '\'' || rest[j] == '"') {
				q := rest[j]
				var key strings.Builder
				k := j + 1
				for ; k < len(rest) && rest[k] != q; k++ {
					if rest[k] == '\\' && k+1 < len(rest) {
						k++
					}
					key.WriteByte(rest[k])
				}
				if k >= len(rest) {
					return bad("unclosed quote at position %d", j+1)
				}
				if k+1 >= len(rest) || rest[k+1] != ']' {
					return bad("expected ']' at position %d", k+2)
				}
				if key.Len() == 0 {
					return bad("empty key at position %d", i+1)
				}
				comps, raw = append(comps, gjson.Escape(key.String())), append(raw, key.String())
				i = k + 2
			} else {
				k := strings.IndexByte(rest[j:], ']')
				if k < 0 {
					return bad("unclosed '[' at position %d", i+1)
				}
				idx := strings.TrimSpace(rest[j : j+k])
				if idx == "" || !allDigits(idx) {
					return bad("expected an index or a quoted key in brackets at position %d, got [%s]", i+1, rest[j:j+k])
				}
				comps, raw = append(comps, idx), append(raw, idx)
				i = j + k + 1
			}
			expectKey = false
		case c == '.':
			if expectKey {
				return bad("empty key at position %d", i+1)
			}
			expectKey = true
			i++
			if i == len(rest) {
				return bad("ends with '.'")
			}
		default:
			if !expectKey {
				return bad("expected '.' or '[' at position %d", i+1)
			}
			j := i
			for j < len(rest) && rest[j] != '.' && rest[j] != '[' {
				j++
			}
			comps, raw = append(comps, gjson.Escape(rest[i:j])), append(raw, rest[i:j])
			expectKey = false
			i = j
		}
	}
	if len(comps) == 0 {
		return bad("no field")
	}
	return FieldPath{src: s, gjson: strings.Join(comps, "."), first: raw[0], rest: strings.Join(comps[1:], ".")}, nil
}

// String returns the path as given to ParseFieldPath.
func (p FieldPath) String() string { return p.src }

// GJSON returns the compiled gjson path.
func (p FieldPath) GJSON() string { return p.gjson }

// IsZero reports whether p is the zero FieldPath.
func (p FieldPath) IsZero() bool { return p.gjson == "" }

// Get reads the path from a JSON document (a record's Raw text); the result
// does not exist when the path is missing or p is zero. To read several
// paths of one record, Values does it in one pass.
func (p FieldPath) Get(json string) gjson.Result {
	if p.gjson == "" {
		return gjson.Result{}
	}
	return gjson.Get(json, p.gjson)
}

// maxValuePaths is how many paths Values reads in one pass.
const maxValuePaths = 5

// Values are the values at up to maxValuePaths field paths of one JSON
// object, read by one pass over its top-level keys (gjson.Get would scan
// the record again for each path). Make them with ReadValues.
type Values struct {
	record string
	keys   [maxValuePaths]string // first keys to find
	vals   [maxValuePaths]gjson.Result
	n      int
}

// ReadValues reads record's values at paths (zero paths are skipped; more
// than maxValuePaths are read by Get when asked). Values.Get answers what
// FieldPath.Get would, duplicated keys included.
func ReadValues(record string, paths ...FieldPath) Values {
	v := Values{record: record}
	for _, p := range paths {
		if p.IsZero() || v.n == maxValuePaths || v.index(p.first) >= 0 {
			continue
		}
		v.keys[v.n] = p.first
		v.n++
	}
	if v.n > 0 && !v.readMembers() {
		v.vals = [maxValuePaths]gjson.Result{}
		v.readMembersWithGJSON()
	}
	return v
}

// readMembers reads the values of v's keys in one pass over the members
// of v.record, a JSON object, finding what gjson finds: it delimits each
// value as gjson does without parsing it. It returns false, having read
// nothing reliable, for a record that is not an object laid out as JSON
// (keys, colons, commas and spaces between values), with a string that
// is not valid JSON, or with a value gjson would delimit otherwise.
func (v *Values) readMembers() bool {
	s := v.record
	var found [maxValuePaths]bool
	left := v.n
	i := skipJSONSpace(s, 0)
	if i == len(s) || s[i] != '{' {
		return false
	}
	i = skipJSONSpace(s, i+1)
	if i < len(s) && s[i] == '}' {
		return skipJSONSpace(s, i+1) == len(s)
	}
	for {
		if i == len(s) || s[i] != '"' {
			return false
		}
		keyEnd, escaped, ok := jsonscan.SkipString(s, i)
		if !ok {
			return false
		}
		key := s[i+1 : keyEnd-1]
		if escaped {
			key = gjson.Parse(s[i:keyEnd]).Str
		}
		i = skipJSONSpace(s, keyEnd)
		if i == len(s) || s[i] != ':' {
			return false
		}
		i = skipJSONSpace(s, i+1)
		end, ok := valueEnd(s, i)
		if !ok {
			return false
		}
		for k := range v.n {
			if !found[k] && key == v.keys[k] {
				found[k], v.vals[k] = true, valueAt(s, i, end)
				left--
				break
			}
		}
		if left == 0 {
			return true
		}
		i = skipJSONSpace(s, end)
		switch {
		case i < len(s) && s[i] == ',':
			i = skipJSONSpace(s, i+1)
		case i < len(s) && s[i] == '}':
			return skipJSONSpace(s, i+1) == len(s)
		default:
			return false
		}
	}
}

// readMembersWithGJSON is readMembers for any record.
func (v *Values) readMembersWithGJSON() {
	var found [maxValuePaths]bool
	left := v.n
	gjson.Parse(v.record).ForEach(func(k, val gjson.Result) bool {
		for i := range v.n {
			if !found[i] && k.Str == v.keys[i] {
				found[i], v.vals[i] = true, val
				left--
				break
			}
		}
		return left > 0
	})
}

// valueEnd returns the end of the value that starts at s[i], as gjson
// delimits it: a string at its closing quote; an array or object at the
// bracket that closes it, counting brackets outside strings (a parenthesis,
// which gjson counts too, is refused); a number at the next space, comma or
// closing bracket; true, false and null at the next byte that is not a
// lowercase letter. ok is false when there is no end, s[i] starts no value
// or a string in the value is not valid JSON.
func valueEnd(s string, i int) (end int, ok bool) {
	if i == len(s) {
		return i, false
	}
	switch c := s[i]; {
	case c == '"':
		end, _, ok := jsonscan.SkipString(s, i)
		return end, ok
	case c == '{' || c == '[':
		depth := 0
		for ; i < len(s); i++ {
			if !squashStops[s[i]] {
				continue
			}
			switch s[i] {
			case '"':
				if i, _, ok = jsonscan.SkipString(s, i); !ok {
					return i, false
				}
				i--
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1, true
				}
			case '(', ')':
				return i, false
			}
		}
		return i, false
	case isLiteral(s, i):
		for i++; i < len(s) && s[i] >= 'a' && s[i] <= 'z'; i++ {
		}
		return i, true
	case c == '+' || c == '-' || isDigit(c) || c == 'i' || c == 'I' || c == 'N' || c == 'n':
		for i++; i < len(s) && s[i] > ' ' && s[i] != ',' && s[i] != ']' && s[i] != '}'; i++ {
		}
		return i, true
	}
	return i, false
}

// squashStops are the bytes valueEnd stops at in an array or object.
var squashStops = [256]bool{'"': true, '{': true, '[': true, '}': true, ']': true, '(': true, ')': true}

// isLiteral reports whether gjson reads the value at s[i] as true, false
// or null (an n not followed by u is a number to it: NaN).
func isLiteral(s string, i int) bool {
	return s[i] == 't' || s[i] == 'f' || (s[i] == 'n' && (i+1 == len(s) || s[i+1] == 'u'))
}

// valueAt is the gjson.Result that gjson's ForEach gives for the value
// s[start:end] of a member of the object s.
func valueAt(s string, start, end int) gjson.Result {
	r := gjson.Result{Raw: s[start:end], Index: start}
	switch c := s[start]; {
	case c == '{' || c == '[':
		r.Type = gjson.JSON
	case c == '"':
		r.Type, r.Str = gjson.String, r.Raw[1:len(r.Raw)-1]
		if strings.IndexByte(r.Str, '\\') >= 0 {
			r.Str = gjson.Parse(r.Raw).Str
		}
	case c == 't':
		r.Type = gjson.True
	case c == 'f':
		r.Type = gjson.False
	case isLiteral(s, start):
		r.Type = gjson.Null
	case len(r.Raw) <= 15 && allDigits(r.Raw): // exact in a float64, as ParseFloat reads it
		r.Type, r.Num = gjson.Number, float64(digitsValue(r.Raw))
	default:
		r.Type = gjson.Number
		r.Num, _ = strconv.ParseFloat(r.Raw, 64)
	}
	return r
}

// skipJSONSpace returns the index of the first byte at or after s[i] that
// is not JSON whitespace.
func skipJSONSpace(s string, i int) int {
	for i < len(s) && s[i] <= ' ' && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t') {
		i++
	}
	return i
}

func (v *Values) index(key string) int {
	for i := range v.n {
		if v.keys[i] == key {
			return i
		}
	}
	return -1
}

// Get is p.Get(record), from what ReadValues read.
func (v *Values) Get(p FieldPath) gjson.Result {
	if p.IsZero() {
		return gjson.Result{}
	}
	i := v.index(p.first)
	if i < 0 {
		return p.Get(v.record)
	}
	if p.rest == "" {
		return v.vals[i]
	}
	if r := v.vals[i].Get(p.rest); r.Exists() {
		return r
	}
	// gjson goes on to a later duplicate of the first key when the rest of
	// the path is missing in this one.
	return p.Get(v.record)
}
