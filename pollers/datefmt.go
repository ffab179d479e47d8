package pollers

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // IANA zones must resolve even where the host has no zoneinfo

	"github.com/tidwall/gjson"
)

// epochUnit is the unit of an epoch date format or placeholder.
type epochUnit uint8

const (
	epochNone epochUnit = iota
	epochSeconds
	epochMillis
	epochMicros
)

// dfItem is one element of a compiled pattern: a run of one pattern letter
// (letter != 0, n its length) or literal text.
type dfItem struct {
	letter  byte
	n       int
	lit     string
	numeric bool // read as digits (isNumericItem)
	width   int  // digits read when numeric: n when the next item is numeric too, else 0 (as many as given)
}

// DateFormat is a compiled Java SimpleDateFormat pattern, or one of the
// epoch formats "milliseconds" and "seconds". The zero value is "no format":
// IsZero reports it, Parse fails and Format returns "". A DateFormat is
// immutable and safe for concurrent use.
type DateFormat struct {
	pattern  string
	epoch    epochUnit
	items    []dfItem
	dateTime bool // items begin yyyy?MM?dd?HH?mm?ss (see readDateTime)
}

const patternLetters = "yMdHhkKmsSEazZX"

// ParseDateFormat compiles a Java SimpleDateFormat pattern: the letters
// y M d H h k K m s S E a z Z X, literal text in single quotes ('T'), two
// single quotes for a quote; any other character is literal. "milliseconds" and "seconds"
// (any case) select epoch numbers. An unquoted ASCII letter outside that set,
// an unclosed quote, more than three X, or a pattern without any date or time
// letter is an error whose message names the pattern and the fault.
func ParseDateFormat(pattern string) (DateFormat, error) {
	switch strings.ToLower(strings.TrimSpace(pattern)) {
	case "milliseconds":
		return DateFormat{pattern: pattern, epoch: epochMillis}, nil
	case "seconds":
		return DateFormat{pattern: pattern, epoch: epochSeconds}, nil
	}
	if strings.TrimSpace(pattern) == "" {
		return DateFormat{}, errors.New("empty date pattern (expected a Java date pattern such as yyyy-MM-dd'T'HH:mm:ssXXX, or milliseconds or seconds)")
	}
	bad := func(format string, a ...any) (DateFormat, error) {
		return DateFormat{}, fmt.Errorf("invalid date pattern %q: "+format, append([]any{pattern}, a...)...)
	}
	var (
		items []dfItem
		lit   strings.Builder
	)
	flush := func() {
		if lit.Len() > 0 {
			items = append(items, dfItem{lit: lit.String()})
			lit.Reset()
		}
	}
	fields := 0
	for i := 0; i < len(pattern); {
		c := pattern[i]
		switch {
		case c == '\'':
			if i+1 < len(pattern) && pattern[i+1] == '\'' {
				lit.WriteByte('\'')
				i += 2
				continue
			}
			j := i + 1
			for {
				if j >= len(pattern) {
					return bad("unclosed quote at position %d", i+1)
				}
				if pattern[j] == '\'' {
					if j+1 < len(pattern) && pattern[j+1] == '\'' {
						lit.WriteByte('\'')
						j += 2
						continue
					}
					break
				}
				lit.WriteByte(pattern[j])
				j++
			}
			i = j + 1
		case isASCIILetter(c):
			if !strings.ContainsRune(patternLetters, rune(c)) {
				return bad("unquoted letter '%c' (quote literals: '%c')", c, c)
			}
			j := i
			for j < len(pattern) && pattern[j] == c {
				j++
			}
			if c == 'X' && j-i > 3 {
				return bad("'X' may be repeated at most 3 times (X, XX or XXX)")
			}
			flush()
			items = append(items, dfItem{letter: c, n: j - i})
			fields++
			i = j
		default:
			lit.WriteByte(c)
			i++
		}
	}
	flush()
	for k := range items {
		it := &items[k]
		it.numeric = isNumericItem(*it)
		if it.numeric && k+1 < len(items) && isNumericItem(items[k+1]) {
			it.width = it.n
		}
	}
	if fields == 0 {
		return bad("no date or time letters (expected letters such as yyyy-MM-dd; quote literal text)")
	}
	return DateFormat{pattern: pattern, items: items, dateTime: hasDateTime(items)}, nil
}

