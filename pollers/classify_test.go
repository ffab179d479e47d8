package pollers

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pollhook/pollhook/events"
)

// classifyBase is a resource with ISO dates; cases add or override keys.
const classifyBase = `"url":"/contacts","idField":"id",
	"updatedDateField":"updated","updatedDateFormat":"yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
	"createdDateField":"created","createdDateFormat":"yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
	"deletedDateField":"deleted_at","deletedDateFormat":"milliseconds"`

var (
	windowFrom  = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	instCreated = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	pollStart   = time.Date(2024, 3, 1, 13, 0, 0, 0, time.UTC)
	testWindow  = Window{From: windowFrom, Created: instCreated, PollStart: pollStart}
)

func TestClassifyReadsChanges(t *testing.T) {
	t.Parallel()
	type want struct {
		id, typ, date string
		report        bool
		version       string
	}
	for _, tc := range []struct {
		name   string
		config string // extra resource keys, or a whole resource when it starts with '{'
		record string
		window *Window // nil: testWindow
		want   want
	}{
		{"created equal to updated is CREATED", "",
			`{"id":"a1","created":"2024-03-01T12:30:00.000Z","updated":"2024-03-01T12:30:00.000Z"}`, nil,
			want{"a1", events.Created, "2024-03-01T12:30:00.000Z", true, ""}},
		{"updated after created is UPDATED", "",
			`{"id":"a1","created":"2024-02-01T10:00:00.000Z","updated":"2024-03-01T12:30:00.001Z"}`, nil,
			want{"a1", events.Updated, "2024-03-01T12:30:00.001Z", true, ""}},
		{"within the tolerance is CREATED dated by the update", `"createdCheckTolerance":5`,
			`{"id":"a1","created":"2024-03-01T12:30:00.000Z","updated":"2024-03-01T12:30:03.000Z"}`, nil,
			want{"a1", events.Created, "2024-03-01T12:30:03.000Z", true, ""}},
		{"at the tolerance is CREATED", `"createdCheckTolerance":5`,
			`{"id":"a1","created":"2024-03-01T12:30:00.000Z","updated":"2024-03-01T12:30:05.000Z"}`, nil,
			want{"a1", events.Created, "2024-03-01T12:30:05.000Z", true, ""}},
		{"beyond the tolerance is UPDATED", `"createdCheckTolerance":5`,
			`{"id":"a1","created":"2024-03-01T12:30:00.000Z","updated":"2024-03-01T12:30:05.001Z"}`, nil,
			want{"a1", events.Updated, "2024-03-01T12:30:05.001Z", true, ""}},
		{"updated before created within the tolerance is CREATED", `"createdCheckTolerance":1`,
			`{"id":"a1","created":"2024-03-01T12:30:00.500Z","updated":"2024-03-01T12:30:00.000Z"}`, nil,
			want{"a1", events.Created, "2024-03-01T12:30:00.000Z", true, ""}},
		{"a deleted date makes DELETED dated by it", "",
			`{"id":"a1","created":"2024-03-01T12:30:00.000Z","updated":"2024-03-01T12:30:00.000Z","deleted_at":1709297400123}`, nil,
			want{"a1", events.Deleted, "2024-03-01T12:50:00.123Z", true, ""}},
		{"a null deleted date is not a deletion", "",
			`{"id":"a1","created":"2024-02-01T12:30:00.000Z","updated":"2024-03-01T12:30:00.000Z","deleted_at":null}`, nil,
			want{"a1", events.Updated, "2024-03-01T12:30:00.000Z", true, ""}},
		{"a zero epoch deleted date is not a deletion", "",
			`{"id":"a1","created":"2024-02-01T12:30:00.000Z","updated":"2024-03-01T12:30:00.000Z","deleted_at":0}`, nil,
			want{"a1", events.Updated, "2024-03-01T12:30:00.000Z", true, ""}},
		{"without a created field it is UPDATED",
			`{"idField":"id","updatedDateField":"updated","updatedDateFormat":"yyyy-MM-dd'T'HH:mm:ss.SSSXXX"}`,
			`{"id":"a1","created":"2024-03-01T12:30:00.000Z","updated":"2024-03-01T12:30:00.000Z"}`, nil,
			want{"a1", events.Updated, "2024-03-01T12:30:00.000Z", true, ""}},
		{"filterByUpdatedDate false is CREATED dated by creation", `"filterByUpdatedDate":false`,
			`{"id":"a1","created":"2024-03-01T12:10:00.000Z","updated":"2024-03-01T12:40:00.000Z"}`, nil,
			want{"a1", events.Created, "2024-03-01T12:10:00.000Z", true, ""}},
		{"filterByUpdatedDate false filters by the created date", `"filterByUpdatedDate":false`,
			`{"id":"a1","created":"2024-03-01T11:10:00.000Z","updated":"2024-03-01T12:40:00.000Z"}`, nil,
			want{"a1", events.Created, "2024-03-01T11:10:00.000Z", false, ""}},
		{"a record never updated is CREATED dated by creation", "",
			`{"id":"a1","created":"2024-03-01T12:10:00.000Z","updated":null}`, nil,
			want{"a1", events.Created, "2024-03-01T12:10:00.000Z", true, ""}},
		{"before the window is not reported", "",
			`{"id":"a1","created":"2024-02-01T10:00:00.000Z","updated":"2024-03-01T11:59:59.999Z"}`, nil,
			want{"a1", events.Updated, "2024-03-01T11:59:59.999Z", false, ""}},
		{"at the window's start is reported", "",
			`{"id":"a1","created":"2024-02-01T10:00:00.000Z","updated":"2024-03-01T12:00:00.000Z"}`, nil,
			want{"a1", events.Updated, "2024-03-01T12:00:00.000Z", true, ""}},
		{"before the instance's creation is not reported", "",
			`{"id":"a1","created":"2023-02-01T10:00:00.000Z","updated":"2023-12-31T23:59:59.999Z"}`,
			&Window{From: time.Date(2023, 12, 1, 0, 0, 0, 0, time.UTC), Created: instCreated, PollStart: pollStart},
			want{"a1", events.Updated, "2023-12-31T23:59:59.999Z", false, ""}},
		{"delta mode ignores the window", `"mode":"delta"`,
			`{"id":"a1","created":"2024-02-01T10:00:00.000Z","updated":"2024-02-01T11:00:00.000Z"}`, nil,
			want{"a1", events.Updated, "2024-02-01T11:00:00.000Z", true, ""}},
		{"delta mode does not report what predates the instance", `"mode":"delta"`,
			`{"id":"a1","created":"2023-02-01T10:00:00.000Z","updated":"2023-02-01T11:00:00.000Z"}`, nil,
			want{"a1", events.Updated, "2023-02-01T11:00:00.000Z", false, ""}},
		{"filterByCurrentDate holds records dated after the poll's start", `"filterByCurrentDate":true`,
			`{"id":"a1","created":"2024-02-01T10:00:00.000Z","updated":"2024-03-01T13:00:00.001Z"}`, nil,
			want{"a1", events.Updated, "2024-03-01T13:00:00.001Z", false, ""}},
		{"filterByCurrentDate reports records dated at the poll's start", `"filterByCurrentDate":true`,
			`{"id":"a1","created":"2024-02-01T10:00:00.000Z","updated":"2024-03-01T13:00:00.000Z"}`, nil,
			want{"a1", events.Updated, "2024-03-01T13:00:00.000Z", true, ""}},
		{"without filterByCurrentDate future dates are reported", "",
			`{"id":"a1","created":"2024-02-01T10:00:00.000Z","updated":"2024-03-01T14:00:00.000Z"}`, nil,
			want{"a1", events.Updated, "2024-03-01T14:00:00.000Z", true, ""}},
		{"epoch milliseconds keep three digits",
			`{"idField":"id","updatedDateField":"u","updatedDateFormat":"milliseconds"}`,
			`{"id":1,"u":1709296200000}`, nil,
			want{"1", events.Updated, "2024-03-01T12:30:00.000Z", true, ""}},
		{"epoch milliseconds as a string",
			`{"idField":"id","updatedDateField":"u","updatedDateFormat":"milliseconds"}`,
			`{"id":1,"u":"1709296200042"}`, nil,
			want{"1", events.Updated, "2024-03-01T12:30:00.042Z", true, ""}},
		{"epoch seconds have no fraction",
			`{"idField":"id","updatedDateField":"u","updatedDateFormat":"seconds"}`,
			`{"id":1,"u":1709296200}`, nil,
			want{"1", events.Updated, "2024-03-01T12:30:00Z", true, ""}},
		{"a pattern without S has no fraction, in UTC",
			`{"idField":"id","updatedDateField":"u","updatedDateFormat":"yyyy-MM-dd'T'HH:mm:ssXXX"}`,
			`{"id":1,"u":"2024-03-01T04:30:00-08:00"}`, nil,
			want{"1", events.Updated, "2024-03-01T12:30:00Z", true, ""}},
		{"six S keep six digits",
			`{"idField":"id","updatedDateField":"u","updatedDateFormat":"yyyy-MM-dd HH:mm:ss.SSSSSS","updatedDateTimezone":"America/New_York"}`,
			`{"id":1,"u":"2024-03-01 07:30:00.120000"}`, nil,
			want{"1", events.Updated, "2024-03-01T12:30:00.120000Z", true, ""}},
		{"digits beyond the pattern's are kept",
			`{"idField":"id","updatedDateField":"u","updatedDateFormat":"yyyy-MM-dd'T'HH:mm:ss.SSSZ"}`,
			`{"id":1,"u":"2024-03-01T12:30:00.123456+0000"}`, nil,
			want{"1", events.Updated, "2024-03-01T12:30:00.123456Z", true, ""}},
		{"a numeric id is its JSON text", "",
			`{"id":12345678901234567890,"updated":"2024-03-01T12:30:00.000Z"}`, nil,
			want{"12345678901234567890", events.Updated, "2024-03-01T12:30:00.000Z", true, ""}},
		{"a string id is kept as is", "",
			`{"id":" A-1 é","updated":"2024-03-01T12:30:00.000Z"}`, nil,
			want{" A-1 é", events.Updated, "2024-03-01T12:30:00.000Z", true, ""}},
		{"an id in brackets",
			`{"idField":"['Contact Id']","updatedDateField":"properties.lastmodified","updatedDateFormat":"milliseconds"}`,
			`{"Contact Id":7,"properties":{"lastmodified":"1709296200000"}}`, nil,
			want{"7", events.Updated, "2024-03-01T12:30:00.000Z", true, ""}},
		{"a version is read", `"versionField":"versionNumber"`,
			`{"id":"a1","versionNumber":42,"created":"2024-02-01T12:30:00.000Z","updated":"2024-03-01T12:30:00.000Z"}`, nil,
			want{"a1", events.Updated, "2024-03-01T12:30:00.000Z", true, "42"}},
		{"a missing version falls back to the date", `"versionField":"versionNumber"`,
			`{"id":"a1","created":"2024-02-01T12:30:00.000Z","updated":"2024-03-01T12:30:00.000Z"}`, nil,
			want{"a1", events.Updated, "2024-03-01T12:30:00.000Z", true, ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			js := strings.Replace(tc.config, "{", `{"url":"/x",`, 1)
			if !strings.HasPrefix(js, "{") {
				js = "{" + classifyBase
				if tc.config != "" {
					js += "," + tc.config
				}
				js += "}"
			}
			res := parseRes(t, js)
			w := testWindow
			if tc.window != nil {
				w = *tc.window
			}
			c, err := Classify(tc.record, res, w)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			got := want{c.ObjectID, c.EventType, c.DateText, c.Report, c.Version}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if c.Date.Location() != time.UTC || !c.Date.Equal(mustRFC3339(t, c.DateText)) {
				t.Fatalf("Date %v does not match DateText %s", c.Date, c.DateText)
			}
		})
	}
}

