package simulators

import (
	"fmt"
	"slices"
	"time"
)

// InfusionTimestampLayout is how the simulator writes createdTimestamp,
// modifiedTimestamp and deletedTimestamp: ISO 8601 in UTC with
// milliseconds, e.g. 2026-11-22T07:35:27.123Z, which the definition's
// "yyyy-MM-dd'T'HH:mm:ss.SSSX" reads (ASSUMPTION: the seed gives no
// format).
const InfusionTimestampLayout = "2006-01-02T15:04:05.000Z07:00"

// FormatInfusionTimestamp formats t (in UTC) like the simulator's
// timestamps.
func FormatInfusionTimestamp(t time.Time) string {
	return t.UTC().Truncate(time.Millisecond).Format(InfusionTimestampLayout)
}

// InfusionRecord is one version of a record of a data synchronisation
// resource.
type InfusionRecord struct {
	Resource string
	UUID     string
	Version  int       // versionNumber: 0 at creation, +1 per change
	Created  time.Time // createdTimestamp (UTC, ms)
	Modified time.Time // modifiedTimestamp
	Deleted  time.Time // deletedTimestamp; zero while live
	// Fields are the test's fields (a copy). A field named like a computed
	// one (uuid, createdTimestamp, ...) is served instead of it, e.g. to
	// serve a malformed date.
	Fields map[string]any

	seq int       // the change that made this version
	at  time.Time // the record clock's reading when it was made
}

// IsDeleted reports whether the version is a deletion.
func (r InfusionRecord) IsDeleted() bool { return !r.Deleted.IsZero() }

// JSON returns the record as the API serves it.
func (r InfusionRecord) JSON() map[string]any {
	m := map[string]any{
		"uuid":              r.UUID,
		"createdTimestamp":  FormatInfusionTimestamp(r.Created),
		"modifiedTimestamp": FormatInfusionTimestamp(r.Modified),
		"deletedTimestamp":  nil,
		"versionNumber":     r.Version,
	}
	if r.IsDeleted() {
		m["deletedTimestamp"] = FormatInfusionTimestamp(r.Deleted)
	}
	for k, v := range cloneFields(r.Fields) {
		m[k] = v
	}
	return m
}

// InfusionChange is one entry of the ledger.
type InfusionChange struct {
	Seq      int // 1, 2, ... across resources
	Resource string
	UUID     string
	Kind     ChangeKind // Created, Updated or Deleted
	Version  int
	Created  time.Time
	Modified time.Time
	Deleted  time.Time // set for Deleted
	At       time.Time // the record clock's reading when the change was made
	Record   map[string]any
}

// EventDate is the date pollhook reports for this change: the deleted
// timestamp for a delete, else the modified timestamp.
func (c InfusionChange) EventDate() time.Time {
	if c.Kind == Deleted {
		return c.Deleted
	}
	return c.Modified
}

// InfusionServed is one record version served to a session by a data
// synchronisation call: what a delta client could have seen.
type InfusionServed struct {
	Session  string
	Resource string
	UUID     string
	Version  int
	// Kind is the classification pollhook should give the served version
	// (SPEC §3.2 with createdCheckTolerance 0): Deleted when
	// deletedTimestamp is set, Created when createdTimestamp =
	// modifiedTimestamp (version 0), else Updated.
	Kind   ChangeKind
	Change int // Seq of the ledger entry that made this version
	Record map[string]any
	At     time.Time // wall clock when it was served
}

type infusionStore struct {
	byUUID map[string]*infusionEntry
	order  []string // uuids by creation
}

type infusionEntry struct {
	versions []InfusionRecord // oldest first
}

func (e *infusionEntry) latest() InfusionRecord { return e.versions[len(e.versions)-1] }

// visible is the newest version that data synchronisation sees at now: one
// made at least delay ago by the record clock.
func (e *infusionEntry) visible(now time.Time, delay time.Duration) (InfusionRecord, bool) {
	for i := len(e.versions) - 1; i >= 0; i-- {
		if !e.versions[i].at.Add(delay).After(now) {
			return e.versions[i], true
		}
	}
	return InfusionRecord{}, false
}

func (s *Infusion) storeOf(resource string) *infusionStore {
	st, ok := s.stores[resource]
	if !ok {
		panic(fmt.Sprintf("simulators: Infusion has no resource %q", resource))
	}
	return st
}

// Create adds a record to resource, dated now by the record clock:
// createdTimestamp = modifiedTimestamp, versionNumber 0.
func (s *Infusion) Create(resource string, fields map[string]any) InfusionRecord {
	f := cloneFields(fields)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.storeOf(resource)
	now := s.nowLocked()
	s.uuidSeq++
	s.seq++
	rec := InfusionRecord{
		Resource: resource,
		UUID:     fmt.Sprintf("%08x-%04x-4000-8000-%012x", s.uuidSeq, s.n&0xffff, s.uuidSeq),
		Created:  now, Modified: now, Fields: f, seq: s.seq, at: now,
	}
	st.byUUID[rec.UUID] = &infusionEntry{versions: []InfusionRecord{rec}}
	st.order = append(st.order, rec.UUID)
	s.logLocked(rec, Created, now)
	return copyInfusionRecord(rec)
}

// Update merges fields into a live record (a nil value removes a field),
// raising versionNumber by one and modifiedTimestamp to now (at least 1 ms
// after the previous one).
func (s *Infusion) Update(resource, uuid string, fields map[string]any) (InfusionRecord, error) {
	f := cloneFields(fields)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changeLocked(resource, uuid, f, false)
}