// dateTimeItems and dateTimeLen are how many items yyyy?MM?dd?HH?mm?ss is
// (six numbers of fixed width between one-byte separators that are not
// digits) and how many bytes of a value it reads.
const dateTimeItems, dateTimeLen = 11, 19

// dateTimeNumbers are those numbers: where they are in a value and their
// letters.
var dateTimeNumbers = [...]struct {
	start, end int
	letter     byte
}{{0, 4, 'y'}, {5, 7, 'M'}, {8, 10, 'd'}, {11, 13, 'H'}, {14, 16, 'm'}, {17, 19, 's'}}

// hasDateTime reports whether a pattern's items begin yyyy?MM?dd?HH?mm?ss.
func hasDateTime(items []dfItem) bool {
	if len(items) < dateTimeItems {
		return false
	}
	for k, it := range items[:dateTimeItems] {
		if k%2 == 1 {
			if len(it.lit) != 1 || isDigit(it.lit[0]) {
				return false
			}
			continue
		}
		if want := dateTimeNumbers[k/2]; it.letter != want.letter || it.n != want.end-want.start {
			return false
		}
	}
	return true
}

// readDateTime reads the numbers of a pattern that begins
// yyyy?MM?dd?HH?mm?ss (f.dateTime) at their places in value, as Parse's
// loop over those items would read them; ok is false when the loop would
// read them otherwise or fail.
func (f DateFormat) readDateTime(value string) (numbers [len(dateTimeNumbers)]int, ok bool) {
	if len(value) < dateTimeLen ||
		len(value) > dateTimeLen && f.items[dateTimeItems-1].width == 0 && isDigit(value[dateTimeLen]) { // more digits of seconds
		return numbers, false
	}
	for k := 1; k < dateTimeItems; k += 2 {
		if value[dateTimeNumbers[k/2].end] != f.items[k].lit[0] {
			return numbers, false
		}
	}
	for k, number := range dateTimeNumbers {
		text := value[number.start:number.end]
		if !allDigits(text) {
			return numbers, false
		}
		if numbers[k] = digitsValue(text); !inRange(number.letter, numbers[k]) {
			return numbers, false
		}
	}
	return numbers, true
}

// String returns the pattern as given to ParseDateFormat.
func (f DateFormat) String() string { return f.pattern }

// IsZero reports whether f is the zero DateFormat (no format configured).
func (f DateFormat) IsZero() bool { return f.epoch == epochNone && f.items == nil }

// IsEpoch reports whether f is "milliseconds" or "seconds".
func (f DateFormat) IsEpoch() bool { return f.epoch != epochNone }

// FractionDigits returns how many digits of a second's fraction the format
// writes: the length of its longest run of S (at most 9), 3 for
// milliseconds, 0 for seconds and for patterns without S. Values may carry
// more (a run of S reads every digit given).
func (f DateFormat) FractionDigits() int {
	switch f.epoch {
	case epochMillis:
		return 3
	case epochMicros:
		return 6
	case epochNone:
	default:
		return 0
	}
	n := 0
	for _, it := range f.items {
		if it.letter == 'S' {
			n = max(n, it.n)
		}
	}
	return min(n, 9)
}

// HasZone reports whether the pattern contains a zone letter (z, Z or X), so
// every value it parses carries its own zone.
func (f DateFormat) HasZone() bool {
	if f.epoch != epochNone {
		return true
	}
	for _, it := range f.items {
		if it.letter == 'z' || it.letter == 'Z' || it.letter == 'X' {
			return true
		}
	}
	return false
}

