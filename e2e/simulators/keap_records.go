package simulators

import (
	"fmt"
	"slices"
	"strconv"
	"time"
)

// KeapDateLayout is how Keap formats date_created and last_updated: Java's
// yyyy-MM-dd'T'HH:mm:ss.SSSZ, e.g. 2026-11-22T07:35:27.123+0000.
const KeapDateLayout = "2006-01-02T15:04:05.000-0700"

// FormatKeapDate formats t (in UTC) like Keap's date fields.
func FormatKeapDate(t time.Time) string { return t.UTC().Format(KeapDateLayout) }

// Record is one version of a record of a Keap resource.
type Record struct {
	Resource    string
	ID          int64
	DateCreated time.Time // UTC, milliseconds
	LastUpdated time.Time // UTC, milliseconds
	// Fields are the record's other fields as given by the test (a copy).
	// A field named like a computed one (id, date_created, last_updated,
	// last_updated_utc_millis) is served instead of the computed value,
	// e.g. to serve a malformed date; filtering and ordering still use the
	// real values.
	Fields map[string]any
}

// JSON returns the record as the API serves it.
func (r Record) JSON() map[string]any {
	m := map[string]any{
		"id":                      r.ID,
		"date_created":            FormatKeapDate(r.DateCreated),
		"last_updated":            FormatKeapDate(r.LastUpdated),
		"last_updated_utc_millis": r.LastUpdated.UnixMilli(),
	}
	if r.Resource == Contacts {
		m["email_addresses"] = []any{}
	}
	for k, v := range cloneFields(r.Fields) {
		m[k] = v
	}
	return m
}

// IDString is the record's id in decimal, as pollhook reports objectId.
func (r Record) IDString() string { return strconv.FormatInt(r.ID, 10) }

// ContactFields builds the fields of a contact with one email address
// (EMAIL1), for CreateContact.
func ContactFields(givenName, familyName, email string) map[string]any {
	f := map[string]any{"given_name": givenName, "family_name": familyName}
	if email != "" {
		f["email_addresses"] = []any{map[string]any{"email": email, "field": "EMAIL1"}}
	}
	return f
}

// ChangeKind says what a change did.
type ChangeKind string

// Kinds of change.
const (
	Created ChangeKind = "created"
	Updated ChangeKind = "updated"
	Deleted ChangeKind = "deleted"
)

// Change is one entry of the ledger.
type Change struct {
	Seq      int // 1, 2, ... across resources
	Resource string
	ID       int64
	Kind     ChangeKind
	// DateCreated and LastUpdated are the record's after the change; for a
	// delete, the last values it had (Keap does not date deletes).
	DateCreated time.Time
	LastUpdated time.Time
	// At is the record clock's reading when the change was made (equal to
	// LastUpdated for creates and updates).
	At time.Time
	// Record is the record as served after the change (before, for a
	// delete).
	Record map[string]any
}

// IDString is the record's id in decimal.
func (c Change) IDString() string { return strconv.FormatInt(c.ID, 10) }

type store struct {
	nextID  int64
	entries map[int64]*entry
}

// entry holds the versions of one live record, oldest first (older ones are
// kept only while an index delay may still hide the newer ones).
type entry struct {
	versions []Record
}

func newStore() *store { return &store{nextID: 1, entries: map[int64]*entry{}} }

func (e *entry) latest() Record { return e.versions[len(e.versions)-1] }

// visible is the newest version indexed by now, if any.
func (e *entry) visible(now time.Time, delay time.Duration) (Record, bool) {
	for i := len(e.versions) - 1; i >= 0; i-- {
		if !e.versions[i].LastUpdated.Add(delay).After(now) {
			return e.versions[i], true
		}
	}
	return Record{}, false
}

func (k *Keap) storeOf(resource string) *store {
	s, ok := k.stores[resource]
	if !ok {
		panic(fmt.Sprintf("simulators: Keap has no resource %q", resource))
	}
	return s
}