func mustRFC3339(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestClassifyRefusesUnreadableRecords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, config, record, key, want string
	}{
		{"missing id", "", `{"updated":"2024-03-01T12:30:00.000Z"}`, "idField", `idField id: missing`},
		{"null id", "", `{"id":null,"updated":"2024-03-01T12:30:00.000Z"}`, "idField", `idField id: null`},
		{"empty id", "", `{"id":"  ","updated":"2024-03-01T12:30:00.000Z"}`, "idField", `idField id: empty`},
		{"object id", "", `{"id":{"a":1},"updated":"2024-03-01T12:30:00.000Z"}`, "idField", `idField id: expected a string or number, got an object`},
		{"boolean id", "", `{"id":true,"updated":"2024-03-01T12:30:00.000Z"}`, "idField", `got a boolean`},
		{"unparseable updated date", "", `{"id":1,"updated":"yesterday"}`, "updatedDateField", `updatedDateField updated: date "yesterday" does not match`},
		{"missing updated date without created", "", `{"id":1}`, "updatedDateField", `updatedDateField updated: not set on the record`},
		{"unparseable created date", "", `{"id":1,"updated":"2024-03-01T12:30:00.000Z","created":"2024-13-01T00:00:00.000Z"}`, "createdDateField", `createdDateField created: date`},
		{"missing created date when filtering by it", `"filterByUpdatedDate":false`, `{"id":1,"updated":"2024-03-01T12:30:00.000Z"}`, "createdDateField", `createdDateField created: not set on the record`},
		{"unparseable deleted date", "", `{"id":1,"updated":"2024-03-01T12:30:00.000Z","deleted_at":"soon"}`, "deletedDateField", `deletedDateField deleted_at: invalid epoch value`},
		{"a date of the wrong type", "", `{"id":1,"updated":{"at":"2024-03-01T12:30:00.000Z"}}`, "updatedDateField", `expected a date string or number`},
		{"an object version", `"versionField":"v"`, `{"id":1,"v":[1],"updated":"2024-03-01T12:30:00.000Z"}`, "versionField", `versionField v: expected a string or number, got an array`},
		{"not an object", "", `[1,2]`, "record", `record not a JSON object`},
		{"a string record", "", `"abc"`, "record", `not a JSON object`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			js := "{" + classifyBase
			if tc.config != "" {
				js += "," + tc.config
			}
			res := parseRes(t, js+"}")
			_, err := Classify(tc.record, res, testWindow)
			var re *RecordError
			if !errors.As(err, &re) {
				t.Fatalf("error %v (%T), want *RecordError", err, err)
			}
			if re.Key != tc.key || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q (key %s), want key %s and %q", err, re.Key, tc.key, tc.want)
			}
		})
	}
}

