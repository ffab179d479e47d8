package pollers

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// decode turns a JSON object into the map ParseResource receives.
func decode(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return m
}

const specContacts = `{
	"url": "/contacts?since=${gmtDate:yyyy-MM-dd'T'HH:mm:ss.SSS'Z'}&order=date_created",
	"idField": "id",
	"datesConfiguration": {
		"updatedDateField": "last_updated",
		"updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSZ",
		"updatedDateTimezone": "GMT",
		"createdDateField": "date_created",
		"createdDateFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSZ",
		"createdDateTimezone": "GMT"
	}
}`

func TestParseResourceReadsTheSpecExample(t *testing.T) {
	t.Parallel()
	r, probs := ParseResource(decode(t, specContacts), Defaults{})
	if probs != nil {
		t.Fatalf("problems: %v", probs)
	}
	if r.Method != "GET" || r.Overlap != time.Minute || r.PollDelay != 0 || !r.FilterByUpdatedDate ||
		r.FilterByCurrentDate || r.Mode != ModeWindow || r.Pagination.Type != PaginationNone || !r.Body.IsZero() {
		t.Errorf("defaults wrong: %+v", r)
	}
	if r.IDField.String() != "id" || r.Updated.Field.String() != "last_updated" || r.Created.Field.String() != "date_created" || r.Deleted.IsSet() {
		t.Errorf("fields wrong: %+v", r)
	}
	rec := `{"id": 1, "last_updated": "2020-11-22T07:35:27.123-0800", "date_created": "2020-11-22T07:35:27.000-0800"}`
	u, ok, err := r.Updated.Read(rec)
	if err != nil || !ok || u.UTC().Format(time.RFC3339Nano) != "2020-11-22T15:35:27.123Z" {
		t.Errorf("Updated.Read = %v %v %v", u, ok, err)
	}
	wm := time.Date(2020, 11, 22, 16, 0, 0, 0, time.UTC)
	if got := r.URL.Expand(r.Since(wm)); got != "/contacts?since=2020-11-22T15%3A59%3A00.000Z&order=date_created" {
		t.Errorf("URL = %s", got)
	}
}