// ParseJSON parses a date read from a JSON document: a string is parsed as
// Parse does, a number by its literal text (epoch formats, or patterns such
// as yyyyMMdd). Other JSON types and missing values are errors.
func (f DateFormat) ParseJSON(v gjson.Result, loc *time.Location) (time.Time, error) {
	switch v.Type {
	case gjson.String:
		return f.Parse(v.Str, loc)
	case gjson.Number:
		return f.Parse(v.Raw, loc)
	case gjson.Null:
		if !v.Exists() {
			return time.Time{}, errors.New("date missing")
		}
		return time.Time{}, errors.New("date is null")
	default:
		return time.Time{}, fmt.Errorf("expected a date string or number, got %s", v.Raw)
	}
}

// Parse reads value with the format. loc (nil = UTC) applies only when the
// value carries no zone. Like Java, text after the pattern's last element is
// ignored; unlike Java's lenient mode, out-of-range fields (month 13,
// February 30, minute 60) are errors. A run of S is a decimal fraction of a
// second kept to nanoseconds (".1" = 100 ms). Two-digit years (y or yy read
// as exactly two digits) fall within 80 years before and 20 years after now,
// as in Java. Epoch formats accept integers or decimals, optionally signed.
func (f DateFormat) Parse(value string, loc *time.Location) (time.Time, error) {
	if f.epoch != epochNone {
		return parseEpoch(strings.TrimSpace(value), f.epoch)
	}
	if f.items == nil {
		return time.Time{}, errors.New("no date format")
	}
	if loc == nil {
		loc = time.UTC
	}
	var (
		year, month, day     = 1970, 1, 1
		hour24, hour12, ampm = -1, -1, -1
		minute, second, nsec int
		zone                 *time.Location
		twoDigitYear         bool
	)
	fail := func(format string, a ...any) (time.Time, error) {
		return time.Time{}, fmt.Errorf("date %q does not match %q: "+format, append([]any{value, f.pattern}, a...)...)
	}
	p, next := 0, 0 // the value's and the pattern's first unread
	if f.dateTime {
		if n, ok := f.readDateTime(value); ok {
			year, month, day, hour24, minute, second = n[0], n[1], n[2], n[3], n[4], n[5]
			p, next = dateTimeLen, dateTimeItems
		}
	}
	for k := next; k < len(f.items); k++ {
		it := &f.items[k]
		if it.letter == 0 {
			if len(it.lit) == 1 && p < len(value) && value[p] == it.lit[0] {
				p++
				continue
			}
			if len(value)-p < len(it.lit) || !strings.EqualFold(value[p:p+len(it.lit)], it.lit) {
				return fail("expected %q at position %d", it.lit, p+1)
			}
			p += len(it.lit)
			continue
		}
		if it.numeric {
			width := it.width
			start := p
			digits := p
			for digits < len(value) && isDigit(value[digits]) && (width == 0 || digits-p < width) {
				digits++
			}
			if digits == p || (width > 0 && digits-p != width) {
				return fail("expected %s at position %d", letterName(it.letter), p+1)
			}
			p = digits
			text := value[start:p]
			if it.letter == 'S' {
				frac := text
				if len(frac) > 9 {
					frac = frac[:9]
				}
				n := digitsValue(frac)
				for i := len(frac); i < 9; i++ {
					n *= 10
				}
				nsec = n
				continue
			}
			// Leading zeros are padding (Format pads a run of n letters to
			// n digits); more than 9 significant digits is out of range.
			if len(text) > 9 && len(strings.TrimLeft(text, "0")) > 9 {
				return fail("%s %s out of range", letterName(it.letter), text)
			}
			n := digitsValue(text)
			switch it.letter {
			case 'y':
				year = n
				twoDigitYear = it.n <= 2 && len(text) == 2
			case 'M':
				month = n
			case 'd':
				day = n
			case 'H':
				hour24 = n
			case 'k':
				if n == 24 {
					n = 0
				}
				hour24 = n
			case 'h':
				if n == 12 {
					n = 0
				}
				hour12 = n
			case 'K':
				hour12 = n
			case 'm':
				minute = n
			case 's':
				second = n
			}
			if !inRange(it.letter, n) {
				return fail("%s %s out of range", letterName(it.letter), text)
			}
			continue
		}
		switch it.letter {
		case 'M':
			n, l := matchName(value[p:], monthNames[:], monthShort[:])
			if n < 0 {
				return fail("expected a month name at position %d", p+1)
			}
			month = n + 1
			p += l
		case 'E':
			n, l := matchName(value[p:], dayNames[:], dayShort[:])
			if n < 0 {
				return fail("expected a day name at position %d", p+1)
			}
			p += l
		case 'a':
			n, l := matchName(value[p:], []string{"AM", "PM"}, nil)
			if n < 0 {
				return fail("expected AM or PM at position %d", p+1)
			}
			ampm = n
			p += l
		case 'z', 'Z', 'X':
			z, np, err := parseZoneAt(value, p)
			if err != nil {
				return fail("%v", err)
			}
			zone, p = z, np
		}
	}
	hour := 0
	switch {
	case hour24 >= 0:
		hour = hour24
	case hour12 >= 0:
		hour = hour12
		if ampm == 1 {
			hour += 12
		}
	}
	if zone == nil {
		zone = loc
	}
	if twoDigitYear {
		year = resolveTwoDigitYear(year, twoDigitYearStart())
	}
	t := time.Date(year, time.Month(month), day, hour, minute, second, nsec, zone)
	// time.Date moves a day past the month's end, or one a zone skipped, to
	// another; UTC skips none.
	if zone == time.UTC && day > daysIn(month, year) || zone != time.UTC && t.Day() != day {
		return fail("day %d out of range for %s %d", day, time.Month(month), year)
	}
	return t, nil
}