// Create adds a record to resource (Contacts or Opportunities), dated now
// by the record clock, and returns it.
func (k *Keap) Create(resource string, fields map[string]any) Record {
	f := cloneFields(fields)
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.storeOf(resource)
	now := k.nowLocked()
	rec := Record{Resource: resource, ID: s.nextID, DateCreated: now, LastUpdated: now, Fields: f}
	s.nextID++
	s.entries[rec.ID] = &entry{versions: []Record{rec}}
	k.logChange(rec, Created, now)
	return copyRecord(rec)
}

// Update merges fields into a record (a nil value removes the field) and
// sets its last_updated to now by the record clock.
func (k *Keap) Update(resource string, id int64, fields map[string]any) (Record, error) {
	f := cloneFields(fields)
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.storeOf(resource)
	e, ok := s.entries[id]
	if !ok {
		return Record{}, fmt.Errorf("simulators: %s %d does not exist", resource, id)
	}
	now := k.nowLocked()
	rec := copyRecord(e.latest())
	for key, v := range f {
		if v == nil {
			delete(rec.Fields, key)
		} else {
			rec.Fields[key] = v
		}
	}
	rec.LastUpdated = now
	// Drop versions that can no longer be what a listing shows.
	if v, ok := e.visible(now, k.indexDelay); ok {
		i := slices.IndexFunc(e.versions, func(r Record) bool { return r.LastUpdated.Equal(v.LastUpdated) })
		e.versions = e.versions[i:]
	}
	e.versions = append(e.versions, rec)
	k.logChange(rec, Updated, now)
	return copyRecord(rec), nil
}

// Delete removes a record at once (a hard delete, as Keap's).
func (k *Keap) Delete(resource string, id int64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.storeOf(resource)
	e, ok := s.entries[id]
	if !ok {
		return fmt.Errorf("simulators: %s %d does not exist", resource, id)
	}
	delete(s.entries, id)
	k.logChange(e.latest(), Deleted, k.nowLocked())
	return nil
}

// Get returns the current version of a record.
func (k *Keap) Get(resource string, id int64) (Record, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.storeOf(resource).entries[id]
	if !ok {
		return Record{}, false
	}
	return copyRecord(e.latest()), true
}

// Records returns the current version of every live record of resource,
// by id.
func (k *Keap) Records(resource string) []Record {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.storeOf(resource)
	out := make([]Record, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, copyRecord(e.latest()))
	}
	slices.SortFunc(out, func(a, b Record) int { return cmpInt64(a.ID, b.ID) })
	return out
}

// CreateContact adds a contact (see Create).
func (k *Keap) CreateContact(fields map[string]any) Record { return k.Create(Contacts, fields) }

// UpdateContact changes a contact (see Update).
func (k *Keap) UpdateContact(id int64, fields map[string]any) (Record, error) {
	return k.Update(Contacts, id, fields)
}

// DeleteContact hard-deletes a contact.
func (k *Keap) DeleteContact(id int64) error { return k.Delete(Contacts, id) }

// CreateOpportunity adds an opportunity (see Create).
func (k *Keap) CreateOpportunity(fields map[string]any) Record {
	return k.Create(Opportunities, fields)
}

// UpdateOpportunity changes an opportunity (see Update).
func (k *Keap) UpdateOpportunity(id int64, fields map[string]any) (Record, error) {
	return k.Update(Opportunities, id, fields)
}

// DeleteOpportunity hard-deletes an opportunity.
func (k *Keap) DeleteOpportunity(id int64) error { return k.Delete(Opportunities, id) }

// Changes returns a copy of the ledger: every change made, in order.
func (k *Keap) Changes() []Change {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Change(nil), k.changes...)
}

// ChangesOf returns the ledger entries of one resource.
func (k *Keap) ChangesOf(resource string) []Change {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []Change
	for _, c := range k.changes {
		if c.Resource == resource {
			out = append(out, c)
		}
	}
	return out
}

func (k *Keap) logChange(rec Record, kind ChangeKind, at time.Time) {
	k.changes = append(k.changes, Change{
		Seq: len(k.changes) + 1, Resource: rec.Resource, ID: rec.ID, Kind: kind,
		DateCreated: rec.DateCreated, LastUpdated: rec.LastUpdated, At: at, Record: rec.JSON(),
	})
}

func copyRecord(r Record) Record {
	r.Fields = cloneFields(r.Fields)
	return r
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
