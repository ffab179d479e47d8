package pollers

import (
	"testing"
	"time"
)

var expandAt = time.Date(2020, 1, 2, 3, 4, 5, 6007008, time.UTC)

func TestTemplateExpandEscapesForThePartOfTheURL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ tpl, want string }{
		{"/contacts", "/contacts"},
		{"https://api.example.com/x?since=${gmtDate:yyyy-MM-dd'T'HH:mm:ss.SSS'Z'}&order=date_created",
			"https://api.example.com/x?since=2020-01-02T03%3A04%3A05.006Z&order=date_created"},
		{"/x?since=${dateTimeZone:-8:00:yyyy-MM-dd'T'HH:mm:ssXXX}", "/x?since=2020-01-01T19%3A04%3A05-08%3A00"},
		{"/x?since=${dateTimeZone:+05:30:yyyy-MM-dd'T'HH:mm:ssZ}", "/x?since=2020-01-02T08%3A34%3A05%2B0530"},
		{"/x/${dateTimeZone:+05:30:yyyy-MM-dd'T'HH:mm:ssZ}/y", "/x/2020-01-02T08:34:05+0530/y"},
		{"/x/${date:yyyy/MM/dd}?q=${date:yyyy/MM/dd}", "/x/2020%2F01%2F02?q=2020%2F01%2F02"},
		{"/x?q=${gmtDate:EEE, dd MMM yyyy}", "/x?q=Thu%2C+02+Jan+2020"},
		{"/x/${gmtDate:EEE, dd MMM yyyy}", "/x/Thu%2C%2002%20Jan%202020"},
		{"/x?a=${epoch}&b=${epoch:s}&c=${EPOCH:ms}&d=${epoch:us}", "/x?a=1577934245006&b=1577934245&c=1577934245006&d=1577934245006007"},
		{"/x?a=${GMTDATE:yyyy}&b=${Date:yyyy}&c=${DATETIMEZONE:PST:yyyy-MM-dd HH z}", "/x?a=2020&b=2020&c=2020-01-01+19+PST"},
		{"/x?t=${dateTimeZone:America/New_York:HH:mm}", "/x?t=22%3A04"},
		{"/x?t=${dateTimeZone:GMT+05:30:HH:mm}", "/x?t=08%3A34"},
		{"/x?t=${gmtDate:HH'}'mm}", "/x?t=03%7D04"},
		{"/x#frag=${gmtDate:HH+mm}", "/x#frag=03%2B04"},
		{"/price$?a=$5", "/price$?a=$5"},
	} {
		tp, err := ParseTemplate(c.tpl)
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", c.tpl, err)
			continue
		}
		if got := tp.Expand(expandAt); got != c.want {
			t.Errorf("Expand(%q) = %q, want %q", c.tpl, got, c.want)
		}
		if tp.String() != c.tpl {
			t.Errorf("String() = %q", tp.String())
		}
	}
}

func TestTemplateExpandTextDoesNotEscape(t *testing.T) {
	t.Parallel()
	tp, err := ParseTemplate("since ${dateTimeZone:+05:30:yyyy-MM-dd'T'HH:mm:ssXXX} & ${epoch:s}?")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tp.ExpandText(expandAt), "since 2020-01-02T08:34:05+05:30 & 1577934245?"; got != want {
		t.Errorf("ExpandText = %q, want %q", got, want)
	}
	if !tp.HasPlaceholders() {
		t.Error("HasPlaceholders = false")
	}
	plain, _ := ParseTemplate("/contacts?x=1")
	if plain.HasPlaceholders() || plain.Expand(expandAt) != "/contacts?x=1" {
		t.Error("a template without placeholders changed")
	}
}