func TestParseResourceAcceptsClientVariants(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		raw      string
		defaults Defaults
		check    func(t *testing.T, r Resource)
	}{
		{"date keys at resource level, strings for numbers and booleans", `{
			"url": "https://api.example.com/v1/deals", "idField": "['Deal Id']",
			"updatedDateField": "properties.lastmodified", "updatedDateFormat": "milliseconds",
			"pollDelay": "30", "overlap": 120.5, "createdCheckTolerance": "2", "filterByCurrentDate": "TRUE",
			"pageSize": "100", "rateLimit": "2.5", "unknownKey": {"kept": true}}`, Defaults{},
			func(t *testing.T, r Resource) {
				if r.PollDelay != 30*time.Second || r.Overlap != 120500*time.Millisecond || r.CreatedCheckTolerance != 2*time.Second ||
					!r.FilterByCurrentDate || r.PageSize != 100 || r.RateLimit != 2.5 || !r.Updated.Format.IsEpoch() {
					t.Errorf("%+v", r)
				}
				if got := r.Since(time.Unix(1000, 0)); !got.Equal(time.Unix(1000-150, -5e8)) {
					t.Errorf("Since = %v", got)
				}
			}},
		{"connector defaults fill idField, pagination and rate limit", `{"url": "/a", "datesConfiguration": {"updatedDateField": "u", "updatedDateFormat": "seconds"}}`,
			Defaults{IDField: "finfoArticleId", Pagination: map[string]any{"type": "next", "nextPath": "links.next"}, RateLimit: 10},
			func(t *testing.T, r Resource) {
				if r.IDField.String() != "finfoArticleId" || r.Pagination.Type != PaginationNext || r.Pagination.NextPath.String() != "links.next" || r.RateLimit != 10 {
					t.Errorf("%+v", r)
				}
			}},
		{"resource values beat defaults", `{"url": "/a", "idField": "key", "rateLimit": 1, "pagination": {"type": "none"},
			"datesConfiguration": {"updatedDateField": "u", "updatedDateFormat": "seconds"}}`,
			Defaults{IDField: "id", Pagination: map[string]any{"type": "link"}, RateLimit: 10},
			func(t *testing.T, r Resource) {
				if r.IDField.String() != "key" || r.Pagination.Type != PaginationNone || r.RateLimit != 1 {
					t.Errorf("%+v", r)
				}
			}},
		{"filter by created date needs only created", `{"url": "/a", "idField": "id", "filterByUpdateDate": "false",
			"datesConfiguration": {"createdDateField": "c", "createdDateFormat": "yyyy-MM-dd", "createdDateTimeZone": "-8:00"}}`, Defaults{},
			func(t *testing.T, r Resource) {
				if r.FilterByUpdatedDate || !r.Created.IsSet() || r.Updated.IsSet() || r.EventDate().Field.String() != "c" {
					t.Errorf("%+v", r)
				}
				c, ok, err := r.Created.Read(`{"c":"2020-01-01"}`)
				if err != nil || !ok || c.UTC().Format(time.RFC3339) != "2020-01-01T08:00:00Z" {
					t.Errorf("Created.Read = %v %v %v", c, ok, err)
				}
			}},
		{"delta mode, version, deleted date, POST body, cursor pagination", `{"url": "/sync", "method": "post", "mode": "Delta",
			"body": {"since": "${epoch}"}, "idField": "id", "versionField": "versionNumber", "recordsPath": "data.items",
			"datesConfiguration": {"updatedDateField": "modifiedTimestamp", "updatedDateFormat": "milliseconds",
				"createdDateField": "createdTimestamp", "createdDateFormat": "milliseconds",
				"deletedDateField": "deletedTimestamp", "deletedDateFormat": "milliseconds"},
			"pagination": {"type": "cursor", "cursorPath": "meta.next", "cursorParam": "cursor"}}`, Defaults{},
			func(t *testing.T, r Resource) {
				if r.Method != "POST" || r.Mode != ModeDelta || r.VersionField.String() != "versionNumber" || r.RecordsPath.String() != "data.items" ||
					r.Pagination.CursorParam != "cursor" || r.Pagination.CursorPath.String() != "meta.next" || !r.Deleted.IsSet() {
					t.Errorf("%+v", r)
				}
				if got := string(r.Body.Expand(time.UnixMilli(42))); got != `{"since":"42"}` {
					t.Errorf("body = %s", got)
				}
				for rec, want := range map[string]bool{`{"deletedTimestamp": null}`: false, `{"deletedTimestamp": 0}`: false,
					`{"deletedTimestamp": ""}`: false, `{}`: false, `{"deletedTimestamp": 1600000000000}`: true} {
					if _, ok, err := r.Deleted.Read(rec); ok != want || err != nil {
						t.Errorf("Deleted.Read(%s) = %v, %v", rec, ok, err)
					}
				}
				if _, _, err := r.Deleted.Read(`{"deletedTimestamp": "yesterday"}`); err == nil {
					t.Error("a bad deleted date read")
				}
			}},
		{"offset pagination with resource pageSize, JSON-string nested objects", `{"url": "/a", "idField": "id", "pageSize": 50,
			"datesConfiguration": "{\"updatedDateField\": \"u\", \"updatedDateFormat\": \"seconds\"}",
			"pagination": "{\"type\": \"OFFSET\", \"offsetParam\": \"skip\", \"limitParam\": \"take\"}"}`, Defaults{},
			func(t *testing.T, r Resource) {
				want := Pagination{Type: PaginationOffset, OffsetParam: "skip", LimitParam: "take", PageSize: 50}
				if !reflect.DeepEqual(r.Pagination, want) || r.Updated.Field.String() != "u" {
					t.Errorf("%+v", r.Pagination)
				}
			}},
		{"pagination as a bare type, page and repeat", `{"url": "/a", "idField": "id", "updatedDateField": "u", "updatedDateFormat": "seconds",
			"pagination": {"type": "page", "pageParam": "p", "pageSize": 20}}`, Defaults{},
			func(t *testing.T, r Resource) {
				if r.Pagination.Type != PaginationPage || r.Pagination.PageParam != "p" || r.PageSize != 20 || r.Pagination.PageSize != 20 {
					t.Errorf("%+v", r.Pagination)
				}
			}},
		{"same value in both places is fine", `{"url": "/a", "idField": "id", "overlap": "30",
			"datesConfiguration": {"updatedDateField": "u", "updatedDateFormat": "seconds", "overlap": 30}, "pagination": "link"}`, Defaults{},
			func(t *testing.T, r Resource) {
				if r.Overlap != 30*time.Second || r.Pagination.Type != PaginationLink {
					t.Errorf("%+v", r)
				}
			}},
		{"GET with an empty body object and blank optional keys", `{"url": "/a", "idField": "id", "body": {}, "method": "",
			"deletedDateField": "", "versionField": null, "datesConfiguration": {"updatedDateField": "u", "updatedDateFormat": "seconds"}}`, Defaults{},
			func(t *testing.T, r Resource) {
				if r.Method != "GET" || !r.Body.IsZero() || r.Deleted.IsSet() || !r.VersionField.IsZero() {
					t.Errorf("%+v", r)
				}
			}},
	} {
		r, probs := ParseResource(decode(t, c.raw), c.defaults)
		if probs != nil {
			t.Errorf("%s: problems %v", c.name, probs)
			continue
		}
		t.Run(c.name, func(t *testing.T) { c.check(t, r) })
	}
}

