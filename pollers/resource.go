package pollers

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// Problem is one thing wrong with a configuration: Field is a path relative to
// the value that was parsed (e.g. "datesConfiguration.updatedDateFormat"),
// Message says what is wrong in words.
type Problem struct {
	Field   string
	Message string
}

// Defaults are what a connector definition supplies when a resource omits it.
type Defaults struct {
	IDField    string         // used when the resource has no idField
	Pagination map[string]any // used when the resource has no pagination
	RateLimit  float64        // requests per second; 0 = unlimited
}

// Mode says how a resource selects changes.
type Mode string

// Modes of a resource.
const (
	// ModeWindow: the URL selects records by date; pollhook filters them
	// against the watermark window.
	ModeWindow Mode = "window"
	// ModeDelta: the upstream returns only what changed since the last call.
	ModeDelta Mode = "delta"
)

// PaginationType names how the next page is requested (SPEC §3.3).
type PaginationType string

// Pagination types.
const (
	PaginationNone   PaginationType = "none"
	PaginationLink   PaginationType = "link"
	PaginationNext   PaginationType = "next"
	PaginationOffset PaginationType = "offset"
	PaginationPage   PaginationType = "page"
	PaginationCursor PaginationType = "cursor"
	PaginationRepeat PaginationType = "repeat"
)

// Pagination is a validated pagination configuration. Only the parameters
// of its Type are set; the others are zero.
type Pagination struct {
	Type        PaginationType
	NextPath    FieldPath // next: the next page's URL in the body (required)
	OffsetParam string    // offset: query parameter of the offset, from 0 (required)
	LimitParam  string    // offset, page: query parameter of the page size (optional)
	PageParam   string    // page: query parameter of the page number, from 1 (required)
	CursorPath  FieldPath // cursor: the cursor in the body (required)
	CursorParam string    // cursor: query parameter the cursor is sent back as (required)
	MorePath    FieldPath // repeat: a boolean saying whether more is waiting (optional)
	PageSize    int       // records per page; required for offset; 0 = the upstream's choice
}

// DateField says where a record keeps one of its dates and how to read it.
// The zero value is "not configured".
type DateField struct {
	Field  FieldPath
	Format DateFormat
	Zone   *time.Location // for values without a zone; never nil when set (default UTC)
}

// IsSet reports whether the date is configured.
func (d DateField) IsSet() bool { return !d.Field.IsZero() }

// Read reads the date from a record (its JSON text). ok is false and err
// nil when the date is not set on the record: the field is absent, null, ""
// or, with an epoch format, 0. err is set when the value cannot be read.
func (d DateField) Read(record string) (t time.Time, ok bool, err error) {
	if !d.IsSet() {
		return time.Time{}, false, nil
	}
	return d.read(d.Field.Get(record))
}

// read is Read of the value at d.Field.
func (d DateField) read(v gjson.Result) (t time.Time, ok bool, err error) {
	if !d.IsSet() {
		return time.Time{}, false, nil
	}
	switch {
	case !v.Exists() || v.Type == gjson.Null || (v.Type == gjson.String && strings.TrimSpace(v.Str) == ""):
		return time.Time{}, false, nil
	case d.Format.IsEpoch() && strings.TrimSpace(v.String()) == "0":
		return time.Time{}, false, nil
	}
	t, err = d.Format.ParseJSON(v, d.Zone)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("%s: %w", d.Field.String(), err)
	}
	return t, true, nil
}

// Resource is one validated entry of event.poller.configuration. Its values
// are immutable once parsed; safe for concurrent use.
type Resource struct {
	URL          Template  // absolute, or a path appended to the base URL
	Method       string    // "GET" or "POST"
	Body         Body      // POST only; zero = no body
	IDField      FieldPath // the record's id
	Updated      DateField // required unless FilterByUpdatedDate is false
	Created      DateField // required when FilterByUpdatedDate is false
	Deleted      DateField // optional: a record with this date set is DELETED
	VersionField FieldPath // optional

	PollDelay             time.Duration // subtracted from the watermark; default 0
	Overlap               time.Duration // re-read before the watermark; default 60 s
	CreatedCheckTolerance time.Duration // created and updated within this: CREATED; default 0
	FilterByUpdatedDate   bool          // default true
	FilterByCurrentDate   bool          // default false
	Mode                  Mode          // ModeWindow (default) or ModeDelta

	RecordsPath FieldPath  // zero = automatic (SPEC §3 recordsPath)
	Pagination  Pagination // Type PaginationNone when none
	PageSize    int        // 0 = not set
	RateLimit   float64    // upstream requests per second; 0 = unlimited
}