// Delete marks a live record deleted: versionNumber +1, modifiedTimestamp
// and deletedTimestamp = now (at least 1 ms after the previous
// modification). The record stays and is served once more, as deleted.
func (s *Infusion) Delete(resource, uuid string) (InfusionRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changeLocked(resource, uuid, nil, true)
}

func (s *Infusion) changeLocked(resource, uuid string, f map[string]any, del bool) (InfusionRecord, error) {
	st := s.storeOf(resource)
	e, ok := st.byUUID[uuid]
	if !ok {
		return InfusionRecord{}, fmt.Errorf("simulators: %s %s does not exist", resource, uuid)
	}
	prev := e.latest()
	if prev.IsDeleted() {
		return InfusionRecord{}, fmt.Errorf("simulators: %s %s is deleted", resource, uuid)
	}
	now := s.nowLocked()
	mod := now
	if !mod.After(prev.Modified) {
		mod = prev.Modified.Add(time.Millisecond)
	}
	rec := copyInfusionRecord(prev)
	for k, v := range f {
		if v == nil {
			delete(rec.Fields, k)
		} else {
			rec.Fields[k] = v
		}
	}
	rec.Version++
	rec.Modified = mod
	kind := Updated
	if del {
		rec.Deleted = mod
		kind = Deleted
	}
	s.seq++
	rec.seq, rec.at = s.seq, now
	e.versions = append(e.versions, rec)
	s.logLocked(rec, kind, now)
	return copyInfusionRecord(rec), nil
}

// Get returns the latest version of a record (deleted ones included).
func (s *Infusion) Get(resource, uuid string) (InfusionRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.storeOf(resource).byUUID[uuid]
	if !ok {
		return InfusionRecord{}, false
	}
	return copyInfusionRecord(e.latest()), true
}

// Records returns the latest version of every record of resource, deleted
// ones included, in order of creation.
func (s *Infusion) Records(resource string) []InfusionRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.storeOf(resource)
	out := make([]InfusionRecord, 0, len(st.order))
	for _, id := range st.order {
		out = append(out, copyInfusionRecord(st.byUUID[id].latest()))
	}
	return out
}

// Changes returns a copy of the ledger, in order.
func (s *Infusion) Changes() []InfusionChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]InfusionChange(nil), s.changes...)
}

// ChangesOf returns the ledger entries of one resource.
func (s *Infusion) ChangesOf(resource string) []InfusionChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []InfusionChange
	for _, c := range s.changes {
		if c.Resource == resource {
			out = append(out, c)
		}
	}
	return out
}

// Served returns a copy of the log of record versions served, in order.
func (s *Infusion) Served() []InfusionServed {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]InfusionServed(nil), s.served...)
}

// ServedOf returns the versions of one resource served to any session.
func (s *Infusion) ServedOf(resource string) []InfusionServed {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []InfusionServed
	for _, v := range s.served {
		if v.Resource == resource {
			out = append(out, v)
		}
	}
	return out
}

// Pending counts the changes of resource that the current session has not
// been served yet and that are visible now.
func (s *Infusion) Pending(resource string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pendingLocked(s.session, resource))
}

func (s *Infusion) logLocked(rec InfusionRecord, kind ChangeKind, at time.Time) {
	s.changes = append(s.changes, InfusionChange{
		Seq: rec.seq, Resource: rec.Resource, UUID: rec.UUID, Kind: kind, Version: rec.Version,
		Created: rec.Created, Modified: rec.Modified, Deleted: rec.Deleted, At: at,
		Record: rec.JSON(),
	})
}

func (s *Infusion) cursorLocked(session, resource string) map[string]int {
	key := session
	if s.cursorPerLic {
		key = s.license
	}
	byRes, ok := s.cursors[key]
	if !ok {
		byRes = map[string]map[string]int{}
		s.cursors[key] = byRes
	}
	c, ok := byRes[resource]
	if !ok {
		c = map[string]int{}
		byRes[resource] = c
	}
	return c
}

// pendingLocked returns the visible versions the session has not been
// served, oldest change first.
func (s *Infusion) pendingLocked(session, resource string) []InfusionRecord {
	st := s.storeOf(resource)
	cur := s.cursorLocked(session, resource)
	now := s.nowLocked()
	var out []InfusionRecord
	for _, id := range st.order {
		v, ok := st.byUUID[id].visible(now, s.indexDelay)
		if !ok {
			continue
		}
		if served, seen := cur[id]; seen && served >= v.Version {
			continue
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b InfusionRecord) int { return a.seq - b.seq })
	return out
}

// syncLocked serves one data synchronisation call: up to pageSize pending
// versions, advancing the session's cursor.
func (s *Infusion) syncLocked(session, resource string) ([]map[string]any, bool) {
	pending := s.pendingLocked(session, resource)
	more := len(pending) > s.pageSize
	if more {
		pending = pending[:s.pageSize]
	}
	cur := s.cursorLocked(session, resource)
	out := make([]map[string]any, 0, len(pending))
	for _, v := range pending {
		cur[v.UUID] = v.Version
		j := v.JSON()
		out = append(out, j)
		kind := Updated
		switch {
		case v.IsDeleted():
			kind = Deleted
		case v.Created.Equal(v.Modified):
			kind = Created
		}
		s.served = append(s.served, InfusionServed{
			Session: session, Resource: resource, UUID: v.UUID, Version: v.Version,
			Kind: kind, Change: v.seq, Record: cloneFields(j), At: time.Now(),
		})
	}
	return out, more
}

func copyInfusionRecord(r InfusionRecord) InfusionRecord {
	r.Fields = cloneFields(r.Fields)
	return r
}
