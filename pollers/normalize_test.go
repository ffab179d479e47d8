package pollers

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// FuzzFormatRFC3339 compares formatRFC3339 with time.Format.
func FuzzFormatRFC3339(f *testing.F) {
	f.Add(int64(1606030527), int64(123456789), uint8(3))
	f.Add(int64(-62135596800), int64(0), uint8(0))
	f.Add(int64(-62167219200-86400), int64(1000), uint8(9))
	f.Add(int64(253402300800), int64(500000000), uint8(1))
	f.Fuzz(func(t *testing.T, sec, nsec int64, digits uint8) {
		at := time.Unix(sec, nsec%int64(time.Second)).UTC()
		n := int(digits % 12)
		want := at.Format(rfc3339Layout(max(n, fractionNeeded(at))))
		if got := formatRFC3339(at, n); got != want {
			t.Fatalf("formatRFC3339(%v, %d) = %q, want %q", at, n, got, want)
		}
	})
}

// rfc3339Layout is RFC 3339 with n (at most 9) fraction digits.
func rfc3339Layout(n int) string {
	frac := ""
	if n = min(n, 9); n > 0 {
		frac = "." + strings.Repeat("0", n)
	}
	return "2006-01-02T15:04:05" + frac + "Z07:00"
}

// fractionNeeded is how many fraction digits at's nanoseconds need.
func fractionNeeded(at time.Time) int {
	return len(strings.TrimRight(at.Format(".000000000"), "0")) - 1
}

// FuzzReadValues compares readMembers with gjson's reading of the same
// record (readMembersWithGJSON) wherever readMembers reads it, which it
// does for every JSON object.
func FuzzReadValues(f *testing.F) {
	for _, rec := range []string{
		`{"id":7,"a":{"b":[1,"]\"}"]},"u":"2024-01-01","n":null,"t":true,"x":-1.5e3}`,
		` { "id" : "a\"b" , "k\\u00e9y" : [ ] , "u" : nul } `,
		`{"id":NaN,"u":nope,"a":+1}`, `{"a":(1),"id":1}`, `{"id":1} "u":2`, `{"id":"x\\"}`, `[{"id":1}]`, `{}`,
	} {
		f.Add(rec, "u", "a")
	}
	f.Fuzz(func(t *testing.T, record, key1, key2 string) {
		keys := []string{"id", key1, key2}
		var fast, slow Values
		for _, v := range []*Values{&fast, &slow} {
			v.record = record
			for _, k := range keys {
				if k != "" && v.index(k) < 0 {
					v.keys[v.n] = k
					v.n++
				}
			}
		}
		if !fast.readMembers() {
			if json.Valid([]byte(record)) && isObjectText(record) {
				t.Fatalf("a JSON object refused: %q", record)
			}
			return
		}
		slow.readMembersWithGJSON()
		for i := range fast.n {
			a, b := fast.vals[i], slow.vals[i]
			if a.Type != b.Type || a.Raw != b.Raw || a.Str != b.Str || a.Index != b.Index ||
				math.Float64bits(a.Num) != math.Float64bits(b.Num) || a.Indexes != nil {
				t.Fatalf("%q in %q: read %#v, gjson reads %#v", fast.keys[i], record, a, b)
			}
		}
	})
}