// Since is the date a poll selects from: watermark − PollDelay − Overlap.
// It is the value of the URL's and body's placeholders.
func (r Resource) Since(watermark time.Time) time.Time {
	return watermark.Add(-r.PollDelay - r.Overlap)
}

// EventDate returns the date field that dates a record's change when no
// deleted date is set: Updated, or Created when FilterByUpdatedDate is false.
func (r Resource) EventDate() DateField {
	if r.FilterByUpdatedDate {
		return r.Updated
	}
	return r.Created
}

const (
	defaultOverlap = 60 * time.Second
	maxSeconds     = 1e9 // ~31 years: any larger duration is a mistake
	maxPageSize    = 1000000
	datesKey       = "datesConfiguration"
	dateFormatHelp = "a Java date pattern such as yyyy-MM-dd'T'HH:mm:ss.SSSXXX, or milliseconds or seconds"
)

// ParseResource validates one resource of event.poller.configuration and
// returns every problem found, with field paths relative to the resource
// (the key as the client wrote it: "datesConfiguration.updatedDateFormat",
// or "updatedDateFormat" when it sat at resource level). The Resource is
// meaningful only when there are no problems. It never panics, whatever
// JSON-decoded values raw holds.
//
// Every key may sit at resource level or inside datesConfiguration, and is
// matched ignoring case (updatedDateTimeZone = updatedDateTimezone); set in
// both places with different values, it is a problem on the resource-level
// key. Values may be typed or strings ("60", "true"); empty strings and
// nulls count as absent. Durations are seconds, fractions allowed, never
// negative. Unknown keys are ignored.
func ParseResource(raw map[string]any, defaults Defaults) (Resource, []Problem) {
	p := &resourceParser{raw: raw}
	if k, v, ok := findKey(raw, datesKey); ok && v != nil {
		p.datesKey = k
		if m, ok := asObject(v); ok {
			p.dates = m
		} else {
			p.add(k, "must be an object such as {\"updatedDateField\": \"updated_at\", \"updatedDateFormat\": \"yyyy-MM-dd'T'HH:mm:ssXXX\"}")
		}
	}
	r := Resource{
		Method:              "GET",
		Overlap:             defaultOverlap,
		FilterByUpdatedDate: true,
		Mode:                ModeWindow,
		RateLimit:           defaults.RateLimit,
	}
	p.parseURL(&r)
	p.parseMethodBody(&r)

	s, field, ok := p.str("idField")
	switch {
	case ok:
		r.IDField = p.path(field, s)
	case field != "":
		// present but not a string: already reported
	case strings.TrimSpace(defaults.IDField) != "":
		fp, err := ParseFieldPath(defaults.IDField)
		if err != nil {
			p.add("idField", "the connector's default idField is invalid: "+err.Error())
		}
		r.IDField = fp
	default:
		p.add("idField", "required: the path of the record's id, e.g. \"id\"")
	}

	if v, _, ok := p.boolean("filterByUpdatedDate", "filterByUpdateDate"); ok {
		r.FilterByUpdatedDate = v
	}
	if v, _, ok := p.boolean("filterByCurrentDate"); ok {
		r.FilterByCurrentDate = v
	}
	r.Updated = p.date("updated", r.FilterByUpdatedDate, "unless filterByUpdatedDate is false")
	r.Created = p.date("created", !r.FilterByUpdatedDate, "when filterByUpdatedDate is false")
	r.Deleted = p.date("deleted", false, "")

	if s, field, ok := p.str("versionField"); ok {
		r.VersionField = p.path(field, s)
	}
	if s, field, ok := p.str("recordsPath"); ok {
		r.RecordsPath = p.path(field, s)
	}
	if d, ok := p.seconds("pollDelay"); ok {
		r.PollDelay = d
	}
	if d, ok := p.seconds("overlap"); ok {
		r.Overlap = d
	}
	if d, ok := p.seconds("createdCheckTolerance"); ok {
		r.CreatedCheckTolerance = d
	}
	if s, field, ok := p.str("mode"); ok {
		switch Mode(strings.ToLower(s)) {
		case ModeWindow:
			r.Mode = ModeWindow
		case ModeDelta:
			r.Mode = ModeDelta
		default:
			p.add(field, fmt.Sprintf("unsupported mode %q (expected window or delta)", s))
		}
	}
	if n, field, ok := p.number("rateLimit"); ok {
		if n == 0 || n >= 1e-6 {
			r.RateLimit = n
		} else {
			p.add(field, fmt.Sprintf("must be 0 (unlimited) or at least 0.000001 requests per second, got %v", n))
		}
	}
	r.PageSize = p.pageSize("pageSize")
	p.parsePagination(&r, defaults)

	if len(p.probs) > 0 {
		return r, p.probs
	}
	return r, nil
}

