package pollers

import (
	"encoding/json"
	"testing"
	"time"
)

var fuzzTimes = []time.Time{
	time.Date(2020, 11, 22, 7, 35, 27, 123456789, time.UTC),
	time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
	time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", -12*3600)),
}

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
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		_, _ = df.Parse(value, nil)
		for _, at := range fuzzTimes {
			s := df.Format(at)
			// Lossy patterns need not read back; this checks for panics.
			_, _ = df.Parse(s, time.UTC)
		}
	})
}

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
			return
		}
		for _, at := range fuzzTimes {
			_ = tp.Expand(at)
			_ = tp.ExpandText(at)
		}
		if !tp.HasPlaceholders() && tp.Expand(fuzzTimes[0]) != s {
			t.Fatalf("literal template %q expanded to %q", s, tp.Expand(fuzzTimes[0]))
		}
	})
}

func FuzzFieldPath(f *testing.F) {
	for _, s := range []string{"a.b", "['Modified Time']", "items[0].id", `a["b.c"]`, `$.x['\'']`, "@this|#", "a..b", "[", "a[99999999999999999999]"} {
		f.Add(s)
	}
	doc := `{"a":{"b":1,"b.c":[1,2]},"items":[{"id":1}],"Modified Time":"x","@this":{"#":2}}`
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseFieldPath(s)
		if err != nil {
			return
		}
		if p.IsZero() {
			t.Fatalf("%q compiled to an empty path", s)
		}
		_ = p.Get(doc)
	})
}

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
		_ = r.Body.Expand(at)
		if r.IDField.IsZero() || r.Method == "" || r.Overlap < 0 || r.PollDelay < 0 || r.EventDate().Field.IsZero() {
			t.Fatalf("valid resource with missing parts: %+v", r)
		}
	})
}