func TestChangeIDIdentifiesOneChange(t *testing.T) {
	t.Parallel()
	res := parseRes(t, "{"+classifyBase+"}")
	classify := func(rec string) Classified {
		t.Helper()
		c, err := Classify(rec, res, testWindow)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := classify(`{"id":"a1","name":"x","created":"2024-02-01T12:30:00.000Z","updated":"2024-03-01T12:30:00.000Z"}`)
	// The same change read again, in another form: same id.
	again := classify(`{ "updated" : "2024-03-01T04:30:00.000-08:00", "id":"a1","name":"y","created":"2024-02-01T12:30:00.000Z"}`)
	later := classify(`{"id":"a1","created":"2024-02-01T12:30:00.000Z","updated":"2024-03-01T12:30:00.001Z"}`)
	other := classify(`{"id":"a2","created":"2024-02-01T12:30:00.000Z","updated":"2024-03-01T12:30:00.000Z"}`)
	if a.ChangeID(1, "contacts") != again.ChangeID(1, "contacts") {
		t.Error("the same change has two ids")
	}
	if a.ChangeID(1, "contacts") != events.ChangeID(1, "contacts", "a1", events.Updated, "2024-03-01T12:30:00.000Z") {
		t.Error("the id is not events.ChangeID of the date text")
	}
	for name, id := range map[string]string{
		"a later change":   later.ChangeID(1, "contacts"),
		"another object":   other.ChangeID(1, "contacts"),
		"another resource": a.ChangeID(1, "companies"),
		"another instance": a.ChangeID(2, "contacts"),
	} {
		if id == a.ChangeID(1, "contacts") {
			t.Errorf("%s has the same id", name)
		}
	}

	vres := parseRes(t, "{"+classifyBase+`,"versionField":"versionNumber"}`)
	v := func(rec string) string {
		t.Helper()
		c, err := Classify(rec, vres, testWindow)
		if err != nil {
			t.Fatal(err)
		}
		return c.ChangeID(1, "contacts")
	}
	v7 := v(`{"id":"a1","versionNumber":7,"updated":"2024-03-01T12:30:00.000Z"}`)
	if v7 != v(`{"id":"a1","versionNumber":7,"updated":"2024-03-01T12:31:00.000Z"}`) {
		t.Error("one version read with two dates has two ids")
	}
	if v7 == v(`{"id":"a1","versionNumber":8,"updated":"2024-03-01T12:30:00.000Z"}`) {
		t.Error("two versions with one date have one id")
	}
	if v7 != events.ChangeID(1, "contacts", "a1", events.Updated, "7") {
		t.Error("the id is not events.ChangeID of the version")
	}
}

func TestDateFormatFractionDigits(t *testing.T) {
	t.Parallel()
	for pattern, want := range map[string]int{
		"milliseconds":                    3,
		"seconds":                         0,
		"yyyy-MM-dd'T'HH:mm:ss'Z'":        0,
		"yyyy-MM-dd'T'HH:mm:ss.SSSXXX":    3,
		"yyyy-MM-dd'T'HH:mm:ss.S":         1,
		"yyyyMMddHHmmssSSSSSSSSSSSS":      9,
		"yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'": 6,
	} {
		f, err := ParseDateFormat(pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.FractionDigits(); got != want {
			t.Errorf("%s: %d fraction digits, want %d", pattern, got, want)
		}
	}
}

func BenchmarkClassify(b *testing.B) {
	res := parseRes(b, "{"+classifyBase+"}")
	rec := `{"id":"a1","name":"A long enough name","email":"a@example.com","created":"2024-02-01T12:30:00.000Z","updated":"2024-03-01T12:30:00.000Z","tags":[1,2,3]}`
	for b.Loop() {
		c, err := Classify(rec, res, testWindow)
		if err != nil || !c.Report {
			b.Fatal(err)
		}
	}
}

func TestAChangeEventKeepsNothingOfItsPage(t *testing.T) {
	res := parseRes(t, `{"url": "/c", "idField": "id", "datesConfiguration": {"updatedDateField": "u", "updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ssXXX"}}`)
	page := []byte(`[{"id":"abc","u":"2026-11-30T10:00:00Z"},{"id":42,"u":"2026-11-30T10:00:01Z"}]`)
	records, err := ExtractRecords(page, res, "c")
	if err != nil || len(records) != 2 {
		t.Fatalf("%d records, %v", len(records), err)
	}
	w := Window{From: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), PollStart: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	var got []events.ChangeMessage
	for _, r := range records {
		c, err := Classify(r, res, w)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, Message(c.Change(1, "generic", "c"), 1, r))
	}
	// The page's buffer is reused for the next page (its records dropped
	// first, as ExtractRecords requires).
	records = nil
	for i := range page {
		page[i] = 'x'
	}
	if got[0].ObjectID != "abc" || got[1].ObjectID != "42" {
		t.Errorf("object ids %q, %q after the page changed, want abc, 42", got[0].ObjectID, got[1].ObjectID)
	}
	if string(got[0].Raw) != `{"id":"abc","u":"2026-11-30T10:00:00Z"}` || string(got[1].Raw) != `{"id":42,"u":"2026-11-30T10:00:01Z"}` {
		t.Errorf("records %s, %s after the page changed", got[0].Raw, got[1].Raw)
	}
}
