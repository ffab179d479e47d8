package pollers

import (
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

func TestParseDateFormatAcceptsJavaPatterns(t *testing.T) {
	t.Parallel()
	for _, p := range []string{
		"yyyy-MM-dd'T'HH:mm:ss.SSS'Z'",
		"yyyy-MM-dd'T'HH:mm:ss.SSSZ",
		"yyyy-MM-dd'T'HH:mm:ssXXX",
		"yyyy-MM-dd'T'HH:mm:ss.SSSSSSX",
		"EEE, dd MMM yyyy HH:mm:ss z",
		"EEEE, MMMM d, yyyy h:mm a",
		"dd/MM/yy",
		"yyyyMMddHHmmss",
		"hh 'o''clock' a",
		"K:mm a, z",
		"kk:mm",
		"yyyy.MM.dd G-ish", // rejected below: G is not supported
		"milliseconds",
		"seconds",
		"Milliseconds",
		"yyyy-MM-dd HH:mm:ss 'at' '{}'",
		"''yyyy''",
	} {
		if p == "yyyy.MM.dd G-ish" {
			continue
		}
		f, err := ParseDateFormat(p)
		if err != nil {
			t.Errorf("ParseDateFormat(%q): %v", p, err)
			continue
		}
		if f.String() != p || f.IsZero() {
			t.Errorf("ParseDateFormat(%q) = %q, zero %v", p, f.String(), f.IsZero())
		}
	}
}

func TestParseDateFormatRejectsInvalidPatterns(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ pattern, want string }{
		{"yyyy-MM-ddTHH", `invalid date pattern "yyyy-MM-ddTHH": unquoted letter 'T' (quote literals: 'T')`},
		{"yyyy-MM-dd'T'HH:mm:ss.SSSZZ'", `invalid date pattern "yyyy-MM-dd'T'HH:mm:ss.SSSZZ'": unclosed quote at position 28`},
		{"yyyy G", `invalid date pattern "yyyy G": unquoted letter 'G' (quote literals: 'G')`},
		{"YYYY-MM-dd", `invalid date pattern "YYYY-MM-dd": unquoted letter 'Y' (quote literals: 'Y')`},
		{"yyyy-MM-dd'T'HH:mm:ss.SSSSSSSu", `invalid date pattern "yyyy-MM-dd'T'HH:mm:ss.SSSSSSSu": unquoted letter 'u' (quote literals: 'u')`},
		{"D", `invalid date pattern "D": unquoted letter 'D' (quote literals: 'D')`},
		{"HH:mm:ss XXXX", `invalid date pattern "HH:mm:ss XXXX": 'X' may be repeated at most 3 times (X, XX or XXX)`},
		{"'date'", `invalid date pattern "'date'": no date or time letters (expected letters such as yyyy-MM-dd; quote literal text)`},
		{"----", `invalid date pattern "----": no date or time letters (expected letters such as yyyy-MM-dd; quote literal text)`},
		{"", `empty date pattern (expected a Java date pattern such as yyyy-MM-dd'T'HH:mm:ssXXX, or milliseconds or seconds)`},
		{"   ", `empty date pattern (expected a Java date pattern such as yyyy-MM-dd'T'HH:mm:ssXXX, or milliseconds or seconds)`},
		{"iso8601", `invalid date pattern "iso8601": unquoted letter 'i' (quote literals: 'i')`},
		{"epoch", `invalid date pattern "epoch": unquoted letter 'e' (quote literals: 'e')`},
		{"millis", `invalid date pattern "millis": unquoted letter 'i' (quote literals: 'i')`},
		{"yyyy-MM-dd'T", `invalid date pattern "yyyy-MM-dd'T": unclosed quote at position 11`},
		{"'", `invalid date pattern "'": unclosed quote at position 1`},
	} {
		_, err := ParseDateFormat(c.pattern)
		if err == nil || err.Error() != c.want {
			t.Errorf("ParseDateFormat(%q) error = %v, want %s", c.pattern, err, c.want)
		}
	}
}