type resourceParser struct {
	raw      map[string]any
	dates    map[string]any
	datesKey string // datesConfiguration as the client wrote it
	probs    []Problem
}

func (p *resourceParser) add(field, msg string) {
	p.probs = append(p.probs, Problem{Field: field, Message: msg})
}

// findKey looks name up in m, exactly first, then ignoring case (the first
// such key in sorted order, for determinism).
func findKey(m map[string]any, name string) (string, any, bool) {
	if v, ok := m[name]; ok {
		return name, v, true
	}
	var keys []string
	for k := range m {
		if strings.EqualFold(k, name) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "", nil, false
	}
	sort.Strings(keys)
	return keys[0], m[keys[0]], true
}

type occurrence struct {
	v     any
	field string
}

// lookup finds the first of names inside datesConfiguration, then at
// resource level. Absent, null and blank-string values do not count. When
// it is set more than once with different values, the later occurrences are
// problems. field is "" when nothing was found.
func (p *resourceParser) lookup(names ...string) (any, string, bool) {
	var occ []occurrence
	scopes := []struct {
		m      map[string]any
		prefix string
	}{{p.dates, p.datesKey + "."}, {p.raw, ""}}
	for _, sc := range scopes {
		if sc.m == nil {
			continue
		}
		for _, n := range names {
			k, v, ok := findKey(sc.m, n)
			if !ok || isBlank(v) {
				continue
			}
			occ = append(occ, occurrence{v, sc.prefix + k})
		}
	}
	if len(occ) == 0 {
		return nil, "", false
	}
	for _, o := range occ[1:] {
		if fmt.Sprint(o.v) != fmt.Sprint(occ[0].v) {
			p.add(o.field, fmt.Sprintf("conflicts with %s (%s, not %s): set it once", occ[0].field, show(occ[0].v), show(o.v)))
		}
	}
	return occ[0].v, occ[0].field, true
}

func isBlank(v any) bool {
	if v == nil {
		return true
	}
	s, ok := v.(string)
	return ok && strings.TrimSpace(s) == ""
}

// show renders a configuration value for a message.
func show(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 80 {
		return string(b[:77]) + "..."
	}
	return string(b)
}

// str reads a string. ok is false when it is absent or not a string (then
// field is set and a problem was added).
func (p *resourceParser) str(names ...string) (string, string, bool) {
	v, field, found := p.lookup(names...)
	if !found {
		return "", "", false
	}
	s, ok := v.(string)
	if !ok {
		p.add(field, "must be a string, got "+show(v))
		return "", field, false
	}
	return strings.TrimSpace(s), field, true
}

// number reads a non-negative finite number, typed or as a string.
func (p *resourceParser) number(names ...string) (float64, string, bool) {
	v, field, found := p.lookup(names...)
	if !found {
		return 0, "", false
	}
	var n float64
	switch x := v.(type) {
	case float64:
		n = x
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			p.add(field, "must be a number, got "+show(v))
			return 0, field, false
		}
		n = f
	case int:
		n = float64(x)
	case int64:
		n = float64(x)
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			p.add(field, "must be a number, got "+show(v))
			return 0, field, false
		}
		n = f
	default:
		p.add(field, "must be a number, got "+show(v))
		return 0, field, false
	}
	if math.IsNaN(n) || math.IsInf(n, 0) {
		p.add(field, "must be a number, got "+show(v))
		return 0, field, false
	}
	if n < 0 {
		p.add(field, "must not be negative, got "+show(v))
		return 0, field, false
	}
	return n, field, true
}

