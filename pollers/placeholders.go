package pollers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Template is a URL or body string with placeholders, compiled once by
// ParseTemplate. The zero value expands to "". Safe for concurrent use.
type Template struct {
	src   string
	parts []tplPart
}

type tplKind uint8

const (
	tplLiteral tplKind = iota
	tplDate            // format in loc
	tplEpoch           // unit
)

type tplPart struct {
	kind   tplKind
	lit    string
	format DateFormat
	loc    *time.Location
	unit   epochUnit
	query  bool // lands after '?' or '#': query escaping
}

// ParseTemplate compiles s. Placeholders (names case-insensitive):
// ${gmtDate:FORMAT} and ${date:FORMAT} (UTC), ${dateTimeZone:ZONE:FORMAT}
// (ZONE as ParseZone reads it, itself possibly containing ':', e.g. -8:00),
// ${epoch} (milliseconds), ${epoch:s}, ${epoch:ms}, ${epoch:us}. FORMAT is a
// Java date pattern (ParseDateFormat) and may contain ':' and quoted text,
// including a quoted '}'. A '$' not followed by '{' is literal. An unclosed
// "${", an unknown name or unit, a missing or invalid format or zone is an
// error naming the placeholder. Text without placeholders is a valid
// template.
func ParseTemplate(s string) (Template, error) {
	t := Template{src: s}
	var lit strings.Builder
	query := false
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, tplPart{kind: tplLiteral, lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		if !strings.HasPrefix(s[i:], "${") {
			if s[i] == '?' || s[i] == '#' {
				query = true
			}
			lit.WriteByte(s[i])
			i++
			continue
		}
		end := closingBrace(s, i+2)
		if end < 0 {
			return Template{}, fmt.Errorf("unclosed placeholder %q at position %d (expected a closing '}')", s[i:], i+1)
		}
		whole := s[i : end+1]
		p, err := parsePlaceholder(s[i+2 : end])
		if err != nil {
			return Template{}, fmt.Errorf("placeholder %q: %w", whole, err)
		}
		p.query = query
		flush()
		t.parts = append(t.parts, p)
		i = end + 1
	}
	flush()
	return t, nil
}

// closingBrace finds the '}' that closes a placeholder whose body starts at
// from, skipping '}' inside Java single-quoted text; -1 when there is none.
func closingBrace(s string, from int) int {
	quoted := false
	for j := from; j < len(s); j++ {
		switch s[j] {
		case '\'':
			quoted = !quoted
		case '}':
			if !quoted {
				return j
			}
		}
	}
	return -1
}

func parsePlaceholder(body string) (tplPart, error) {
	name, arg, hasArg := strings.Cut(body, ":")
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "epoch":
		if !hasArg {
			return tplPart{kind: tplEpoch, unit: epochMillis}, nil
		}
		switch strings.ToLower(strings.TrimSpace(arg)) {
		case "s":
			return tplPart{kind: tplEpoch, unit: epochSeconds}, nil
		case "ms":
			return tplPart{kind: tplEpoch, unit: epochMillis}, nil
		case "us":
			return tplPart{kind: tplEpoch, unit: epochMicros}, nil
		}
		return tplPart{}, fmt.Errorf("unknown epoch unit %q (expected s, ms or us)", arg)
	case "gmtdate", "date":
		if strings.TrimSpace(arg) == "" {
			return tplPart{}, fmt.Errorf("missing date format (expected ${%s:yyyy-MM-dd'T'HH:mm:ss'Z'})", name)
		}
		f, err := ParseDateFormat(arg)
		if err != nil {
			return tplPart{}, err
		}
		return tplPart{kind: tplDate, format: f, loc: time.UTC}, nil
	case "datetimezone":
		if !hasArg || strings.TrimSpace(arg) == "" {
			return tplPart{}, fmt.Errorf("missing zone and date format (expected ${%s:ZONE:FORMAT})", name)
		}
		// The zone may itself contain ':' (-8:00): take the longest prefix
		// that is a zone and leaves a valid format.
		var fmtErr error
		for k := strings.LastIndexByte(arg, ':'); k >= 0; k = strings.LastIndexByte(arg[:k], ':') {
			loc, zerr := ParseZone(arg[:k])
			if zerr != nil {
				continue
			}
			f, ferr := ParseDateFormat(arg[k+1:])
			if strings.TrimSpace(arg[k+1:]) == "" {
				ferr = fmt.Errorf("missing date format after zone %q", arg[:k])
			}
			if ferr != nil {
				if fmtErr == nil {
					fmtErr = ferr
				}
				continue
			}
			return tplPart{kind: tplDate, format: f, loc: loc}, nil
		}
		if fmtErr != nil {
			return tplPart{}, fmtErr
		}
		zone, _, hasFormat := strings.Cut(arg, ":")
		if !hasFormat {
			return tplPart{}, fmt.Errorf("missing zone or date format (expected ${%s:ZONE:FORMAT})", name)
		}
		_, zerr := ParseZone(zone)
		return tplPart{}, zerr
	}
	return tplPart{}, fmt.Errorf("unknown placeholder %q (expected gmtDate, date, dateTimeZone or epoch)", name)
}

// String returns the template text as given to ParseTemplate.
func (t Template) String() string { return t.src }

// IsZero reports whether t is empty.
func (t Template) IsZero() bool { return t.src == "" }