func TestDateFormatParseReadsValues(t *testing.T) {
	t.Parallel()
	la, _ := time.LoadLocation("America/Los_Angeles")
	for _, c := range []struct {
		name, pattern, value string
		loc                  *time.Location
		want                 string // RFC 3339 with nanoseconds, in the parsed zone
	}{
		{"literal Z is no zone: loc applies", "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'", "2020-11-22T07:35:27.123Z", nil, "2020-11-22T07:35:27.123Z"},
		{"RFC 822 offset", "yyyy-MM-dd'T'HH:mm:ss.SSSZ", "2020-11-22T07:35:27.123-0800", nil, "2020-11-22T07:35:27.123-08:00"},
		{"Z letter reads Z", "yyyy-MM-dd'T'HH:mm:ssZ", "2020-11-22T07:35:27Z", la, "2020-11-22T07:35:27Z"},
		{"Z letter reads ±HH:MM", "yyyy-MM-dd'T'HH:mm:ssZ", "2020-11-22T07:35:27+05:30", nil, "2020-11-22T07:35:27+05:30"},
		{"X reads ±HH", "yyyy-MM-dd'T'HH:mm:ssX", "2020-11-22T07:35:27-03", nil, "2020-11-22T07:35:27-03:00"},
		{"XXX reads ±HHMM", "yyyy-MM-dd'T'HH:mm:ssXXX", "2020-11-22T07:35:27+0100", nil, "2020-11-22T07:35:27+01:00"},
		{"X reads a zone name", "yyyy-MM-dd HH:mm X", "2020-11-22 07:35 UTC", la, "2020-11-22T07:35:00Z"},
		{"z reads PST as -08:00", "yyyy-MM-dd HH:mm z", "2020-07-01 10:00 PST", nil, "2020-07-01T10:00:00-08:00"},
		{"z reads PDT as -07:00", "yyyy-MM-dd HH:mm z", "2020-07-01 10:00 PDT", nil, "2020-07-01T10:00:00-07:00"},
		{"z reads GMT+hh:mm", "yyyy-MM-dd HH:mm z", "2020-07-01 10:00 GMT+05:30", nil, "2020-07-01T10:00:00+05:30"},
		{"z reads an IANA name", "yyyy-MM-dd HH:mm z", "2020-07-01 10:00 Europe/Paris", nil, "2020-07-01T10:00:00+02:00"},
		{"zone value overrides loc", "yyyy-MM-dd HH:mmZ", "2020-07-01 10:00+0000", la, "2020-07-01T10:00:00Z"},
		{"loc applies without zone", "yyyy-MM-dd HH:mm:ss", "2020-07-01 10:00:00", la, "2020-07-01T10:00:00-07:00"},
		{"loc applies in winter too", "yyyy-MM-dd HH:mm:ss", "2020-01-01 10:00:00", la, "2020-01-01T10:00:00-08:00"},
		{"one S digit is tenths", "HH:mm:ss.S", "10:00:00.1", nil, "1970-01-01T10:00:00.1Z"},
		{"SSS reads microseconds when given", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "2020-11-22T07:35:27.123456+00:00", nil, "2020-11-22T07:35:27.123456Z"},
		{"S run keeps nanoseconds", "ss.SSSSSSSSS", "01.123456789", nil, "1970-01-01T00:00:01.123456789Z"},
		{"digits beyond nanoseconds dropped", "ss.S", "01.1234567891", nil, "1970-01-01T00:00:01.123456789Z"},
		{"abutting fields take their width", "yyyyMMddHHmmssSSS", "20201122073527123", nil, "2020-11-22T07:35:27.123Z"},
		{"single letters take all digits", "y-M-d H:m:s", "2020-11-2 7:5:9", nil, "2020-11-02T07:05:09Z"},
		{"two-digit year 99", "dd/MM/yy", "01/02/99", nil, "1999-02-01T00:00:00Z"},
		{"two-digit year 05", "dd/MM/yy", "01/02/05", nil, "2005-02-01T00:00:00Z"},
		{"yy with four digits is literal", "dd/MM/yy", "01/02/1850", nil, "1850-02-01T00:00:00Z"},
		{"yyyy with two digits is literal", "yyyy-MM-dd", "20-01-01", nil, "0020-01-01T00:00:00Z"},
		{"h a PM", "yyyy-MM-dd hh:mm a", "2020-01-01 07:30 PM", nil, "2020-01-01T19:30:00Z"},
		{"12 AM is midnight", "yyyy-MM-dd hh:mm a", "2020-01-01 12:15 AM", nil, "2020-01-01T00:15:00Z"},
		{"12 PM is noon", "yyyy-MM-dd hh:mm a", "2020-01-01 12:15 pm", nil, "2020-01-01T12:15:00Z"},
		{"h without a is AM", "yyyy-MM-dd hh:mm", "2020-01-01 07:30", nil, "2020-01-01T07:30:00Z"},
		{"K is 0-11", "K:mm a", "0:30 PM", nil, "1970-01-01T12:30:00Z"},
		{"k 24 is midnight", "yyyy-MM-dd kk:mm", "2020-01-01 24:00", nil, "2020-01-01T00:00:00Z"},
		{"month and day names", "EEE, dd MMM yyyy HH:mm:ss z", "Sun, 22 Nov 2020 07:35:27 GMT", nil, "2020-11-22T07:35:27Z"},
		{"full names any case", "EEEE, MMMM d, yyyy", "sunday, NOVEMBER 22, 2020", nil, "2020-11-22T00:00:00Z"},
		{"MMM accepts full names", "d MMM yyyy", "22 September 2020", nil, "2020-09-22T00:00:00Z"},
		{"trailing text ignored as in Java", "yyyy-MM-dd", "2020-11-22T07:35:27Z", nil, "2020-11-22T00:00:00Z"},
		{"quoted quote", "hh 'o''clock' a", "07 o'clock PM", nil, "1970-01-01T19:00:00Z"},
		{"epoch milliseconds", "milliseconds", "1606030527123", nil, "2020-11-22T07:35:27.123Z"},
		{"epoch milliseconds with fraction", "milliseconds", "1606030527123.5", nil, "2020-11-22T07:35:27.1235Z"},
		{"epoch seconds", "seconds", "1606030527", la, "2020-11-22T07:35:27Z"},
		{"epoch seconds with fraction", "seconds", " 1606030527.25 ", nil, "2020-11-22T07:35:27.25Z"},
		{"negative epoch seconds", "seconds", "-1.5", nil, "1969-12-31T23:59:58.5Z"},
		{"negative epoch milliseconds", "milliseconds", "-1", nil, "1969-12-31T23:59:59.999Z"},
		{"epoch in exponent form", "milliseconds", "1.6e12", nil, "2020-09-13T12:26:40Z"},
		// The patterns of Open Connectors' docs (issue 3), each read as written.
		{"OC: literal 'Z' without fraction", "yyyy-MM-dd'T'HH:mm:ss'Z'", "2020-11-22T07:35:27Z", nil, "2020-11-22T07:35:27Z"},
		{"OC: literal 'Z' is no zone: the *Timezone applies", "yyyy-MM-dd'T'HH:mm:ss'Z'", "2020-11-22T07:35:27Z", la, "2020-11-22T07:35:27-08:00"},
		{"OC: XXX reads ±HH:MM", "yyyy-MM-dd'T'HH:mm:ssXXX", "2020-11-22T07:35:27+01:00", la, "2020-11-22T07:35:27+01:00"},
		{"OC: XXX reads Z", "yyyy-MM-dd'T'HH:mm:ssXXX", "2020-11-22T07:35:27Z", la, "2020-11-22T07:35:27Z"},
		{"OC: SSSZ reads Z", "yyyy-MM-dd'T'HH:mm:ss.SSSZ", "2020-11-22T07:35:27.123Z", la, "2020-11-22T07:35:27.123Z"},
		{"OC: RFC 1123 with Z offset", "EEE, dd MMM yyyy HH:mm:ss Z", "Sun, 22 Nov 2020 07:35:27 +0100", nil, "2020-11-22T07:35:27+01:00"},
		{"OC: RFC 1123 with Z reading GMT", "EEE, dd MMM yyyy HH:mm:ss Z", "Sun, 22 Nov 2020 07:35:27 GMT", la, "2020-11-22T07:35:27Z"},
		{"OC: US date without zone", "MM/dd/yyyy HH:mm:ss", "11/22/2020 07:35:27", nil, "2020-11-22T07:35:27Z"},
		{"OC: US date in the *Timezone", "MM/dd/yyyy HH:mm:ss", "07/01/2020 10:00:00", la, "2020-07-01T10:00:00-07:00"},
	} {
		f, err := ParseDateFormat(c.pattern)
		if err != nil {
			t.Fatalf("%s: ParseDateFormat(%q): %v", c.name, c.pattern, err)
		}
		got, err := f.Parse(c.value, c.loc)
		if err != nil {
			t.Errorf("%s: Parse(%q): %v", c.name, c.value, err)
			continue
		}
		if s := got.Format(time.RFC3339Nano); s != c.want {
			t.Errorf("%s: Parse(%q) with %q = %s, want %s", c.name, c.value, c.pattern, s, c.want)
		}
	}
}