// daysIn returns how many days month has in year.
func daysIn(month, year int) int {
	if month == 2 && year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		return 29
	}
	return [...]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[month-1]
}

// twoDigitYearStart is when Java's 100-year window for two-digit years
// starts: 80 years before now. A variable so tests can pin the clock.
var twoDigitYearStart = func() time.Time { return time.Now().AddDate(-80, 0, 0) }

// resolveTwoDigitYear maps yy into the century window that starts at start.
func resolveTwoDigitYear(yy int, start time.Time) int {
	sy := start.Year()
	y := sy/100*100 + yy
	if y < sy {
		y += 100
	}
	return y
}

func isNumericItem(it dfItem) bool {
	switch it.letter {
	case 'y', 'd', 'H', 'h', 'k', 'K', 'm', 's', 'S':
		return true
	case 'M':
		return it.n <= 2
	}
	return false
}

func inRange(letter byte, n int) bool {
	switch letter {
	case 'M':
		return n >= 1 && n <= 12
	case 'd':
		return n >= 1 && n <= 31
	case 'H', 'k':
		return n <= 23
	case 'h', 'K':
		return n <= 11
	case 'm', 's':
		return n <= 59
	}
	return true
}

func letterName(c byte) string {
	switch c {
	case 'y':
		return "year"
	case 'M':
		return "month"
	case 'd':
		return "day"
	case 'H', 'h', 'k', 'K':
		return "hour"
	case 'm':
		return "minute"
	case 's':
		return "second"
	case 'S':
		return "fraction of a second"
	}
	return string(c)
}

