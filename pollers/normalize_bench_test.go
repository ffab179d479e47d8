package pollers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/pollhook/pollhook/events"
)

// The normalization benchmarks: a 1,000-record page of Keap-like contacts
// turned into change events ready to publish (what a poll does between
// reading a page and storing it), against a baseline that only iterates
// the same page's records with gjson. BENCHMARKS.md has the figures:
//
//	go test ./pollers -run '^$' -bench 'KeapPage' -benchmem -count 6 -cpu 1

const benchRecords = 1000

// keapResource is the infusionsoftrest definition's contacts resource.
const keapResource = `{"url": "/contacts?since=${gmtDate:yyyy-MM-dd'T'HH:mm:ss.SSS'Z'}&order=date_created", "idField": "id",
	"datesConfiguration": {
		"updatedDateField": "last_updated", "updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSZ", "updatedDateTimezone": "GMT",
		"createdDateField": "date_created", "createdDateFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSZ", "createdDateTimezone": "GMT"}}`

// keapPage is a Keap contacts list of n records, about 700 bytes each:
// a third created in the window, the rest updated in it.
func keapPage(n int) []byte {
	base := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	var b strings.Builder
	b.WriteString(`{"contacts":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		created := base.Add(time.Duration(i) * time.Second)
		updated := created
		if i%3 != 0 {
			updated = created.Add(time.Duration(i) * time.Millisecond * 37)
		}
		fmt.Fprintf(&b, `{"id":%d,"given_name":"Given%d","family_name":"Family","middle_name":null,"company":{"id":17,"company_name":"Example Ltd"},`+
			`"email_addresses":[{"email":"c%d@example.com","field":"EMAIL1"}],"phone_numbers":[{"number":"+47 555 0%04d","field":"PHONE1","type":"Work"}],`+
			`"addresses":[{"line1":"Storgata %d","locality":"Oslo","postal_code":"0155","country_code":"NOR","field":"BILLING"}],`+
			`"tag_ids":[91,92,%d],"custom_fields":[{"id":3,"content":"value %d"}],"owner_id":5,"lead_source_id":null,`+
			`"date_created":"%s","last_updated":"%s","last_updated_utc_millis":%d,"opt_in_reason":"Customer opted-in through webform"}`,
			1000+i, i, i, i%10000, i, 100+i%7, i,
			created.Format("2006-01-02T15:04:05.000-0700"), updated.Format("2006-01-02T15:04:05.000-0700"), updated.UnixMilli())
	}
	fmt.Fprintf(&b, `],"count":%d,"next":"https://api.infusionsoft.com/crm/rest/v1/contacts?limit=1000&offset=1000"}`, n)
	return []byte(b.String())
}

var benchSink events.ChangeMessage

func BenchmarkNormalizeKeapPage(b *testing.B) {
	page := keapPage(benchRecords)
	res := parseRes(b, keapResource)
	w := Window{
		From:      time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC),
		Created:   time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		PollStart: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
	}
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		records, err := ExtractRecords(page, res, "contacts")
		if err != nil || len(records) != benchRecords {
			b.Fatalf("%d records, %v", len(records), err)
		}
		for _, r := range records {
			c, err := Classify(r, res, w)
			if err != nil || !c.Report {
				b.Fatalf("%v (report %v)", err, c.Report)
			}
			change := c.Change(42, "infusionsoftrest", "contacts")
			benchSink = Message(change, 42, r)
		}
	}
	reportPerRecord(b)
}

var benchLen int

// BenchmarkIterateKeapPageWithGJSON is the baseline: the same page's
// records visited with gjson, nothing read from them.
func BenchmarkIterateKeapPageWithGJSON(b *testing.B) {
	page := keapPage(benchRecords)
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		gjson.GetBytes(page, "contacts").ForEach(func(_, v gjson.Result) bool {
			benchLen += len(v.Raw)
			n++
			return true
		})
		if n != benchRecords {
			b.Fatalf("%d records", n)
		}
	}
	reportPerRecord(b)
}

// reportPerRecord adds records/s and ns/record to a benchmark over pages
// of benchRecords.
func reportPerRecord(b *testing.B) {
	perOp := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(benchRecords/perOp, "records/s")
	b.ReportMetric(perOp*1e9/benchRecords, "ns/record")
}