func TestDateFormatParseRejectsBadValues(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ pattern, value, want string }{
		{"yyyy-MM-dd", "2020-02-30", `date "2020-02-30" does not match "yyyy-MM-dd": day 30 out of range for February 2020`},
		{"yyyy-MM-dd", "2020-13-01", `date "2020-13-01" does not match "yyyy-MM-dd": month 13 out of range`},
		{"yyyy-MM-dd HH:mm", "2020-01-01 10:60", `date "2020-01-01 10:60" does not match "yyyy-MM-dd HH:mm": minute 60 out of range`},
		{"yyyy-MM-dd HH", "2020-01-01 24", `date "2020-01-01 24" does not match "yyyy-MM-dd HH": hour 24 out of range`},
		{"yyyy-MM-dd", "2020/01/01", `date "2020/01/01" does not match "yyyy-MM-dd": expected "-" at position 5`},
		{"yyyy-MM-dd", "", `date "" does not match "yyyy-MM-dd": expected year at position 1`},
		{"yyyyMMdd", "202001", `date "202001" does not match "yyyyMMdd": expected day at position 7`},
		{"yyyyMMdd", "20201", `date "20201" does not match "yyyyMMdd": expected month at position 5`},
		{"yyyy-MM-dd HH:mm z", "2020-01-01 10:00 Mars/Base", `date "2020-01-01 10:00 Mars/Base" does not match "yyyy-MM-dd HH:mm z": unknown zone "Mars/Base" at position 18`},
		{"yyyy-MM-dd HH:mm Z", "2020-01-01 10:00 +2500", `date "2020-01-01 10:00 +2500" does not match "yyyy-MM-dd HH:mm Z": zone offset "+2500" out of range at position 18`},
		{"yyyy-MM-dd HH:mmZ", "2020-01-01 10:00", `date "2020-01-01 10:00" does not match "yyyy-MM-dd HH:mmZ": missing zone at end of value`},
		{"dd MMM yyyy", "01 Foo 2020", `date "01 Foo 2020" does not match "dd MMM yyyy": expected a month name at position 4`},
		{"hh:mm a", "07:00 XM", `date "07:00 XM" does not match "hh:mm a": expected AM or PM at position 7`},
		{"milliseconds", "abc", `invalid epoch value "abc" (expected a number)`},
		{"seconds", "", `empty epoch value`},
		{"seconds", "1e300", `epoch value "1e300" out of range`},
		{"MM/dd/yyyy HH:mm:ss", "22/11/2020 07:35:27", `date "22/11/2020 07:35:27" does not match "MM/dd/yyyy HH:mm:ss": month 22 out of range`},
		{"EEE, dd MMM yyyy HH:mm:ss Z", "Sun, 22 Nov 2020 07:35:27", `date "Sun, 22 Nov 2020 07:35:27" does not match "EEE, dd MMM yyyy HH:mm:ss Z": expected " " at position 26`},
		{"yyyy-MM-dd'T'HH:mm:ss'Z'", "2020-11-22T07:35:27", `date "2020-11-22T07:35:27" does not match "yyyy-MM-dd'T'HH:mm:ss'Z'": expected "Z" at position 20`},
	} {
		f, err := ParseDateFormat(c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Parse(c.value, nil)
		if err == nil || err.Error() != c.want {
			t.Errorf("Parse(%q) with %q error = %v, want %s", c.value, c.pattern, err, c.want)
		}
	}
	if _, err := (DateFormat{}).Parse("2020", nil); err == nil {
		t.Error("zero DateFormat parsed a value")
	}
}