// seconds reads a duration in seconds.
func (p *resourceParser) seconds(name string) (time.Duration, bool) {
	n, field, ok := p.number(name)
	if !ok {
		return 0, false
	}
	if n > maxSeconds {
		p.add(field, fmt.Sprintf("must be at most %d seconds, got %s", int64(maxSeconds), show(n)))
		return 0, false
	}
	return time.Duration(math.Round(n * float64(time.Second))), true
}

// pageSize reads a whole number ≥ 1; 0 when absent or invalid.
func (p *resourceParser) pageSize(names ...string) int {
	n, field, ok := p.number(names...)
	if !ok {
		return 0
	}
	if n < 1 || n != math.Trunc(n) || n > maxPageSize {
		p.add(field, fmt.Sprintf("must be a whole number from 1 to %d, got %s", maxPageSize, show(n)))
		return 0
	}
	return int(n)
}

// boolean reads true/false, typed or as a string (any case).
func (p *resourceParser) boolean(names ...string) (bool, string, bool) {
	v, field, found := p.lookup(names...)
	if !found {
		return false, "", false
	}
	switch x := v.(type) {
	case bool:
		return x, field, true
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true":
			return true, field, true
		case "false":
			return false, field, true
		}
	}
	p.add(field, "must be true or false, got "+show(v))
	return false, field, false
}

// path compiles a field path, reporting a problem on field.
func (p *resourceParser) path(field, s string) FieldPath {
	fp, err := ParseFieldPath(s)
	if err != nil {
		p.add(field, err.Error())
	}
	return fp
}

// sibling is the path of key next to field (in the same scope), or inside
// datesConfiguration when field is "".
func (p *resourceParser) sibling(field, key string) string {
	if field == "" || strings.Contains(field, ".") {
		dk := p.datesKey
		if dk == "" {
			dk = datesKey
		}
		return dk + "." + key
	}
	return key
}

// date reads <kind>DateField, <kind>DateFormat and <kind>DateTimezone.
// required says whether the field and format must be set, why says when.
func (p *resourceParser) date(kind string, required bool, why string) DateField {
	fieldKey, formatKey, zoneKey := kind+"DateField", kind+"DateFormat", kind+"DateTimezone"
	fs, fField, fOK := p.str(fieldKey)
	ms, mField, mOK := p.str(formatKey)
	zs, zField, zOK := p.str(zoneKey)
	d := DateField{Zone: time.UTC}
	if fOK {
		d.Field = p.path(fField, fs)
	}
	if mOK {
		f, err := ParseDateFormat(ms)
		if err != nil {
			p.add(mField, err.Error())
		}
		d.Format = f
	}
	if zOK {
		loc, err := ParseZone(zs)
		if err != nil {
			p.add(zField, err.Error())
		} else {
			d.Zone = loc
		}
	}
	fPresent, mPresent := fOK || fField != "", mOK || mField != ""
	switch {
	case fPresent && !mPresent:
		p.add(p.sibling(fField, formatKey), fmt.Sprintf("required when %s is set (%s)", fieldKey, dateFormatHelp))
	case mPresent && !fPresent:
		p.add(p.sibling(mField, fieldKey), fmt.Sprintf("required when %s is set (the path of the record's %s date)", formatKey, kind))
	case !fPresent && !mPresent && required:
		p.add(p.sibling("", fieldKey), fmt.Sprintf("required %s (the path of the record's %s date)", why, kind))
		p.add(p.sibling("", formatKey), fmt.Sprintf("required %s (%s)", why, dateFormatHelp))
	}
	if d.Field.IsZero() || d.Format.IsZero() {
		return DateField{}
	}
	return d
}

func (p *resourceParser) parseURL(r *Resource) {
	v, field, found := p.lookup("url")
	if !found {
		p.add("url", "required: the upstream URL to poll, absolute or a path appended to the instance's base URL")
		return
	}
	s, ok := v.(string)
	if !ok {
		p.add(field, "must be a string, got "+show(v))
		return
	}
	s = strings.TrimSpace(s)
	t, err := ParseTemplate(s)
	if err != nil {
		p.add(field, err.Error())
		return
	}
	r.URL = t
	path := s
	if i := strings.Index(s, "://"); i >= 0 {
		scheme := strings.ToLower(s[:i])
		if scheme != "http" && scheme != "https" {
			p.add(field, fmt.Sprintf("unsupported scheme %q (expected an http or https URL, or a path appended to the base URL)", s[:i]))
			return
		}
		rest := s[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			path = rest[j:]
		} else {
			path = ""
		}
	}
	if j := strings.IndexAny(path, "?#"); j >= 0 {
		path = path[:j]
	}
	lp := strings.ToLower(path)
	if strings.Contains(lp, "/hubs/") || strings.HasPrefix(lp, "hubs/") || strings.HasSuffix(lp, "/hubs") {
		p.add(field, fmt.Sprintf("%q is an Open Connectors hub path; pollhook polls the upstream's own API, not Open Connectors' hubs: give the upstream's path (e.g. /contacts) or its absolute URL", s))
	}
	if _, err := url.Parse(t.Expand(time.Unix(0, 0).UTC())); err != nil {
		p.add(field, "not a valid URL: "+err.Error())
	}
}

