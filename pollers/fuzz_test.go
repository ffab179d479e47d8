package pollers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

var fuzzTimes = []time.Time{
	time.Date(2020, 11, 22, 7, 35, 27, 123456789, time.UTC),
	time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
	time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", -12*3600)),
}

// FuzzDateFormatParse parses a value with a pattern. Errors name the pattern
// or the value; a value a separable pattern accepts comes back the same
// through Format and Parse (see checkFormatParsesBack).
func FuzzDateFormatParse(f *testing.F) {
	for _, s := range [][2]string{
		{"yyyy-MM-dd'T'HH:mm:ss.SSS'Z'", "2020-11-22T07:35:27.123Z"},
		{"yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "2020-11-22T07:35:27.123-08:00"},
		{"EEE, dd MMM yyyy HH:mm:ss z", "Sun, 22 Nov 2020 07:35:27 America/New_York"},
		{"dd/MM/yy hh:mm a", "01/02/99 12:00 PM"},
		{"yyyyMMddHHmmssSSS", "20201122073527123"},
		{"z", "GMT+05:30"},
		{"milliseconds", "-1.6e12"},
		{"seconds", "99999999999999999999"},
		{"'o''clock' k K", "o'clock 24 0"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, value string) {
		df, err := ParseDateFormat(pattern)
		if err != nil {
			if strings.TrimSpace(pattern) != "" && !strings.Contains(err.Error(), strconv.Quote(pattern)) {
				t.Fatalf("error %q does not name the pattern", err)
			}
			return
		}
		got, err := df.Parse(value, fuzzLA)
		if err != nil {
			if prefix := fmt.Sprintf("date %q does not match %q: ", value, pattern); !df.IsEpoch() && !strings.HasPrefix(err.Error(), prefix) {
				t.Fatalf("error %q does not start with %q", err, prefix)
			}
		} else {
			if !df.HasZone() && got.Location() != fuzzLA {
				t.Fatalf("%q with %q: zone %v, want the given one", value, pattern, got.Location())
			}
			checkFormatParsesBack(t, df, got)
		}
		for _, at := range fuzzTimes {
			checkFormatParsesBack(t, df, at)
		}
	})
}

// FuzzDateFormatRoundTrip formats an instant, in a fixed offset or a zone
// with daylight saving time, with a pattern and parses it back. zone picks
// one of fuzzZones, or else a fixed offset of offsetMinutes. Seeds:
// testdata/fuzz/FuzzDateFormatRoundTrip.
func FuzzDateFormatRoundTrip(f *testing.F) {
	f.Fuzz(func(t *testing.T, pattern string, sec, nsec int64, zone uint8, offsetMinutes int16) {
		df, err := ParseDateFormat(pattern)
		if err != nil {
			return
		}
		const first, last = -62135596800, 253402300799 // 0001-01-01 to 9999-12-31, UTC
		sec = first + int64(uint64(sec)%uint64(last-first+1))
		nsec = int64(uint64(nsec) % uint64(time.Second))
		loc := time.FixedZone("", int(offsetMinutes)%(24*60)*60)
		if int(zone) < len(fuzzZones) {
			loc = fuzzZones[zone]
		}
		checkFormatParsesBack(t, df, time.Unix(sec, nsec).In(loc))
	})
}

var fuzzLA = mustLoadLocation("America/Los_Angeles")

// fuzzZones are zones FuzzDateFormatRoundTrip formats in besides fixed
// offsets: daylight saving time, abbreviations, offsets with minutes.
var fuzzZones = []*time.Location{
	time.UTC, fuzzLA, mustLoadLocation("America/New_York"), mustLoadLocation("Europe/Paris"),
	mustLoadLocation("Europe/London"), mustLoadLocation("Asia/Kolkata"), mustLoadLocation("Asia/Tokyo"),
	mustLoadLocation("Australia/Sydney"), mustLoadLocation("America/Sao_Paulo"), mustLoadLocation("Asia/Kathmandu"),
}

func mustLoadLocation(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

// checkFormatParsesBack checks that Parse reads what Format writes for at:
// for epoch formats the instant to the unit; for a separable pattern (see
// separable) the fields the pattern writes, to their precision, with
// Parse's defaults for the others (expectParseOfFormat). Instants outside
// years 0-9999 and zones whose name a z cannot write back are skipped.
func checkFormatParsesBack(t *testing.T, df DateFormat, at time.Time) {
	t.Helper()
	if y := at.Year(); y < 0 || y > 9999 {
		return
	}
	s := df.Format(at)
	back, err := df.Parse(s, at.Location())
	if df.IsEpoch() {
		want := time.UnixMilli(at.UnixMilli())
		if df.epoch == epochSeconds {
			want = time.Unix(at.Unix(), 0)
		}
		if err != nil || !back.Equal(want) {
			t.Fatalf("%q: %v formats as %q, parsed as %v, %v; want %v", df, at, s, back, err, want)
		}
		return
	}
	if !separable(df) {
		return
	}
	want, wantErr, ok := expectParseOfFormat(df, at)
	switch {
	case !ok:
	case wantErr:
		if err == nil {
			t.Fatalf("%q: %v formats as %q, parsed as %v; want an error (a date the defaults make invalid)", df, at, s, back)
		}
	case err != nil:
		t.Fatalf("%q: %v formats as %q, which does not parse: %v", df, at, s, err)
	case !back.Equal(want) || (!df.HasZone() && back.Location() != at.Location()):
		t.Fatalf("%q: %v formats as %q, parsed as %v; want %v", df, at, s, back, want)
	}
}

// separable reports whether Parse can tell where each field of the
// pattern's output ends, so that the output parses back (DateFormat.Format
// lists the ambiguous patterns): abutting numbers have fixed widths, no
// digit follows a number, no letter follows a name, and no text follows a
// zone that Parse would read as part of it.
func separable(df DateFormat) bool {
	isText := func(it dfItem) bool { // written as letters
		return it.letter == 'E' || it.letter == 'a' || it.letter == 'z' || (it.letter == 'M' && it.n >= 3)
	}
	for k := 0; k+1 < len(df.items); k++ {
		it, next := df.items[k], df.items[k+1]
		var c byte // next's first byte when a literal
		if next.letter == 0 {
			c = next.lit[0]
		}
		switch {
		case isNumericItem(it) && isNumericItem(next) && it.n < fixedWidth(it.letter),
			isNumericItem(it) && isDigit(c),
			isText(it) && (isASCIILetter(c) || isText(next) || next.letter == 'X'),
			it.letter == 'z' && (next.letter == 'Z' || next.letter == 'X' || c == '+' || c == '-'),
			it.letter == 'X' && it.n == 1 && (isNumericItem(next) || isDigit(c) || c == ':'):
			return false
		}
	}
	return true
}

// fixedWidth is the run length from which Format writes the letter's
// numbers (years 0-9999) at a fixed width.
func fixedWidth(letter byte) int {
	switch letter {
	case 'y':
		return 4
	case 'S':
		return 1
	}
	return 2
}

// expectParseOfFormat returns what Parse makes of df.Format(at) with
// at.Location() for values without a zone: the fields df writes, to its
// precision, Parse's defaults for the others. wantErr: the defaults make
// the date invalid (February 29 without a year). ok is false when the zone
// df writes is a name Parse reads otherwise or not at all.
func expectParseOfFormat(df DateFormat, at time.Time) (want time.Time, wantErr, ok bool) {
	name, off := at.Zone()
	year, month, day := at.Date()
	hour, minute, second := at.Clock()
	y, mo, d, h24, h12, ampm, mi, s, ns := 1970, 1, 1, -1, -1, -1, 0, 0, 0
	loc := at.Location()
	minutes := func(off int) int { // the offset as written: whole minutes
		if off < 0 {
			return -(-off / 60 * 60)
		}
		return off / 60 * 60
	}
	for _, it := range df.items {
		switch it.letter {
		case 'y':
			y = year
			if it.n == 2 || (it.n == 1 && year >= 10 && year <= 99) {
				y = resolveTwoDigitYear(year%100, twoDigitYearStart())
			}
		case 'M':
			mo = int(month)
		case 'd':
			d = day
		case 'H', 'k':
			h24 = hour
		case 'h', 'K':
			h12 = hour % 12
		case 'a':
			ampm = hour / 12
		case 'm':
			mi = minute
		case 's':
			s = second
		case 'S':
			unit := 1
			for range 9 - min(it.n, 9) {
				unit *= 10
			}
			ns = at.Nanosecond() / unit * unit
		case 'Z':
			loc = time.FixedZone("", minutes(off))
		case 'X':
			w := minutes(off)
			if it.n == 1 {
				w = off / 3600 * 3600
			}
			loc = time.FixedZone("", w)
		case 'z':
			switch a, known := zoneAbbrevs[strings.ToUpper(name)]; {
			case name == "" || name[0] == '+' || name[0] == '-' || isDigit(name[0]) || strings.HasPrefix(name, "GMT+") || strings.HasPrefix(name, "GMT-"):
				loc = time.FixedZone("", minutes(off))
			case known:
				loc = time.FixedZone("", a.offset)
			default:
				return time.Time{}, false, false
			}
		}
	}
	hr := 0
	switch {
	case h24 >= 0:
		hr = h24
	case h12 >= 0:
		hr = h12
		if ampm == 1 {
			hr += 12
		}
	}
	want = time.Date(y, time.Month(mo), d, hr, mi, s, ns, loc)
	return want, want.Day() != d, true
}

// FuzzTemplate compiles URL and body templates. Errors name the
// placeholder; a placeholder's value, URL-escaped, never adds a path
// segment, a query, a fragment or a query parameter.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		"/contacts?since=${gmtDate:yyyy-MM-dd'T'HH:mm:ss.SSS'Z'}&order=date_created",
		"/x/${dateTimeZone:-8:00:yyyy-MM-dd'T'HH:mm:ssXXX}?e=${epoch:us}",
		"${dateTimeZone:GMT+05:30:HH:mm}",
		"${gmtDate:HH'}'mm}",
		"${",
		"$${epoch}}",
		"plain",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := ParseTemplate(s)
		if err != nil {
			if !strings.Contains(err.Error(), "placeholder") {
				t.Fatalf("error %q does not name the placeholder", err)
			}
			return
		}
		if tp.String() != s {
			t.Fatalf("String() = %q, want %q", tp.String(), s)
		}
		var skeleton strings.Builder // the literal text alone
		for _, p := range tp.parts {
			if p.kind == tplLiteral {
				skeleton.WriteString(p.lit)
			}
		}
		for _, at := range fuzzTimes {
			got := tp.Expand(at)
			_ = tp.ExpandText(at)
			for _, c := range []string{"/", "?", "#"} {
				if strings.Count(got, c) != strings.Count(skeleton.String(), c) {
					t.Fatalf("%q expands to %q: a placeholder wrote %q", s, got, c)
				}
			}
			_, gotQuery, _ := strings.Cut(got, "?")
			_, litQuery, _ := strings.Cut(skeleton.String(), "?")
			for _, c := range []string{"&", "="} {
				if strings.Count(gotQuery, c) != strings.Count(litQuery, c) {
					t.Fatalf("%q expands to %q: a placeholder wrote %q in the query", s, got, c)
				}
			}
		}
		if !tp.HasPlaceholders() && (tp.Expand(fuzzTimes[0]) != s || tp.ExpandText(fuzzTimes[0]) != s) {
			t.Fatalf("literal template %q expanded to %q", s, tp.Expand(fuzzTimes[0]))
		}
	})
}