var (
	monthNames = [...]string{"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"}
	monthShort = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
	dayNames   = [...]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
	dayShort   = [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
)

// matchName finds the name at the start of s, long names first, ignoring
// case; it returns the index and the length matched, or -1.
func matchName(s string, long, short []string) (int, int) {
	for _, names := range [][]string{long, short} {
		for i, n := range names {
			if len(s) >= len(n) && strings.EqualFold(s[:len(n)], n) {
				return i, len(n)
			}
		}
	}
	return -1, 0
}

// parseZoneAt reads a zone at s[p:]: "Z", ±HH, ±HHMM, ±HH:MM, GMT±HH:MM, an
// abbreviation or an IANA name. Letters followed by '/' or '_' that do not
// begin an IANA name are read alone ("Z" of "Z/P1D", an ISO 8601 interval).
func parseZoneAt(s string, p int) (*time.Location, int, error) {
	if p >= len(s) {
		return nil, p, errors.New("missing zone at end of value")
	}
	c := s[p]
	if c == '+' || c == '-' {
		off, n, err := parseOffset(s[p:])
		if err != nil {
			return nil, p, fmt.Errorf("%v at position %d", err, p+1)
		}
		return fixedOffsetZone(off), p + n, nil
	}
	if !isASCIILetter(c) {
		return nil, p, fmt.Errorf("expected a zone at position %d", p+1)
	}
	e := p
	for e < len(s) && isASCIILetter(s[e]) {
		e++
	}
	name := s[p:e]
	unknown := name // the name an error gives
	if e < len(s) && (s[e] == '/' || s[e] == '_') {
		iana := e
		for iana < len(s) && (isASCIILetter(s[iana]) || isDigit(s[iana]) || strings.IndexByte("/_+-", s[iana]) >= 0) {
			iana++
		}
		unknown = s[p:iana]
		if loc, err := loadLocation(unknown); err == nil {
			return loc, iana, nil
		}
	}
	upper := strings.ToUpper(name)
	if (upper == "GMT" || upper == "UTC" || upper == "UT") && e < len(s) && (s[e] == '+' || s[e] == '-') {
		off, n, err := parseOffset(s[e:])
		if err != nil {
			return nil, p, fmt.Errorf("%v at position %d", err, e+1)
		}
		return fixedOffsetZone(off), e + n, nil
	}
	if upper == "Z" {
		return time.UTC, e, nil
	}
	if a, ok := zoneAbbrevs[upper]; ok {
		if a.offset == 0 {
			return time.UTC, e, nil
		}
		return time.FixedZone(upper, a.offset), e, nil
	}
	if len(name) > 1 && s[p] == 'Z' {
		// "Z" directly followed by letters such as "Zulu" is not a zone we
		// know; treat a lone leading Z as UTC like the ISO form does.
		return time.UTC, p + 1, nil
	}
	loc, err := loadLocation(name)
	if err != nil {
		return nil, p, fmt.Errorf("unknown zone %q at position %d", unknown, p+1)
	}
	return loc, e, nil
}

// parseOffset reads ±H, ±HH, ±HMM, ±HHMM, ±H:MM or ±HH:MM at the start of s
// and returns the offset in seconds and the bytes read.
func parseOffset(s string) (int, int, error) {
	if len(s) == 0 || (s[0] != '+' && s[0] != '-') {
		return 0, 0, errors.New("expected a zone offset")
	}
	sign := 1
	if s[0] == '-' {
		sign = -1
	}
	i := 1
	for i < len(s) && i <= 4 && isDigit(s[i]) {
		i++
	}
	digits := s[1:i]
	var hh, mm string
	switch len(digits) {
	case 1, 2:
		hh = digits
		if i+2 < len(s) && s[i] == ':' && isDigit(s[i+1]) && isDigit(s[i+2]) {
			mm = s[i+1 : i+3]
			i += 3
		}
	case 3:
		hh, mm = digits[:1], digits[1:]
	case 4:
		hh, mm = digits[:2], digits[2:]
	default:
		return 0, 0, fmt.Errorf("invalid zone offset %q", s)
	}
	h, m := digitsValue(hh), digitsValue(mm)
	if h > 23 || m > 59 {
		return 0, 0, fmt.Errorf("zone offset %q out of range", s[:i])
	}
	return sign * (h*3600 + m*60), i, nil
}

// fixedOffsetZone returns UTC for 0, else a fixed zone named like Java's
// custom zones ("GMT-08:00").
func fixedOffsetZone(off int) *time.Location {
	if off == 0 {
		return time.UTC
	}
	return time.FixedZone(gmtOffsetName(off), off)
}

func gmtOffsetName(off int) string {
	sign := byte('+')
	if off < 0 {
		sign, off = '-', -off
	}
	return fmt.Sprintf("GMT%c%02d:%02d", sign, off/3600, off/60%60)
}

// zoneAbbrevs are the zone abbreviations pollhook knows. In a value an
// abbreviation means its fixed offset (PDT is always -07:00); as a
// configured zone (ParseZone) it means the IANA zone when one is given, as
// Java's TimeZone.getTimeZone does for PST, CST, ... (EST, MST and HST are
// fixed offsets in Java too).
var zoneAbbrevs = map[string]struct {
	offset int
	iana   string
}{
	"GMT":  {0, ""},
	"UTC":  {0, ""},
	"UT":   {0, ""},
	"EST":  {-5 * 3600, ""},
	"EDT":  {-4 * 3600, "America/New_York"},
	"CST":  {-6 * 3600, "America/Chicago"},
	"CDT":  {-5 * 3600, "America/Chicago"},
	"MST":  {-7 * 3600, ""},
	"MDT":  {-6 * 3600, "America/Denver"},
	"PST":  {-8 * 3600, "America/Los_Angeles"},
	"PDT":  {-7 * 3600, "America/Los_Angeles"},
	"AKST": {-9 * 3600, "America/Anchorage"},
	"AKDT": {-8 * 3600, "America/Anchorage"},
	"HST":  {-10 * 3600, ""},
	"WET":  {0, "Europe/Lisbon"},
	"WEST": {1 * 3600, "Europe/Lisbon"},
	"BST":  {1 * 3600, "Europe/London"},
	"CET":  {1 * 3600, "Europe/Paris"},
	"CEST": {2 * 3600, "Europe/Paris"},
	"EET":  {2 * 3600, "Europe/Athens"},
	"EEST": {3 * 3600, "Europe/Athens"},
	"MSK":  {3 * 3600, "Europe/Moscow"},
	"IST":  {5*3600 + 1800, "Asia/Kolkata"},
	"SGT":  {8 * 3600, "Asia/Singapore"},
	"HKT":  {8 * 3600, "Asia/Hong_Kong"},
	"JST":  {9 * 3600, "Asia/Tokyo"},
	"KST":  {9 * 3600, "Asia/Seoul"},
	"AEST": {10 * 3600, "Australia/Sydney"},
	"AEDT": {11 * 3600, "Australia/Sydney"},
}

var locCache sync.Map // name → *time.Location or error

// loadLocation is time.LoadLocation for IANA names, cached; "Local" and ""
// are refused so nothing depends on the host's zone.
func loadLocation(name string) (*time.Location, error) {
	if name == "" || name == "Local" || len(name) > 64 {
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	if v, ok := locCache.Load(name); ok {
		if l, ok := v.(*time.Location); ok {
			return l, nil
		}
		return nil, v.(error)
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		err = fmt.Errorf("unknown time zone %q", name)
		locCache.Store(name, err)
		return nil, err
	}
	locCache.Store(name, l)
	return l, nil
}

// ParseZone reads a configured time zone (a *Timezone key, or the ZONE of
// ${dateTimeZone:ZONE:FORMAT}): an IANA name (America/New_York), an
// abbreviation (GMT, UTC, PST, CET, IST = Asia/Kolkata, ...; US ones map to
// their IANA zones as Java does, so PST follows daylight saving time), or an
// offset (-8:00, +05:30, -0800, +02, GMT+2, UTC-03:30). Offsets give fixed
// zones; a zero offset gives time.UTC.
func ParseZone(s string) (*time.Location, error) {
	s = strings.TrimSpace(s)
	expected := " (expected an IANA name such as America/New_York, an abbreviation such as PST, or an offset such as -08:00)"
	if s == "" {
		return nil, errors.New("empty time zone" + expected)
	}
	bad := func() (*time.Location, error) {
		return nil, fmt.Errorf("unknown time zone %q%s", s, expected)
	}
	offset := func(o string) (*time.Location, error) {
		off, n, err := parseOffset(o)
		if err != nil || n != len(o) {
			return bad()
		}
		return fixedOffsetZone(off), nil
	}
	if s[0] == '+' || s[0] == '-' {
		return offset(s)
	}
	upper := strings.ToUpper(s)
	for _, prefix := range []string{"GMT", "UTC", "UT"} {
		if strings.HasPrefix(upper, prefix) && len(s) > len(prefix) && (s[len(prefix)] == '+' || s[len(prefix)] == '-') {
			return offset(s[len(prefix):])
		}
	}
	if upper == "Z" {
		return time.UTC, nil
	}
	if a, ok := zoneAbbrevs[upper]; ok {
		switch {
		case a.iana != "":
			return loadLocation(a.iana)
		case a.offset == 0:
			return time.UTC, nil
		default:
			return time.FixedZone(upper, a.offset), nil
		}
	}
	if l, err := loadLocation(s); err == nil {
		return l, nil
	}
	return bad()
}

// parseEpoch reads a signed integer or decimal number of seconds or
// milliseconds.
func parseEpoch(s string, unit epochUnit) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("empty epoch value")
	}
	scale := int64(time.Second)
	if unit == epochMillis {
		scale = int64(time.Millisecond)
	}
	neg := s[0] == '-'
	body := strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	intPart, fracPart, hasDot := strings.Cut(body, ".")
	if intPart != "" && allDigits(intPart) && (!hasDot || allDigits(fracPart)) && len(intPart) <= 18 {
		whole, _ := strconv.ParseInt(intPart, 10, 64)
		digits := 9
		if unit == epochMillis {
			digits = 6
		}
		if len(fracPart) > digits {
			fracPart = fracPart[:digits]
		}
		frac := int64(0)
		if fracPart != "" {
			frac, _ = strconv.ParseInt(fracPart, 10, 64)
			for i := len(fracPart); i < digits; i++ {
				frac *= 10
			}
		}
		if unit == epochMillis {
			sec, ms := whole/1000, whole%1000
			nanos := ms*int64(time.Millisecond) + frac
			if neg {
				return time.Unix(-sec, -nanos).UTC(), nil
			}
			return time.Unix(sec, nanos).UTC(), nil
		}
		if neg {
			return time.Unix(-whole, -frac).UTC(), nil
		}
		return time.Unix(whole, frac).UTC(), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return time.Time{}, fmt.Errorf("invalid epoch value %q (expected a number)", s)
	}
	ns := v * float64(scale)
	if math.Abs(ns) >= 9e18 {
		return time.Time{}, fmt.Errorf("epoch value %q out of range", s)
	}
	return time.Unix(0, int64(math.Round(ns))).UTC(), nil
}