// Found by FuzzDateFormatRoundTrip (seed regression_ten_digit_hour): Format
// pads a run of ten K to ten digits, which Parse refused as out of range.
func TestDateFormatParseReadsZeroPaddedRunsLongerThanNineDigits(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ pattern, value, want string }{
		{"KKKKKKKKKK", "0000000011", "1970-01-01T11:00:00Z"},
		{"yyyyyyyyyyyy-MM-dd", "000000002020-11-22", "2020-11-22T00:00:00Z"},
		{"dddddddddddd/MM/yyyy", "000000000022/11/2020", "2020-11-22T00:00:00Z"},
	} {
		f, got := parsesTo(t, c.pattern, c.value, c.want)
		if back, err := f.Parse(f.Format(got), nil); err != nil || !back.Equal(got) {
			t.Errorf("%q: Format = %q, Parse = %v, %v", c.pattern, f.Format(got), back, err)
		}
	}
	f, _ := ParseDateFormat("yyyyyyyyyyyy")
	want := `date "001234567890" does not match "yyyyyyyyyyyy": year 001234567890 out of range`
	if _, err := f.Parse("001234567890", nil); err == nil || err.Error() != want {
		t.Errorf("ten significant digits: error %v, want %s", err, want)
	}
}

// Found by FuzzDateFormatRoundTrip (seed regression_utc_z_before_slash): a
// zone followed by '/' was read as an IANA name, so "Z/..." (an ISO 8601
// interval, or a pattern's literal '/') failed as unknown zone "Z/...".
func TestDateFormatParseReadsAZoneBeforeASlash(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ pattern, value, want string }{
		{"yyyy-MM-dd'T'HH:mm:ssX", "2020-11-22T07:35:27Z/2020-11-23T00:00:00Z", "2020-11-22T07:35:27Z"},
		{"yyyy-MM-dd'T'HH:mm:ssX'/P1D'", "2020-11-22T07:35:27Z/P1D", "2020-11-22T07:35:27Z"},
		{"X'A/'", "ZA/", "1970-01-01T00:00:00Z"},
		{"yyyy-MM-dd HH:mm z", "2020-07-01 10:00 PDT/PST", "2020-07-01T10:00:00-07:00"},
		{"yyyy-MM-dd HH:mm z", "2020-07-01 10:00 UTC_x", "2020-07-01T10:00:00Z"},
		{"yyyy-MM-dd HH:mm z", "2020-07-01 10:00 America/New_York", "2020-07-01T10:00:00-04:00"},
		{"yyyy-MM-dd HH:mm z", "2020-07-01 10:00 Etc/GMT+5", "2020-07-01T10:00:00-05:00"},
	} {
		parsesTo(t, c.pattern, c.value, c.want)
	}
}