// FuzzFieldPath compiles field paths, and reads the input as a key: quoted
// in brackets (and unquoted when it has no '.' or '['), it reads that key
// literally, whatever gjson makes of its characters.
func FuzzFieldPath(f *testing.F) {
	for _, s := range []string{"a.b", "['Modified Time']", "items[0].id", `a["b.c"]`, `$.x['\'']`, "@this|#", "a..b", "[", "a[99999999999999999999]"} {
		f.Add(s)
	}
	doc := `{"a":{"b":1,"b.c":[1,2]},"items":[{"id":1}],"Modified Time":"x","@this":{"#":2}}`
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseFieldPath(s)
		if err != nil {
			if strings.TrimSpace(s) != "" && !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("error %q does not name the path", err)
			}
		} else {
			if p.IsZero() || p.String() != s {
				t.Fatalf("%q compiled to %q (gjson %q)", s, p.String(), p.GJSON())
			}
			_ = p.Get(doc)
		}
		if s == "" || !utf8.ValidString(s) {
			return
		}
		var key bytes.Buffer
		enc := json.NewEncoder(&key)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		record := `{"k":{` + strings.TrimSpace(key.String()) + `:"found"}}`
		paths := []string{"k['" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "']"}
		if !strings.ContainsAny(s, ".[") && strings.TrimSpace(s) != "" {
			paths = append(paths, "k."+s)
		}
		for _, path := range paths {
			p, err := ParseFieldPath(path)
			if err != nil {
				t.Fatalf("key %q: %v", s, err)
			}
			if got := p.Get(record); got.Type != gjson.String || got.Str != "found" {
				t.Fatalf("%q (gjson %q) read %q from %s", path, p.GJSON(), got.Raw, record)
			}
		}
	})
}