// HasPlaceholders reports whether t contains at least one placeholder.
func (t Template) HasPlaceholders() bool {
	for _, p := range t.parts {
		if p.kind != tplLiteral {
			return true
		}
	}
	return false
}

// Expand fills the placeholders with at (callers pass watermark − pollDelay −
// overlap, see Resource.Since) for use as a URL: a value after '?' or '#' is
// escaped as url.QueryEscape does ('+' → %2B, ':' → %3A, ' ' → +), one
// before it as url.PathEscape does. Literal text is left as written.
func (t Template) Expand(at time.Time) string {
	return t.expand(at, true)
}

// ExpandText fills the placeholders with at without any escaping: for
// request bodies and other non-URL text.
func (t Template) ExpandText(at time.Time) string {
	return t.expand(at, false)
}

func (t Template) expand(at time.Time, escape bool) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.kind == tplLiteral {
			b.WriteString(p.lit)
			continue
		}
		v := p.value(at)
		switch {
		case !escape:
			b.WriteString(v)
		case p.query:
			b.WriteString(url.QueryEscape(v))
		default:
			b.WriteString(url.PathEscape(v))
		}
	}
	return b.String()
}

func (p tplPart) value(at time.Time) string {
	if p.kind == tplEpoch {
		switch p.unit {
		case epochSeconds:
			return strconv.FormatInt(at.Unix(), 10)
		case epochMicros:
			return strconv.FormatInt(at.UnixMicro(), 10)
		default:
			return strconv.FormatInt(at.UnixMilli(), 10)
		}
	}
	return p.format.Format(at.In(p.loc))
}

// Body is a POST poll's request body: a JSON value whose strings are
// templates. The zero value means no body. Safe for concurrent use.
type Body struct {
	root *bodyNode
}

type bodyNode struct {
	raw  []byte // literal JSON (numbers, booleans, null)
	str  *Template
	arr  []*bodyNode
	keys []string // sorted object keys
	obj  map[string]*bodyNode
	// isObj/isArr distinguish empty containers from literals.
	isObj, isArr bool
}

// ParseBody compiles a JSON value as decoded by encoding/json (nil, bool,
// float64, json.Number, string, []any, map[string]any); every string in it,
// at any depth, is a template. A nil value is no body. Errors name the
// position, e.g. `filter.since: placeholder "${x}": ...`.
func ParseBody(v any) (Body, error) {
	if v == nil {
		return Body{}, nil
	}
	n, err := compileBody(v, "")
	if err != nil {
		return Body{}, err
	}
	return Body{root: n}, nil
}

func compileBody(v any, at string) (*bodyNode, error) {
	where := func(err error) error {
		if at == "" {
			return err
		}
		return fmt.Errorf("%s: %w", at, err)
	}
	join := func(k string) string {
		if at == "" {
			return k
		}
		return at + "." + k
	}
	switch x := v.(type) {
	case string:
		t, err := ParseTemplate(x)
		if err != nil {
			return nil, where(err)
		}
		return &bodyNode{str: &t}, nil
	case []any:
		n := &bodyNode{isArr: true}
		for i, e := range x {
			c, err := compileBody(e, fmt.Sprintf("%s[%d]", at, i))
			if err != nil {
				return nil, err
			}
			n.arr = append(n.arr, c)
		}
		return n, nil
	case map[string]any:
		n := &bodyNode{isObj: true, obj: make(map[string]*bodyNode, len(x))}
		for k, e := range x {
			c, err := compileBody(e, join(k))
			if err != nil {
				return nil, err
			}
			n.keys = append(n.keys, k)
			n.obj[k] = c
		}
		sort.Strings(n.keys)
		return n, nil
	default:
		raw, err := json.Marshal(x)
		if err != nil {
			return nil, where(fmt.Errorf("not a JSON value: %v", err))
		}
		return &bodyNode{raw: raw}, nil
	}
}

// IsZero reports whether there is no body.
func (b Body) IsZero() bool { return b.root == nil }

// IsText reports whether the body is a JSON string: Expand then returns the
// string itself, not JSON.
func (b Body) IsText() bool { return b.root != nil && b.root.str != nil }

// Expand returns the request body for a poll at at: for an object or array,
// the JSON text with each string's placeholders expanded (no URL escaping,
// JSON-escaped, object keys sorted); for a string body, the expanded string
// itself, sent as it is (a client that writes the JSON document as a string
// gets that document). nil when there is no body.
func (b Body) Expand(at time.Time) []byte {
	if b.root == nil {
		return nil
	}
	if b.root.str != nil {
		return []byte(b.root.str.ExpandText(at))
	}
	var buf bytes.Buffer
	b.root.write(&buf, at)
	return buf.Bytes()
}

func (n *bodyNode) write(buf *bytes.Buffer, at time.Time) {
	switch {
	case n.str != nil:
		writeJSONString(buf, n.str.ExpandText(at))
	case n.isArr:
		buf.WriteByte('[')
		for i, c := range n.arr {
			if i > 0 {
				buf.WriteByte(',')
			}
			c.write(buf, at)
		}
		buf.WriteByte(']')
	case n.isObj:
		buf.WriteByte('{')
		for i, k := range n.keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSONString(buf, k)
			buf.WriteByte(':')
			n.obj[k].write(buf, at)
		}
		buf.WriteByte('}')
	default:
		buf.Write(n.raw)
	}
}

func writeJSONString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)           // a string always encodes
	buf.Truncate(buf.Len() - 1) // Encode's newline
}