// Format writes t with the format, in t's own location (callers convert
// first: t.In(loc)). A run of S writes that many fraction digits; Z writes
// +0000; X writes Z for UTC, else +08 (X), +0800 (XX), +08:00 (XXX); z
// writes the zone's abbreviation (GMT+05:30 when it has none); yy writes two
// digits, other runs of y the year padded to their length; MMM and EEE write
// English names. Epoch formats write integers (seconds round down). The zero
// DateFormat writes "".
//
// Parse reads the output back, for years 0-9999, to the precision written
// (yy through the two-digit-year window, h or K without a as AM, Parse's
// defaults for fields the pattern lacks), unless the pattern is ambiguous:
// a number directly followed by a digit, or by another number without a
// fixed width (yyyy, or two letters for the other fields); letters
// directly after a name (MMM, E, a, z); '+', '-', Z or X directly after z;
// a number or ':' directly after a single X; or a z whose zone
// abbreviation Parse does not know or reads as another offset (it knows
// GMT+hh:mm, GMT, UTC, the US zones, WET to EEST, MSK, IST as India, SGT,
// HKT, JST, KST, AEST and AEDT).
func (f DateFormat) Format(t time.Time) string {
	switch f.epoch {
	case epochMillis:
		return strconv.FormatInt(t.UnixMilli(), 10)
	case epochSeconds:
		return strconv.FormatInt(t.Unix(), 10)
	}
	var b strings.Builder
	for _, it := range f.items {
		switch it.letter {
		case 0:
			b.WriteString(it.lit)
		case 'y':
			y := t.Year()
			if it.n == 2 {
				y %= 100
				if y < 0 {
					y = -y
				}
			}
			pad(&b, y, it.n)
		case 'M':
			switch {
			case it.n >= 4:
				b.WriteString(monthNames[t.Month()-1])
			case it.n == 3:
				b.WriteString(monthShort[t.Month()-1])
			default:
				pad(&b, int(t.Month()), it.n)
			}
		case 'd':
			pad(&b, t.Day(), it.n)
		case 'E':
			if it.n >= 4 {
				b.WriteString(dayNames[t.Weekday()])
			} else {
				b.WriteString(dayShort[t.Weekday()])
			}
		case 'a':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'H':
			pad(&b, t.Hour(), it.n)
		case 'k':
			h := t.Hour()
			if h == 0 {
				h = 24
			}
			pad(&b, h, it.n)
		case 'K':
			pad(&b, t.Hour()%12, it.n)
		case 'h':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			pad(&b, h, it.n)
		case 'm':
			pad(&b, t.Minute(), it.n)
		case 's':
			pad(&b, t.Second(), it.n)
		case 'S':
			frac := fmt.Sprintf("%09d", t.Nanosecond())
			if it.n <= 9 {
				b.WriteString(frac[:it.n])
			} else {
				b.WriteString(frac)
				b.WriteString(strings.Repeat("0", it.n-9))
			}
		case 'Z':
			_, off := t.Zone()
			writeOffset(&b, off, false, true)
		case 'X':
			_, off := t.Zone()
			if off == 0 {
				b.WriteByte('Z')
				break
			}
			writeOffset(&b, off, it.n >= 3, it.n >= 2)
		case 'z':
			name, off := t.Zone()
			if name == "" || name[0] == '+' || name[0] == '-' || isDigit(name[0]) {
				if off == 0 {
					name = "GMT"
				} else {
					name = gmtOffsetName(off)
				}
			}
			b.WriteString(name)
		}
	}
	return b.String()
}

func writeOffset(b *strings.Builder, off int, colon, minutes bool) {
	if off < 0 {
		b.WriteByte('-')
		off = -off
	} else {
		b.WriteByte('+')
	}
	pad(b, off/3600, 2)
	if !minutes {
		return
	}
	if colon {
		b.WriteByte(':')
	}
	pad(b, off/60%60, 2)
}

func pad(b *strings.Builder, n, width int) {
	if n < 0 {
		b.WriteByte('-')
		n = -n
	}
	s := strconv.Itoa(n)
	for i := len(s); i < width; i++ {
		b.WriteByte('0')
	}
	b.WriteString(s)
}

func isASCIILetter(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isDigit(c byte) bool       { return c >= '0' && c <= '9' }

// digitsValue is the number s writes in decimal digits (0 for "").
func digitsValue(s string) int {
	n := 0
	for i := range len(s) {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}