func TestParseTemplateRejectsBadPlaceholders(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ tpl, want string }{
		{"/x?since=${gmtDate:yyyy", `unclosed placeholder "${gmtDate:yyyy" at position 10 (expected a closing '}')`},
		{"/x?since=${", `unclosed placeholder "${" at position 10 (expected a closing '}')`},
		{"/x?since=${now}", `placeholder "${now}": unknown placeholder "now" (expected gmtDate, date, dateTimeZone or epoch)`},
		{"/x?since=${}", `placeholder "${}": unknown placeholder "" (expected gmtDate, date, dateTimeZone or epoch)`},
		{"/x?since=${gmtDate}", `placeholder "${gmtDate}": missing date format (expected ${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'})`},
		{"/x?since=${date:}", `placeholder "${date:}": missing date format (expected ${date:yyyy-MM-dd'T'HH:mm:ss'Z'})`},
		{"/x?since=${gmtDate:yyyy-MM-ddTHH}", `placeholder "${gmtDate:yyyy-MM-ddTHH}": invalid date pattern "yyyy-MM-ddTHH": unquoted letter 'T' (quote literals: 'T')`},
		{"/x?since=${epoch:ns}", `placeholder "${epoch:ns}": unknown epoch unit "ns" (expected s, ms or us)`},
		{"/x?since=${dateTimeZone:Mars/Olympus:yyyy}", `placeholder "${dateTimeZone:Mars/Olympus:yyyy}": unknown time zone "Mars/Olympus" (expected an IANA name such as America/New_York, an abbreviation such as PST, or an offset such as -08:00)`},
		{"/x?since=${dateTimeZone:PST}", `placeholder "${dateTimeZone:PST}": missing zone or date format (expected ${dateTimeZone:ZONE:FORMAT})`},
		{"/x?since=${dateTimeZone:PST:}", `placeholder "${dateTimeZone:PST:}": missing date format after zone "PST"`},
		{"/x?since=${dateTimeZone:PST:yyyy-MM-ddTHH}", `placeholder "${dateTimeZone:PST:yyyy-MM-ddTHH}": invalid date pattern "yyyy-MM-ddTHH": unquoted letter 'T' (quote literals: 'T')`},
		{"/x?since=${gmtDate:HH'}", `unclosed placeholder "${gmtDate:HH'}" at position 10 (expected a closing '}')`},
	} {
		_, err := ParseTemplate(c.tpl)
		if err == nil || err.Error() != c.want {
			t.Errorf("ParseTemplate(%q) error = %v, want %s", c.tpl, err, c.want)
		}
	}
}

func TestBodyExpandsStringsWithoutURLEscaping(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		body any
		want string
	}{
		{"object", map[string]any{
			"since": "${dateTimeZone:+05:30:yyyy-MM-dd'T'HH:mm:ssXXX}",
			"page":  float64(1),
			"tags":  []any{"a&b", "${epoch:s}", nil, true},
			"empty": map[string]any{},
		}, `{"empty":{},"page":1,"since":"2020-01-02T08:34:05+05:30","tags":["a&b","1577934245",null,true]}`},
		{"string body is sent as text", `{"since":"${gmtDate:yyyy-MM-dd}"}`, `{"since":"2020-01-02"}`},
		{"quotes in a format are JSON-escaped", map[string]any{"q": `${gmtDate:'"'yyyy'"'}`}, `{"q":"\"2020\""}`},
		{"array", []any{"${epoch}"}, `["1577934245006"]`},
	} {
		b, err := ParseBody(c.body)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := string(b.Expand(expandAt)); got != c.want {
			t.Errorf("%s: Expand = %s, want %s", c.name, got, c.want)
		}
	}
	none, err := ParseBody(nil)
	if err != nil || !none.IsZero() || none.Expand(expandAt) != nil {
		t.Errorf("nil body: %v %v", none, err)
	}
	_, err = ParseBody(map[string]any{"filter": map[string]any{"since": "${bad}"}})
	want := `filter.since: placeholder "${bad}": unknown placeholder "bad" (expected gmtDate, date, dateTimeZone or epoch)`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}