func (p *resourceParser) parseMethodBody(r *Resource) {
	if s, field, ok := p.str("method"); ok {
		switch m := strings.ToUpper(s); m {
		case "GET", "POST":
			r.Method = m
		default:
			p.add(field, fmt.Sprintf("unsupported method %q (expected GET or POST)", s))
			return
		}
	}
	v, field, found := p.lookup("body")
	if !found {
		return
	}
	if m, ok := v.(map[string]any); ok && len(m) == 0 && r.Method != "POST" {
		return // an empty object with GET: nothing to send
	}
	if r.Method != "POST" {
		p.add(field, "a body is only sent with method POST")
		return
	}
	b, err := ParseBody(v)
	if err != nil {
		p.add(field, err.Error())
		return
	}
	r.Body = b
}

var paginationTypes = []PaginationType{PaginationNone, PaginationLink, PaginationNext, PaginationOffset, PaginationPage, PaginationCursor, PaginationRepeat}

const paginationTypeList = "none, link, next, offset, page, cursor or repeat"

func (p *resourceParser) parsePagination(r *Resource, defaults Defaults) {
	r.Pagination = Pagination{Type: PaginationNone, PageSize: r.PageSize}
	v, field, found := p.lookup("pagination")
	if !found {
		if defaults.Pagination == nil {
			return
		}
		v, field = defaults.Pagination, "pagination"
	}
	m, ok := asObject(v)
	if !ok {
		if s, isStr := v.(string); isStr {
			m = map[string]any{"type": s} // "pagination": "link"
		} else {
			p.add(field, "must be an object such as {\"type\": \"next\", \"nextPath\": \"links.next\"}")
			return
		}
	}
	sub := &resourceParser{raw: m}
	prefix := field + "."
	defer func() {
		for _, pr := range sub.probs {
			p.add(prefix+pr.Field, pr.Message)
		}
	}()
	ts, tField, ok := sub.str("type")
	if !ok {
		if tField == "" {
			sub.add("type", "required (one of "+paginationTypeList+")")
		}
		return
	}
	pg := Pagination{}
	for _, t := range paginationTypes {
		if strings.EqualFold(string(t), ts) {
			pg.Type = t
		}
	}
	if pg.Type == "" {
		sub.add(tField, fmt.Sprintf("unsupported type %q (expected %s)", ts, paginationTypeList))
		return
	}
	requiredStr := func(key, what string) string {
		s, f, ok := sub.str(key)
		if !ok && f == "" {
			sub.add(key, fmt.Sprintf("required for pagination type %s (%s)", pg.Type, what))
		}
		return s
	}
	requiredPath := func(key, what string) FieldPath {
		s, f, ok := sub.str(key)
		if !ok {
			if f == "" {
				sub.add(key, fmt.Sprintf("required for pagination type %s (%s)", pg.Type, what))
			}
			return FieldPath{}
		}
		return sub.path(f, s)
	}
	pgSize := sub.pageSize("pageSize")
	switch {
	case pgSize > 0 && r.PageSize > 0 && pgSize != r.PageSize:
		_, f, _ := sub.lookup("pageSize")
		sub.add(f, fmt.Sprintf("conflicts with the resource's pageSize (%d, not %d): set it once", r.PageSize, pgSize))
	case pgSize > 0:
		r.PageSize = pgSize
	}
	switch pg.Type {
	case PaginationNext:
		pg.NextPath = requiredPath("nextPath", "the path of the next page's URL in the response body")
	case PaginationOffset:
		pg.OffsetParam = requiredStr("offsetParam", "the query parameter of the offset")
		if s, _, ok := sub.str("limitParam"); ok {
			pg.LimitParam = s
		}
		if r.PageSize == 0 {
			sub.add("pageSize", "required for pagination type offset (the number of records per page, to detect the last page)")
		}
	case PaginationPage:
		pg.PageParam = requiredStr("pageParam", "the query parameter of the page number, from 1")
		if s, _, ok := sub.str("limitParam"); ok {
			pg.LimitParam = s
		}
	case PaginationCursor:
		pg.CursorPath = requiredPath("cursorPath", "the path of the next cursor in the response body")
		pg.CursorParam = requiredStr("cursorParam", "the query parameter the cursor is sent back as")
	case PaginationRepeat:
		if s, f, ok := sub.str("morePath"); ok {
			pg.MorePath = sub.path(f, s)
		}
	}
	pg.PageSize = r.PageSize
	r.Pagination = pg
}