func TestParseResourceReportsEveryProblem(t *testing.T) {
	t.Parallel()
	const dates = `"datesConfiguration": {"updatedDateField": "u", "updatedDateFormat": "seconds"}`
	for _, c := range []struct {
		name string
		raw  string
		want []Problem
	}{
		{"empty resource", `{}`, []Problem{
			{"url", "required: the upstream URL to poll, absolute or a path appended to the instance's base URL"},
			{"idField", `required: the path of the record's id, e.g. "id"`},
			{"datesConfiguration.updatedDateField", "required unless filterByUpdatedDate is false (the path of the record's updated date)"},
			{"datesConfiguration.updatedDateFormat", "required unless filterByUpdatedDate is false (a Java date pattern such as yyyy-MM-dd'T'HH:mm:ss.SSSXXX, or milliseconds or seconds)"},
		}},
		{"unquoted letter in a date format", `{"url": "/a", "idField": "id", "datesConfiguration": {"updatedDateField": "u", "updatedDateFormat": "yyyy-MM-ddTHH"}}`, []Problem{
			{"datesConfiguration.updatedDateFormat", `invalid date pattern "yyyy-MM-ddTHH": unquoted letter 'T' (quote literals: 'T')`},
		}},
		{"format at resource level keeps its path", `{"url": "/a", "idField": "id", "updatedDateField": "u", "updatedDateFormat": "YYYY"}`, []Problem{
			{"updatedDateFormat", `invalid date pattern "YYYY": unquoted letter 'Y' (quote literals: 'Y')`},
		}},
		{"field without format", `{"url": "/a", "idField": "id", "updatedDateField": "u"}`, []Problem{
			{"updatedDateFormat", "required when updatedDateField is set (a Java date pattern such as yyyy-MM-dd'T'HH:mm:ss.SSSXXX, or milliseconds or seconds)"},
		}},
		{"format without field", `{"url": "/a", "idField": "id", ` + dates + `, "datesConfiguration2": 1, "deletedDateFormat": "seconds"}`, []Problem{
			{"deletedDateField", "required when deletedDateFormat is set (the path of the record's deleted date)"},
		}},
		{"created field without format inside datesConfiguration", `{"url": "/a", "idField": "id", "datesConfiguration": {"updatedDateField": "u", "updatedDateFormat": "seconds", "createdDateField": "c"}}`, []Problem{
			{"datesConfiguration.createdDateFormat", "required when createdDateField is set (a Java date pattern such as yyyy-MM-dd'T'HH:mm:ss.SSSXXX, or milliseconds or seconds)"},
		}},
		{"filter by created date without created", `{"url": "/a", "idField": "id", "filterByUpdatedDate": false}`, []Problem{
			{"datesConfiguration.createdDateField", "required when filterByUpdatedDate is false (the path of the record's created date)"},
			{"datesConfiguration.createdDateFormat", "required when filterByUpdatedDate is false (a Java date pattern such as yyyy-MM-dd'T'HH:mm:ss.SSSXXX, or milliseconds or seconds)"},
		}},
		{"bad time zone", `{"url": "/a", "idField": "id", "datesConfiguration": {"updatedDateField": "u", "updatedDateFormat": "yyyy", "updatedDateTimeZone": "Moon"}}`, []Problem{
			{"datesConfiguration.updatedDateTimeZone", `unknown time zone "Moon" (expected an IANA name such as America/New_York, an abbreviation such as PST, or an offset such as -08:00)`},
		}},
		{"hubs url", `{"url": "/hubs/crm/contacts?where=x", "idField": "id", ` + dates + `}`, []Problem{
			{"url", `"/hubs/crm/contacts?where=x" is an Open Connectors hub path; pollhook polls the upstream's own API, not Open Connectors' hubs: give the upstream's path (e.g. /contacts) or its absolute URL`},
		}},
		{"absolute hubs url", `{"url": "https://api.openconnectors.ext.hana.ondemand.com/elements/api-v2/hubs/crm/contacts", "idField": "id", ` + dates + `}`, []Problem{
			{"url", `"https://api.openconnectors.ext.hana.ondemand.com/elements/api-v2/hubs/crm/contacts" is an Open Connectors hub path; pollhook polls the upstream's own API, not Open Connectors' hubs: give the upstream's path (e.g. /contacts) or its absolute URL`},
		}},
		{"bad placeholder", `{"url": "/a?since=${gmtDate:yyyy-MM-ddTHH:mm}", "idField": "id", ` + dates + `}`, []Problem{
			{"url", `placeholder "${gmtDate:yyyy-MM-ddTHH:mm}": invalid date pattern "yyyy-MM-ddTHH:mm": unquoted letter 'T' (quote literals: 'T')`},
		}},
		{"url not a string", `{"url": 5, "idField": "id", ` + dates + `}`, []Problem{{"url", "must be a string, got 5"}}},
		{"ftp url", `{"url": "ftp://host/a", "idField": "id", ` + dates + `}`, []Problem{
			{"url", `unsupported scheme "ftp" (expected an http or https URL, or a path appended to the base URL)`},
		}},
		{"bad method", `{"url": "/a", "method": "PUT", "body": {"x": 1}, "idField": "id", ` + dates + `}`, []Problem{
			{"method", `unsupported method "PUT" (expected GET or POST)`},
		}},
		{"body with GET", `{"url": "/a", "body": {"x": 1}, "idField": "id", ` + dates + `}`, []Problem{
			{"body", "a body is only sent with method POST"},
		}},
		{"bad placeholder in body", `{"url": "/a", "method": "POST", "body": {"q": ["${epoch:ns}"]}, "idField": "id", ` + dates + `}`, []Problem{
			{"body", `q[0]: placeholder "${epoch:ns}": unknown epoch unit "ns" (expected s, ms or us)`},
		}},
		{"bad field path", `{"url": "/a", "idField": "items[", ` + dates + `}`, []Problem{
			{"idField", `invalid field path "items[": unclosed '[' at position 6`},
		}},
		{"idField not a string", `{"url": "/a", "idField": ["id"], ` + dates + `}`, []Problem{{"idField", `must be a string, got ["id"]`}}},
		{"negative and non-numeric seconds", `{"url": "/a", "idField": "id", ` + dates + `, "overlap": -1, "pollDelay": "soon", "createdCheckTolerance": true}`, []Problem{
			{"pollDelay", `must be a number, got "soon"`},
			{"overlap", "must not be negative, got -1"},
			{"createdCheckTolerance", "must be a number, got true"},
		}},
		{"absurd duration", `{"url": "/a", "idField": "id", ` + dates + `, "overlap": 1e12}`, []Problem{
			{"overlap", "must be at most 1000000000 seconds, got 1000000000000"},
		}},
		{"bad booleans", `{"url": "/a", "idField": "id", ` + dates + `, "filterByUpdatedDate": "yes", "filterByCurrentDate": 1}`, []Problem{
			{"filterByUpdatedDate", `must be true or false, got "yes"`},
			{"filterByCurrentDate", "must be true or false, got 1"},
		}},
		{"bad mode", `{"url": "/a", "idField": "id", ` + dates + `, "mode": "stream"}`, []Problem{
			{"mode", `unsupported mode "stream" (expected window or delta)`},
		}},
		{"bad page size and rate limit", `{"url": "/a", "idField": "id", ` + dates + `, "pageSize": 2.5, "rateLimit": "-3"}`, []Problem{
			{"rateLimit", `must not be negative, got "-3"`},
			{"pageSize", "must be a whole number from 1 to 1000000, got 2.5"},
		}},
		{"conflicting values in both places", `{"url": "/a", "idField": "id", "updatedDateFormat": "seconds", "datesConfiguration": {"updatedDateField": "u", "updatedDateFormat": "milliseconds"}}`, []Problem{
			{"updatedDateFormat", `conflicts with datesConfiguration.updatedDateFormat ("milliseconds", not "seconds"): set it once`},
		}},
		{"datesConfiguration not an object", `{"url": "/a", "idField": "id", "datesConfiguration": [1]}`, []Problem{
			{"datesConfiguration", `must be an object such as {"updatedDateField": "updated_at", "updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ssXXX"}`},
			{"datesConfiguration.updatedDateField", "required unless filterByUpdatedDate is false (the path of the record's updated date)"},
			{"datesConfiguration.updatedDateFormat", "required unless filterByUpdatedDate is false (a Java date pattern such as yyyy-MM-dd'T'HH:mm:ss.SSSXXX, or milliseconds or seconds)"},
		}},
		{"pagination without type", `{"url": "/a", "idField": "id", ` + dates + `, "pagination": {"nextPath": "next"}}`, []Problem{
			{"pagination.type", "required (one of none, link, next, offset, page, cursor or repeat)"},
		}},
		{"unknown pagination type", `{"url": "/a", "idField": "id", ` + dates + `, "pagination": {"type": "token"}}`, []Problem{
			{"pagination.type", `unsupported type "token" (expected none, link, next, offset, page, cursor or repeat)`},
		}},
		{"next without nextPath", `{"url": "/a", "idField": "id", ` + dates + `, "pagination": {"type": "next"}}`, []Problem{
			{"pagination.nextPath", "required for pagination type next (the path of the next page's URL in the response body)"},
		}},
		{"offset without its params", `{"url": "/a", "idField": "id", ` + dates + `, "pagination": {"type": "offset"}}`, []Problem{
			{"pagination.offsetParam", "required for pagination type offset (the query parameter of the offset)"},
			{"pagination.pageSize", "required for pagination type offset (the number of records per page, to detect the last page)"},
		}},
		{"page without pageParam", `{"url": "/a", "idField": "id", ` + dates + `, "pagination": {"type": "page"}}`, []Problem{
			{"pagination.pageParam", "required for pagination type page (the query parameter of the page number, from 1)"},
		}},
		{"cursor without its params", `{"url": "/a", "idField": "id", ` + dates + `, "pagination": {"type": "cursor", "cursorPath": "a..b"}}`, []Problem{
			{"pagination.cursorPath", `invalid field path "a..b": empty key at position 3`},
			{"pagination.cursorParam", "required for pagination type cursor (the query parameter the cursor is sent back as)"},
		}},
		{"pagination not an object", `{"url": "/a", "idField": "id", ` + dates + `, "pagination": 3}`, []Problem{
			{"pagination", `must be an object such as {"type": "next", "nextPath": "links.next"}`},
		}},
		{"pagination page size conflicts", `{"url": "/a", "idField": "id", ` + dates + `, "pageSize": 10, "pagination": {"type": "page", "pageParam": "p", "pageSize": 20}}`, []Problem{
			{"pagination.pageSize", "conflicts with the resource's pageSize (10, not 20): set it once"},
		}},
	} {
		_, got := ParseResource(decode(t, c.raw), Defaults{})
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

func TestParseResourceSurvivesAnyJSONTypes(t *testing.T) {
	t.Parallel()
	values := []any{nil, 1.5, -1.0, "x", "", true, []any{1, "a"}, map[string]any{"type": []any{}}}
	keys := []string{"url", "method", "body", "idField", "datesConfiguration", "updatedDateField", "updatedDateFormat",
		"updatedDateTimezone", "pagination", "pageSize", "rateLimit", "mode", "overlap", "filterByUpdatedDate"}
	for _, k := range keys {
		for _, v := range values {
			_, _ = ParseResource(map[string]any{k: v}, Defaults{Pagination: map[string]any{"type": 7}})
		}
	}
	_, probs := ParseResource(nil, Defaults{IDField: "id"})
	if len(probs) != 3 {
		t.Errorf("nil resource: %v", probs)
	}
}

func TestParseLegacyURLsConvertsEachLine(t *testing.T) {
	t.Parallel()
	in := "contacts|/contacts?since=${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}||last_updated|yyyy-MM-dd'T'HH:mm:ss.SSSZ|GMT|date_created|yyyy-MM-dd'T'HH:mm:ss.SSSZ|GMT\r\n" +
		"\n   \n" +
		"notes|/notes\n"
	got, probs := ParseLegacyURLs(in)
	if probs != nil {
		t.Fatalf("problems: %v", probs)
	}
	want := map[string]map[string]any{
		"contacts": {"url": "/contacts?since=${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}", "datesConfiguration": map[string]any{
			"updatedDateField": "last_updated", "updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSZ", "updatedDateTimezone": "GMT",
			"createdDateField": "date_created", "createdDateFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSZ", "createdDateTimezone": "GMT"}},
		"notes": {"url": "/notes"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if _, probs := ParseResource(got["contacts"], Defaults{IDField: "id"}); probs != nil {
		t.Errorf("converted resource has problems: %v", probs)
	}
}

func TestParseLegacyURLsReportsBadLines(t *testing.T) {
	t.Parallel()
	in := "contacts|/c|//contact[id>1]\n|/x\nnotes\ncontacts|/c2\nwide|/w|||||||||extra"
	_, got := ParseLegacyURLs(in)
	want := []Problem{
		{"contacts.xPathFilter", `xPathFilter "//contact[id>1]" is not supported: leave it empty and select records with the url and recordsPath`},
		{"", "line 2: missing resource name (expected resource|url|xPathFilter|updatedDateField|updatedDateFormat|updatedDateTimeZone|createdDateField|createdDateFormat|createdDateTimeZone)"},
		{"notes.url", "line 3 has no url (expected resource|url|...)"},
		{"contacts", "resource defined twice (lines 1 and 4)"},
		{"wide", "line 5 has 11 fields, expected at most 9 (resource|url|xPathFilter|updatedDateField|updatedDateFormat|updatedDateTimeZone|createdDateField|createdDateFormat|createdDateTimeZone)"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