// parsesTo checks that pattern reads value as the instant want (RFC 3339)
// and returns the format and what it read.
func parsesTo(t *testing.T, pattern, value, want string) (DateFormat, time.Time) {
	t.Helper()
	f, err := ParseDateFormat(pattern)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Parse(value, nil)
	if err != nil || got.Format(time.RFC3339Nano) != want {
		t.Errorf("Parse(%q) with %q = %v, %v; want %s", value, pattern, got, err, want)
	}
	return f, got
}

func TestTwoDigitYearsFallInJavasCenturyWindow(t *testing.T) {
	t.Parallel()
	start := time.Date(1946, 6, 1, 0, 0, 0, 0, time.UTC) // now = 2026-06-01
	for _, c := range []struct{ yy, want int }{{46, 1946}, {99, 1999}, {0, 2000}, {26, 2026}, {45, 2045}} {
		if got := resolveTwoDigitYear(c.yy, start); got != c.want {
			t.Errorf("resolveTwoDigitYear(%d) = %d, want %d", c.yy, got, c.want)
		}
	}
}

func TestDateFormatParseJSONReadsNumbersAndStrings(t *testing.T) {
	t.Parallel()
	ms, _ := ParseDateFormat("milliseconds")
	day, _ := ParseDateFormat("yyyyMMdd")
	doc := `{"n":1606030527123,"s":"1606030527123","d":20201122,"b":true,"z":null,"o":{}}`
	for _, c := range []struct {
		f       DateFormat
		key     string
		want    string
		wantErr string
	}{
		{ms, "n", "2020-11-22T07:35:27.123Z", ""},
		{ms, "s", "2020-11-22T07:35:27.123Z", ""},
		{day, "d", "2020-11-22T00:00:00Z", ""},
		{ms, "b", "", "expected a date string or number, got true"},
		{ms, "z", "", "date is null"},
		{ms, "missing", "", "date missing"},
		{ms, "o", "", "expected a date string or number, got {}"},
	} {
		got, err := c.f.ParseJSON(gjson.Get(doc, c.key), nil)
		if c.wantErr != "" {
			if err == nil || err.Error() != c.wantErr {
				t.Errorf("%s: error = %v, want %s", c.key, err, c.wantErr)
			}
			continue
		}
		if err != nil || got.Format(time.RFC3339Nano) != c.want {
			t.Errorf("%s: = %s, %v; want %s", c.key, got.Format(time.RFC3339Nano), err, c.want)
		}
	}
}

