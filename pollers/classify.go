package pollers

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/pollhook/pollhook/events"
)

// Window is what a poll reports against (SPEC §3.2).
type Window struct {
	// From is the start of the date window: Resource.Since(watermark).
	// Ignored for ModeDelta resources, which have no window.
	From time.Time
	// Created is the instance's creation time: nothing dated before it is
	// reported.
	Created time.Time
	// PollStart is when the poll started. With FilterByCurrentDate, records
	// dated after it wait for the next poll. The zero time means no limit.
	PollStart time.Time
}

// Classified is one record read as a change.
type Classified struct {
	ObjectID  string    // the id: a string as is, a number as its JSON text
	EventType string    // events.Created, events.Updated or events.Deleted
	Date      time.Time // the event date, UTC
	// DateText is Date in RFC 3339, UTC, with the source's precision: as
	// many fraction digits as the format carries (yyyy-MM-dd'T'HH:mm:ss.SSS
	// → 3, none without S, milliseconds → 3), more when the value had more.
	DateText string
	Version  string // the versionField's value (JSON text of a number), "" when unset
	// Report is false when the change is not to be reported: dated before
	// the window (window mode), before the instance's creation, or after
	// the poll's start with FilterByCurrentDate.
	Report bool
}

// RecordError says why a record could not be classified: which
// configuration key (idField, updatedDateField, ...) and what was wrong
// with the record's value. The record is skipped and counted; the others
// go on.
type RecordError struct {
	Key string // configuration key, e.g. "updatedDateField"
	Err error  // starts with the record's path, e.g. "last_updated: date ..."
}

func (e *RecordError) Error() string { return e.Key + " " + e.Err.Error() }

// Unwrap returns Err.
func (e *RecordError) Unwrap() error { return e.Err }

func recordErr(key string, path FieldPath, format string, a ...any) error {
	return &RecordError{Key: key, Err: fmt.Errorf("%s: "+format, append([]any{path.String()}, a...)...)}
}

// Classify reads a record (its JSON text) as a change of resource res
// (SPEC §3.2):
//
//   - the event date is the deleted date when set, else the updated date
//     (the created date when FilterByUpdatedDate is false);
//   - the type is DELETED when the deleted date is set; else CREATED with
//     FilterByUpdatedDate false; else CREATED when the created and updated
//     dates are within CreatedCheckTolerance of each other (equal when it is
//     0); else UPDATED; UPDATED too without a created field. A record with a
//     created date and no updated date (null, "", absent) has never been
//     updated: CREATED, dated by its created date;
//   - it is reported when the event date is ≥ w.From (window mode only) and
//     ≥ w.Created, and, with FilterByCurrentDate, not after w.PollStart.
//
// A record that is not a JSON object, whose id is missing, null, empty or
// neither string nor number, whose needed date is missing or cannot be
// read, or whose version is not a string or number gives a *RecordError.
// Classify does no I/O and compiles nothing; safe for concurrent use.
func Classify(record string, res *Resource, w Window) (Classified, error) {
	var c Classified
	if !isObjectText(record) {
		return c, &RecordError{Key: "record", Err: errors.New("not a JSON object")}
	}
	vals := ReadValues(record, res.IDField, res.Deleted.Field, res.Created.Field, res.Updated.Field, res.VersionField)
	id, err := readID(vals.Get(res.IDField), res.IDField)
	if err != nil {
		return c, err
	}
	c.ObjectID = id

	var by DateField // the field that gave the event date
	deleted, isDeleted, err := res.Deleted.read(vals.Get(res.Deleted.Field))
	if err != nil {
		return c, &RecordError{Key: "deletedDateField", Err: err}
	}
	switch {
	case isDeleted:
		c.EventType, c.Date, by = events.Deleted, deleted, res.Deleted
	case !res.FilterByUpdatedDate:
		created, ok, err := res.Created.read(vals.Get(res.Created.Field))
		if err != nil {
			return c, &RecordError{Key: "createdDateField", Err: err}
		}
		if !ok {
			return c, recordErr("createdDateField", res.Created.Field, "not set on the record")
		}
		c.EventType, c.Date, by = events.Created, created, res.Created
	default:
		updated, hasUpdated, err := res.Updated.read(vals.Get(res.Updated.Field))
		if err != nil {
			return c, &RecordError{Key: "updatedDateField", Err: err}
		}
		created, hasCreated, err := res.Created.read(vals.Get(res.Created.Field))
		if err != nil {
			return c, &RecordError{Key: "createdDateField", Err: err}
		}
		switch {
		case !hasUpdated && hasCreated:
			c.EventType, c.Date, by = events.Created, created, res.Created
		case !hasUpdated:
			return c, recordErr("updatedDateField", res.Updated.Field, "not set on the record")
		case hasCreated && absDuration(updated.Sub(created)) <= res.CreatedCheckTolerance:
			c.EventType, c.Date, by = events.Created, updated, res.Updated
		default:
			c.EventType, c.Date, by = events.Updated, updated, res.Updated
		}
	}
	c.Date = c.Date.UTC()
	c.DateText = formatRFC3339(c.Date, by.Format.FractionDigits())

	if !res.VersionField.IsZero() {
		v := vals.Get(res.VersionField)
		switch v.Type {
		case gjson.String:
			c.Version = v.Str
		case gjson.Number:
			c.Version = v.Raw
		case gjson.Null:
			// absent or null: identity falls back to the date
		default:
			return c, recordErr("versionField", res.VersionField, "expected a string or number, got %s", describe(v))
		}
	}

	c.Report = true
	switch {
	case res.Mode != ModeDelta && c.Date.Before(w.From):
		c.Report = false
	case c.Date.Before(w.Created):
		c.Report = false
	case res.FilterByCurrentDate && !w.PollStart.IsZero() && c.Date.After(w.PollStart):
		c.Report = false
	}
	return c, nil
}