// FuzzParseResource parses resource configurations: every problem names a
// field; a valid resource is complete and its POST body expands to JSON.
func FuzzParseResource(f *testing.F) {
	for _, s := range []string{
		specContacts,
		`{}`,
		`{"url": "/hubs/crm/x", "idField": 3, "datesConfiguration": "{\"updatedDateField\": 1}"}`,
		`{"url": "/a", "method": "post", "body": {"q": ["${epoch}", 1, null, {"x": "${gmtDate:yyyy}"}]}, "idField": "id", "updatedDateField": "u", "updatedDateFormat": "seconds", "pagination": {"type": "offset", "offsetParam": "o", "pageSize": "10"}}`,
		`{"url": "/a", "idField": "id", "filterByUpdateDate": "false", "createdDateField": "c", "createdDateFormat": "milliseconds", "overlap": "1e400", "pagination": "cursor"}`,
		`{"datesConfiguration": null, "pagination": [], "pageSize": -0, "rateLimit": "NaN"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var raw map[string]any
		if json.Unmarshal(data, &raw) != nil {
			return
		}
		r, probs := ParseResource(raw, Defaults{IDField: "id", Pagination: map[string]any{"type": "link"}})
		for _, p := range probs {
			if p.Field == "" || p.Message == "" {
				t.Fatalf("problem without field or message: %+v", p)
			}
		}
		if probs != nil {
			return
		}
		at := r.Since(fuzzTimes[0])
		_ = r.URL.Expand(at)
		if body := r.Body.Expand(at); !r.Body.IsZero() && !r.Body.IsText() && !json.Valid(body) {
			t.Fatalf("body expands to invalid JSON: %s", body)
		}
		if r.IDField.IsZero() || r.Method == "" || r.Overlap < 0 || r.PollDelay < 0 || r.EventDate().Field.IsZero() {
			t.Fatalf("valid resource with missing parts: %+v", r)
		}
	})
}