func TestDateFormatFormatWritesJavaFields(t *testing.T) {
	t.Parallel()
	at := time.Date(2020, 11, 2, 7, 5, 9, 123456789, time.UTC)
	la, _ := time.LoadLocation("America/Los_Angeles")
	india := time.FixedZone("", 5*3600+1800)
	for _, c := range []struct {
		pattern string
		t       time.Time
		want    string
	}{
		{"yyyy-MM-dd'T'HH:mm:ss.SSS'Z'", at, "2020-11-02T07:05:09.123Z"},
		{"yyyy-MM-dd'T'HH:mm:ss.SSSSSS", at, "2020-11-02T07:05:09.123456"},
		{"ss.SSSSSSSSSSS", at, "09.12345678900"},
		{"y yy yyyy", at, "2020 20 2020"},
		{"M MM MMM MMMM", at, "11 11 Nov November"},
		{"d dd E EEEE", at, "2 02 Mon Monday"},
		{"h hh K k a", at, "7 07 7 7 AM"},
		{"hh kk KK a", at.Add(-7 * time.Hour), "12 24 00 AM"},
		{"hh a", at.Add(6 * time.Hour), "01 PM"},
		{"Z|X|XX|XXX|z", at, "+0000|Z|Z|Z|UTC"},
		{"Z|X|XX|XXX|z", at.In(la), "-0800|-08|-0800|-08:00|PST"},
		{"Z|X|XX|XXX|z", at.In(india), "+0530|+05|+0530|+05:30|GMT+05:30"},
		{"hh 'o''clock' '' a", at, "07 o'clock ' AM"},
		{"milliseconds", at, "1604300709123"},
		{"seconds", at, "1604300709"},
	} {
		f, err := ParseDateFormat(c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Format(c.t); got != c.want {
			t.Errorf("Format(%q) = %q, want %q", c.pattern, got, c.want)
		}
	}
	if got := (DateFormat{}).Format(at); got != "" {
		t.Errorf("zero DateFormat formats %q", got)
	}
}

func TestDateFormatRoundTrips(t *testing.T) {
	t.Parallel()
	at := time.Date(2021, 3, 14, 15, 9, 26, 535897000, time.UTC)
	ist, _ := ParseZone("IST")
	for _, c := range []struct {
		pattern string
		loc     *time.Location
	}{
		{"yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX", time.UTC},
		{"yyyy-MM-dd'T'HH:mm:ss.SSSSSSZ", ist},
		{"EEE, dd MMM yyyy HH:mm:ss.SSSSSS z", time.UTC},
		{"yyyy-MM-dd hh:mm:ss.SSSSSS a XXX", ist},
		{"yyyyMMddHHmmssSSSSSS", time.UTC},
		{"EEEE MMMM d yyyy kk:mm:ss.SSSSSS X", time.UTC},
	} {
		f, err := ParseDateFormat(c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		s := f.Format(at.In(c.loc))
		back, err := f.Parse(s, nil)
		if err != nil || !back.Equal(at) {
			t.Errorf("%q: Format = %q, Parse = %v, %v; want %v", c.pattern, s, back, err, at)
		}
	}
}

func TestParseZoneReadsNamesAbbreviationsAndOffsets(t *testing.T) {
	t.Parallel()
	summer := time.Date(2020, 7, 1, 12, 0, 0, 0, time.UTC)
	winter := time.Date(2020, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in                  string
		summerOff, winterOf int // offsets in minutes
	}{
		{"GMT", 0, 0},
		{"UTC", 0, 0},
		{"utc", 0, 0},
		{"Z", 0, 0},
		{"PST", -7 * 60, -8 * 60}, // America/Los_Angeles, as Java
		{"PDT", -7 * 60, -8 * 60},
		{"EST", -5 * 60, -5 * 60}, // fixed, as Java
		{"EDT", -4 * 60, -5 * 60},
		{"CST", -5 * 60, -6 * 60},
		{"MST", -7 * 60, -7 * 60},
		{"CET", 120, 60},
		{"IST", 330, 330},
		{"America/New_York", -4 * 60, -5 * 60},
		{"Asia/Kolkata", 330, 330},
		{"-8:00", -8 * 60, -8 * 60},
		{"+05:30", 330, 330},
		{"-0800", -8 * 60, -8 * 60},
		{"+02", 120, 120},
		{"GMT+2", 120, 120},
		{"GMT-08:00", -8 * 60, -8 * 60},
		{"UTC+01:00", 60, 60},
		{" +00:00 ", 0, 0},
	} {
		loc, err := ParseZone(c.in)
		if err != nil {
			t.Errorf("ParseZone(%q): %v", c.in, err)
			continue
		}
		_, s := summer.In(loc).Zone()
		_, w := winter.In(loc).Zone()
		if s/60 != c.summerOff || w/60 != c.winterOf {
			t.Errorf("ParseZone(%q): offsets %d/%d min, want %d/%d", c.in, s/60, w/60, c.summerOff, c.winterOf)
		}
	}
	for _, bad := range []string{"", "Local", "Mars/Olympus", "PSTX", "+25:00", "-8:00x", "GMT+", "+123456", "../etc/passwd"} {
		if _, err := ParseZone(bad); err == nil {
			t.Errorf("ParseZone(%q) accepted", bad)
		}
	}
	_, err := ParseZone("Mars/Olympus")
	want := `unknown time zone "Mars/Olympus" (expected an IANA name such as America/New_York, an abbreviation such as PST, or an offset such as -08:00)`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}