// ChangeID is the change's stable id (events.ChangeID) for an instance and
// resource (the objectType): by version when the record has one, else by
// DateText.
func (c Classified) ChangeID(instanceID int64, objectType string) string {
	key := c.DateText
	if c.Version != "" {
		key = c.Version
	}
	return events.ChangeID(instanceID, objectType, c.ObjectID, c.EventType, key)
}

// Change is the change event of a reported record of instanceID's resource
// objectType, without the record (its id says whether the change is new).
// Its ObjectID shares the record's memory: keep it through Message.
func (c Classified) Change(instanceID int64, elementKey, objectType string) events.Change {
	return events.Change{
		ID: c.ChangeID(instanceID, objectType), EventType: c.EventType, ObjectType: objectType,
		ObjectID: c.ObjectID, ElementKey: elementKey, Date: c.DateText,
	}
}

// Message is the change event of a new change with its record as the
// upstream sent it. It holds copies, nothing of record's memory: a change
// kept to the poll's end does not keep its whole page.
func Message(change events.Change, instanceID int64, record string) events.ChangeMessage {
	change.ObjectID = strings.Clone(change.ObjectID)
	return events.ChangeMessage{Change: change, InstanceID: instanceID, Raw: []byte(record)}
}

// readID reads a record's id from v, its value at path: a non-empty string
// as is, a number as its JSON text (123, not 123.0).
func readID(v gjson.Result, path FieldPath) (string, error) {
	switch v.Type {
	case gjson.String:
		if strings.TrimSpace(v.Str) == "" {
			return "", recordErr("idField", path, "empty")
		}
		return v.Str, nil
	case gjson.Number:
		return v.Raw, nil
	case gjson.Null:
		if !v.Exists() {
			return "", recordErr("idField", path, "missing")
		}
		return "", recordErr("idField", path, "null")
	}
	return "", recordErr("idField", path, "expected a string or number, got %s", describe(v))
}

// isObjectText reports whether a record's JSON text is an object.
func isObjectText(s string) bool {
	s = strings.TrimLeft(s, " \t\r\n")
	return s != "" && s[0] == '{'
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// formatRFC3339 writes t in UTC as RFC 3339 with a fraction of at least
// digits digits, more when its nanoseconds need them (at most 9): what
// time.Format writes with the layout 2006-01-02T15:04:05.000Z07:00 and
// that many zeros.
func formatRFC3339(t time.Time, digits int) string {
	var buf [40]byte
	b := t.UTC().AppendFormat(buf[:0], time.RFC3339Nano) // the fraction without trailing zeros
	b = b[:len(b)-1]                                     // the "Z"
	written := 0
	if dot := bytes.LastIndexByte(b, '.'); dot >= 0 {
		written = len(b) - dot - 1
	} else if digits > 0 {
		b = append(b, '.')
	}
	for ; written < min(digits, 9); written++ {
		b = append(b, '0')
	}
	return string(append(b, 'Z'))
}