// asObject accepts an object, or a string holding a JSON object (clients
// send nested configuration both ways).
func asObject(v any) (map[string]any, bool) {
	switch x := v.(type) {
	case map[string]any:
		return x, true
	case string:
		s := strings.TrimSpace(x)
		if !strings.HasPrefix(s, "{") {
			return nil, false
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
			return nil, false
		}
		return m, true
	}
	return nil, false
}

// legacyKeys are the fields of an event.poller.urls line after resource and
// url, in order.
var legacyKeys = []string{"xPathFilter", "updatedDateField", "updatedDateFormat", "updatedDateTimezone", "createdDateField", "createdDateFormat", "createdDateTimezone"}

// ParseLegacyURLs converts the legacy event.poller.urls value, one resource a
// line (resource|url|xPathFilter|updatedDateField|updatedDateFormat|
// updatedDateTimeZone|createdDateField|createdDateFormat|createdDateTimeZone;
// trailing fields may be left out), into event.poller.configuration
// resources ready for ParseResource: {"url", "datesConfiguration": {...}},
// with empty fields left out and no idField (the caller adds the
// connector's default, else "id"). Lines are separated by real newlines
// (CRLF too); blank lines are skipped. Problems: a non-empty xPathFilter (not
// supported), a line without a url, more than nine fields, a resource named
// twice; Field is "<resource>.<key>" or "<resource>", or "" when the line
// has no resource name (the message then starts with "line N:"). The
// resources are not validated here: run ParseResource on each.
func ParseLegacyURLs(s string) (map[string]map[string]any, []Problem) {
	out := map[string]map[string]any{}
	line := map[string]int{}
	var probs []Problem
	for i, text := range strings.Split(s, "\n") {
		n := i + 1
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		parts := strings.Split(text, "|")
		for j := range parts {
			parts[j] = strings.TrimSpace(parts[j])
		}
		name := parts[0]
		if name == "" {
			probs = append(probs, Problem{Field: "", Message: fmt.Sprintf("line %d: missing resource name", n) + " (expected resource|url|xPathFilter|updatedDateField|updatedDateFormat|updatedDateTimeZone|createdDateField|createdDateFormat|createdDateTimeZone)"})
			continue
		}
		if prev, dup := line[name]; dup {
			probs = append(probs, Problem{Field: name, Message: fmt.Sprintf("resource defined twice (lines %d and %d)", prev, n)})
			continue
		}
		line[name] = n
		if len(parts) > 2+len(legacyKeys) {
			probs = append(probs, Problem{Field: name, Message: fmt.Sprintf("line %d has %d fields, expected at most 9 (resource|url|xPathFilter|updatedDateField|updatedDateFormat|updatedDateTimeZone|createdDateField|createdDateFormat|createdDateTimeZone)", n, len(parts))})
			continue
		}
		res := map[string]any{}
		if len(parts) < 2 || parts[1] == "" {
			probs = append(probs, Problem{Field: name + ".url", Message: fmt.Sprintf("line %d has no url (expected resource|url|...)", n)})
		} else {
			res["url"] = parts[1]
		}
		dates := map[string]any{}
		for j, key := range legacyKeys {
			if 2+j >= len(parts) || parts[2+j] == "" {
				continue
			}
			if key == "xPathFilter" {
				probs = append(probs, Problem{Field: name + ".xPathFilter", Message: fmt.Sprintf("xPathFilter %q is not supported: leave it empty and select records with the url and recordsPath", parts[2+j])})
				continue
			}
			dates[key] = parts[2+j]
		}
		if len(dates) > 0 {
			res[datesKey] = dates
		}
		out[name] = res
	}
	return out, probs
}
