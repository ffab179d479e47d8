package simulators

import (
	"cmp"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Infinia simulates Infinia's open API (seed 002, SPEC §4) as far as
// pollhook's "infinia" connector (connectors/definitions/infinia.yaml)
// polls it:
//
//   - POST BaseURL()+<path> for the three status-query resources of the
//     definition (InfiniaPath). Sandbox and production share this server:
//     both base URLs of the definition end in /api, so BaseURL() is
//     URL()+"/api" and an instance sets base.url to it.
//   - Every request body is the envelope {"version", "appId", "dataType":
//     "JSON", "requestData", "signature"}. The simulator checks it in this
//     order, answering HTTP 200 with an error code and no responseData
//     when a check fails: the body is JSON (else SYS-002), every field is
//     present (SYS-004), appId is the simulator's (SYS-002), dataType is
//     JSON and requestData and signature are base64 (SYS-005), requestData
//     and signature are at most 2048 characters, the lengths Infinia's
//     "Request and Response parameters" page gives (SYS-007), the
//     signature verifies with the client's public key as SHA256withRSA over
//     the requestData string's bytes (SYS-002 "Signature verification
//     failed"), requestData decrypts with the provider's private key in
//     k-byte PKCS#1 v1.5 blocks (SYS-005) into a JSON object (SYS-005).
//   - The decrypted request must give "startTime" ("yyyy-MM-dd HH:mm:ss",
//     UTC; missing: SYS-004, malformed: SYS-005); an optional "endTime"
//     bounds the window (exclusive). The answer is {"appId", "code":
//     "SUC-200", "message": "Operation completed successfully.",
//     "responseData": base64(blocks encrypted for the client's public
//     key)}, and responseData decrypts to {"total": n, "records": [...]}:
//     the records whose updateTime ≥ startTime, by updateTime then id.
//   - Records (ASSUMPTION, the definition's guesses): an id field
//     (bindingId, uploadId, sharingId), "status", "createTime" and
//     "updateTime" ("yyyy-MM-dd HH:mm:ss", UTC, whole seconds) and the
//     test's fields. A status change moves updateTime to now, at least one
//     second after the previous one, so that every change has its own
//     date.
//   - FailNextCode injects any code (SYS-001..SYS-008 with Infinia's
//     published messages); FailNext injects HTTP statuses.
type Infinia struct {
	srv       *httptest.Server
	closeOnce sync.Once
	closed    chan struct{}
	n         int64

	mu sync.Mutex

	clock      func() time.Time
	appID      string
	version    string // expected envelope version; "" accepts any
	provider   *rsa.PrivateKey
	clientPub  *rsa.PublicKey
	clientPriv *rsa.PrivateKey // nil when only the public key was given
	keyBits    int

	seq     int
	stores  map[string]*infiniaStore
	changes []InfiniaChange

	faults     faults
	failCodeN  int
	failCode   string
	failCodeMs string
	requests   requestLog[InfiniaRequest]
}

// Resources of Infinia: the keys of connectors/definitions/infinia.yaml.
const (
	InfiniaAccountBinding     = "accountBinding"
	InfiniaTradeDetailsUpload = "tradeDetailsUpload"
	InfiniaRevenueSharing     = "revenueSharing"
)

var infiniaPaths = map[string]string{
	InfiniaAccountBinding:     "/account/binding/status/query",
	InfiniaTradeDetailsUpload: "/trade/details/upload/status/query",
	InfiniaRevenueSharing:     "/revenue/sharing/status/query",
}

var infiniaIDFields = map[string]string{
	InfiniaAccountBinding:     "bindingId",
	InfiniaTradeDetailsUpload: "uploadId",
	InfiniaRevenueSharing:     "sharingId",
}

var infiniaIDPrefixes = map[string]string{
	InfiniaAccountBinding:     "BND",
	InfiniaTradeDetailsUpload: "UPL",
	InfiniaRevenueSharing:     "RVS",
}

// InfiniaResources lists the status-query resources.
func InfiniaResources() []string {
	return []string{InfiniaAccountBinding, InfiniaTradeDetailsUpload, InfiniaRevenueSharing}
}

// InfiniaPath is a resource's path relative to BaseURL(), as the
// definition's url gives it.
func InfiniaPath(resource string) string { return infiniaPaths[resource] }

// InfiniaIDField is the name of a resource's id field.
func InfiniaIDField(resource string) string { return infiniaIDFields[resource] }

// Infinia's codes: the success code and the system errors of its public
// "System Code" appendix, with their descriptions.
const (
	InfiniaSuccess = "SUC-200"
)

var infiniaMessages = map[string]string{
	"SUC-200": "Operation completed successfully.",
	"SYS-001": "Database operation failed.",
	"SYS-002": "Invalid request parameters.",
	"SYS-003": "Internal server error.",
	"SYS-004": "Missing or null parameter.",
	"SYS-005": "Invalid parameter format.",
	"SYS-006": "Parameter value exceeds the allowed range.",
	"SYS-007": "Request payload too large.",
	"SYS-008": "Service unavailable. Please try again later.",
}

// InfiniaCodeMessage is the published description of a code ("" for an
// unknown one).
func InfiniaCodeMessage(code string) string { return infiniaMessages[code] }

// InfiniaSystemCodes lists SYS-001..SYS-008.
func InfiniaSystemCodes() []string {
	return []string{"SYS-001", "SYS-002", "SYS-003", "SYS-004", "SYS-005", "SYS-006", "SYS-007", "SYS-008"}
}

// Defaults of a new Infinia.
const (
	DefaultInfiniaVersion = "1.0" // the definition's envelope version (ASSUMPTION)
	DefaultInfiniaKeyBits = 2048
	InfiniaTimeLayout     = "2006-01-02 15:04:05" // yyyy-MM-dd HH:mm:ss
	infiniaAPIPrefix      = "/api"
	infiniaMaxField       = 2048 // requestData and signature, per Infinia's parameter table
)

// FormatInfiniaTime formats t (UTC) like createTime and updateTime.
func FormatInfiniaTime(t time.Time) string { return t.UTC().Format(InfiniaTimeLayout) }

// InfiniaOption configures NewInfinia.
type InfiniaOption func(*Infinia)

// WithInfiniaClientKey gives the client's key pair: the simulator verifies
// signatures and encrypts responseData with its public half, and
// InstanceConfiguration includes the private half. Without this option
// (or WithInfiniaClientPublicKey) the simulator generates a client pair.
func WithInfiniaClientKey(priv *rsa.PrivateKey) InfiniaOption {
	return func(s *Infinia) { s.clientPriv, s.clientPub = priv, &priv.PublicKey }
}

// WithInfiniaClientPublicKey gives only the client's public key (as
// Infinia really holds it); InstanceConfiguration then lacks
// infinia.private.key.
func WithInfiniaClientPublicKey(pub *rsa.PublicKey) InfiniaOption {
	return func(s *Infinia) { s.clientPriv, s.clientPub = nil, pub }
}

// WithInfiniaProviderKey sets the simulator's own key pair instead of
// generating one.
func WithInfiniaProviderKey(priv *rsa.PrivateKey) InfiniaOption {
	return func(s *Infinia) { s.provider = priv }
}

// WithInfiniaKeyBits sets the size of generated keys (default 2048).
func WithInfiniaKeyBits(bits int) InfiniaOption { return func(s *Infinia) { s.keyBits = bits } }

// WithInfiniaAppID sets the accepted appId.
func WithInfiniaAppID(id string) InfiniaOption { return func(s *Infinia) { s.appID = id } }

// WithInfiniaVersion sets the envelope version the simulator requires
// ("" accepts any non-empty version; default "1.0"). Another version is
// SYS-002.
func WithInfiniaVersion(v string) InfiniaOption { return func(s *Infinia) { s.version = v } }

// WithInfiniaClock sets the record clock (as SetClock).
func WithInfiniaClock(now func() time.Time) InfiniaOption { return func(s *Infinia) { s.clock = now } }

var infiniaInstances atomic.Int64

// NewInfinia starts a simulator on a loopback port with its own key pair.
// When tb is not nil it is closed at the end of the test, and a key
// generation failure fails it.
func NewInfinia(tb testing.TB, opts ...InfiniaOption) *Infinia {
	s := &Infinia{
		closed:  make(chan struct{}),
		n:       infiniaInstances.Add(1),
		clock:   time.Now,
		version: DefaultInfiniaVersion,
		keyBits: DefaultInfiniaKeyBits,
		stores:  map[string]*infiniaStore{},
	}
	s.appID = fmt.Sprintf("pollhook-app-%04d", s.n)
	for _, r := range InfiniaResources() {
		s.stores[r] = &infiniaStore{byID: map[string]*InfiniaRecord{}}
	}
	for _, o := range opts {
		o(s)
	}
	gen := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, s.keyBits)
		if err != nil {
			if tb != nil {
				tb.Fatalf("infinia simulator: generate key: %v", err)
			}
			panic(err)
		}
		return k
	}
	if s.provider == nil {
		s.provider = gen()
	}
	if s.clientPub == nil {
		s.clientPriv = gen()
		s.clientPub = &s.clientPriv.PublicKey
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	if tb != nil {
		tb.Cleanup(s.Close)
	}
	return s
}

// URL is the server's root.
func (s *Infinia) URL() string { return s.srv.URL }

// BaseURL is URL()+"/api", the base of both environments (the instance's
// base.url).
func (s *Infinia) BaseURL() string { return s.srv.URL + infiniaAPIPrefix }

// ResourceURL is the absolute URL of a resource's endpoint.
func (s *Infinia) ResourceURL(resource string) string { return s.BaseURL() + InfiniaPath(resource) }

// Close stops the server. It may be called more than once.
func (s *Infinia) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
}

// AppID is the accepted appId.
func (s *Infinia) AppID() string { return s.appID }

// ProviderPublicKey is the simulator's public key (requestData is
// encrypted for it).
func (s *Infinia) ProviderPublicKey() *rsa.PublicKey { return &s.provider.PublicKey }

// ProviderPublicKeyPEM is the simulator's public key as PEM.
func (s *Infinia) ProviderPublicKeyPEM() string { return InfiniaPublicKeyPEM(&s.provider.PublicKey) }

// ProviderPublicKeyBase64 is the simulator's public key as bare base64 DER
// (X.509), as Java prints it.
func (s *Infinia) ProviderPublicKeyBase64() string {
	return InfiniaPublicKeyBase64(&s.provider.PublicKey)
}

// ClientPublicKey is the client key the simulator verifies and encrypts
// with.
func (s *Infinia) ClientPublicKey() *rsa.PublicKey { return s.clientPub }

// ClientPrivateKey is the client's private key when the simulator knows it
// (given or generated), else nil.
func (s *Infinia) ClientPrivateKey() *rsa.PrivateKey { return s.clientPriv }

// InstanceConfiguration returns the upstream part of a pollhook "infinia"
// instance's configuration pointing at this simulator: base.url,
// infinia.app.id, infinia.public.key (the provider's, as bare base64 DER)
// and, when the simulator knows it, infinia.private.key (the client's, as
// bare base64 PKCS#8). The caller adds the event.* keys.
func (s *Infinia) InstanceConfiguration() map[string]any {
	m := map[string]any{
		"base.url":           s.BaseURL(),
		"infinia.app.id":     s.appID,
		"infinia.public.key": s.ProviderPublicKeyBase64(),
	}
	if s.clientPriv != nil {
		m["infinia.private.key"] = InfiniaPrivateKeyBase64(s.clientPriv)
	}
	return m
}

// SetClock sets the record clock (UTC, truncated to seconds as the dates
// are). nil restores time.Now.
func (s *Infinia) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	s.mu.Lock()
	s.clock = now
	s.mu.Unlock()
}

// Now is the record clock's reading, in UTC, in whole seconds.
func (s *Infinia) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nowLocked()
}

func (s *Infinia) nowLocked() time.Time { return s.clock().UTC().Truncate(time.Second) }

// SetLatency delays every response by d.
func (s *Infinia) SetLatency(d time.Duration) { s.faults.setLatency(d) }

// FailNextCode makes the next n requests whose envelope is valid answer
// code (HTTP 200) with its published message, or message when not empty.
// It replaces a previous FailNextCode.
func (s *Infinia) FailNextCode(n int, code, message string) {
	if message == "" {
		message = infiniaMessages[code]
	}
	s.mu.Lock()
	s.failCodeN, s.failCode, s.failCodeMs = n, code, message
	s.mu.Unlock()
}

// FailNext makes the next n requests under BaseURL() fail with the HTTP
// status, before any envelope check.
func (s *Infinia) FailNext(n, status int) { s.faults.failNext(n, status) }

// HangUpNext makes the next n requests lose their connection unanswered
// (an upstream that dies mid-request, or a proxy that gives up).
func (s *Infinia) HangUpNext(n int) { s.faults.hangUpNext(n) }

// ClearFaults removes FailNextCode, FailNext and the latency.
func (s *Infinia) ClearFaults() {
	s.faults.clear()
	s.mu.Lock()
	s.failCodeN = 0
	s.mu.Unlock()
}

// InfiniaRequest is one request the simulator received.
type InfiniaRequest struct {
	Method, Path string
	At           time.Time
	Resource     string
	AppID        string
	Version      string
	// SignatureValid: the signature verified.
	SignatureValid bool
	// RequestData is the decrypted request JSON ("" when it could not be
	// decrypted).
	RequestData string
	Code        string // the envelope's code ("" for HTTP-level answers)
	Records     int    // records answered
	Status      int
}

// Requests returns a copy of the request log.
func (s *Infinia) Requests() []InfiniaRequest { return s.requests.all() }

// CodeCount counts the answers with this envelope code.
func (s *Infinia) CodeCount(code string) int {
	return s.requests.count(func(r InfiniaRequest) bool { return r.Code == code })
}

// ResetRequests empties the request log.
func (s *Infinia) ResetRequests() { s.requests.reset() }

func (s *Infinia) serveHTTP(w http.ResponseWriter, r *http.Request) {
	idx := s.requests.add(InfiniaRequest{Method: r.Method, Path: r.URL.Path, At: time.Now()})
	if !s.faults.wait(w, r, s.closed) {
		return
	}
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	var info InfiniaRequest
	s.serveAPI(sw, r, &info)
	s.requests.update(idx, func(rq *InfiniaRequest) {
		rq.Resource, rq.AppID, rq.Version = info.Resource, info.AppID, info.Version
		rq.SignatureValid, rq.RequestData, rq.Code, rq.Records = info.SignatureValid, info.RequestData, info.Code, info.Records
		rq.Status = sw.status
	})
}

func (s *Infinia) serveAPI(w http.ResponseWriter, r *http.Request, info *InfiniaRequest) {
	rel := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, infiniaAPIPrefix), "/")
	for name, p := range infiniaPaths {
		if p == rel && strings.HasPrefix(r.URL.Path, infiniaAPIPrefix+"/") {
			info.Resource = name
		}
	}
	if status, _, ok := s.faults.takeNext(); ok {
		writeJSON(w, status, map[string]any{"status": status, "error": http.StatusText(status)})
		return
	}
	if info.Resource == "" {
		writeJSON(w, http.StatusNotFound, map[string]any{"status": 404, "error": "Not Found", "path": r.URL.Path})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"status": 405, "error": "Method Not Allowed"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		s.refuse(w, info, "SYS-007", "")
		return
	}
	var env map[string]any
	if err := json.Unmarshal(body, &env); err != nil {
		s.refuse(w, info, "SYS-002", "Invalid request parameters: the body is not JSON")
		return
	}
	field := func(name string) (string, bool) {
		v, ok := env[name].(string)
		return v, ok && strings.TrimSpace(v) != ""
	}
	for _, name := range []string{"version", "appId", "dataType", "requestData", "signature"} {
		if _, ok := field(name); !ok {
			s.refuse(w, info, "SYS-004", "Missing or null parameter: "+name)
			return
		}
	}
	version, _ := field("version")
	appID, _ := field("appId")
	dataType, _ := field("dataType")
	data, _ := field("requestData")
	sig, _ := field("signature")
	info.AppID, info.Version = appID, version
	switch {
	case appID != s.appID:
		s.refuse(w, info, "SYS-002", "Invalid request parameters: unknown appId")
		return
	case s.version != "" && version != s.version:
		s.refuse(w, info, "SYS-002", "Invalid request parameters: unsupported version "+version)
		return
	case dataType != "JSON":
		s.refuse(w, info, "SYS-005", "Invalid parameter format: dataType must be JSON")
		return
	case len(data) > infiniaMaxField || len(sig) > infiniaMaxField:
		s.refuse(w, info, "SYS-007", "")
		return
	}
	rawData, err1 := base64.StdEncoding.DecodeString(data)
	rawSig, err2 := base64.StdEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil {
		s.refuse(w, info, "SYS-005", "Invalid parameter format: requestData and signature must be base64")
		return
	}
	if err := InfiniaVerify(s.clientPub, []byte(data), rawSig); err != nil {
		s.refuse(w, info, "SYS-002", "Signature verification failed")
		return
	}
	info.SignatureValid = true
	plain, err := InfiniaDecrypt(s.provider, rawData)
	if err != nil {
		s.refuse(w, info, "SYS-005", "Invalid parameter format: requestData cannot be decrypted")
		return
	}
	info.RequestData = string(plain)
	var req map[string]any
	if err := json.Unmarshal(plain, &req); err != nil || req == nil {
		s.refuse(w, info, "SYS-005", "Invalid parameter format: requestData is not a JSON object")
		return
	}
	s.mu.Lock()
	if s.failCodeN > 0 {
		s.failCodeN--
		code, msg := s.failCode, s.failCodeMs
		s.mu.Unlock()
		s.refuse(w, info, code, msg)
		return
	}
	s.mu.Unlock()
	start, ok := req["startTime"].(string)
	if !ok || start == "" {
		s.refuse(w, info, "SYS-004", "Missing or null parameter: startTime")
		return
	}
	from, err := time.Parse(InfiniaTimeLayout, start)
	if err != nil {
		s.refuse(w, info, "SYS-005", "Invalid parameter format: startTime must be yyyy-MM-dd HH:mm:ss")
		return
	}
	var until time.Time
	if e, ok := req["endTime"].(string); ok && e != "" {
		if until, err = time.Parse(InfiniaTimeLayout, e); err != nil {
			s.refuse(w, info, "SYS-005", "Invalid parameter format: endTime must be yyyy-MM-dd HH:mm:ss")
			return
		}
	}
	recs := s.query(info.Resource, from, until)
	info.Records = len(recs)
	out := make([]map[string]any, len(recs))
	for i, rec := range recs {
		out[i] = rec.JSON()
	}
	plainResp, err := json.Marshal(map[string]any{"total": len(out), "records": out})
	if err == nil {
		var enc []byte
		if enc, err = InfiniaEncrypt(s.clientPub, plainResp); err == nil {
			info.Code = InfiniaSuccess
			writeJSON(w, http.StatusOK, InfiniaResponseEnvelope{
				AppID: s.appID, Code: InfiniaSuccess, Message: infiniaMessages[InfiniaSuccess],
				ResponseData: base64.StdEncoding.EncodeToString(enc),
			})
			return
		}
	}
	s.refuse(w, info, "SYS-003", "")
}

// refuse answers an envelope with a non-success code (HTTP 200, no
// responseData).
func (s *Infinia) refuse(w http.ResponseWriter, info *InfiniaRequest, code, message string) {
	if message == "" {
		message = infiniaMessages[code]
	}
	info.Code = code
	writeJSON(w, http.StatusOK, InfiniaResponseEnvelope{AppID: s.appID, Code: code, Message: message})
}

// InfiniaRecord is the current version of a status record.
type InfiniaRecord struct {
	Resource   string
	ID         string
	Status     string
	CreateTime time.Time // UTC, whole seconds
	UpdateTime time.Time
	Fields     map[string]any // the test's fields; one named like a computed field wins
}

// JSON returns the record as responseData carries it.
func (r InfiniaRecord) JSON() map[string]any {
	m := map[string]any{
		infiniaIDFields[r.Resource]: r.ID,
		"status":                    r.Status,
		"createTime":                FormatInfiniaTime(r.CreateTime),
		"updateTime":                FormatInfiniaTime(r.UpdateTime),
	}
	for k, v := range cloneFields(r.Fields) {
		m[k] = v
	}
	return m
}

// InfiniaChange is one entry of the ledger of status changes.
type InfiniaChange struct {
	Seq        int
	Resource   string
	ID         string
	Kind       ChangeKind // Created or Updated
	Status     string
	PrevStatus string // "" for Created
	CreateTime time.Time
	UpdateTime time.Time
	At         time.Time // record clock (whole seconds) when the change was made
	Record     map[string]any
}

type infiniaStore struct {
	nextID int
	byID   map[string]*InfiniaRecord
}

func (s *Infinia) storeOf(resource string) *infiniaStore {
	st, ok := s.stores[resource]
	if !ok {
		panic(fmt.Sprintf("simulators: Infinia has no resource %q", resource))
	}
	return st
}

// Create adds a record with status, dated now (createTime = updateTime).
func (s *Infinia) Create(resource, status string, fields map[string]any) InfiniaRecord {
	f := cloneFields(fields)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.storeOf(resource)
	st.nextID++
	now := s.nowLocked()
	rec := &InfiniaRecord{
		Resource: resource, ID: fmt.Sprintf("%s%06d", infiniaIDPrefixes[resource], st.nextID),
		Status: status, CreateTime: now, UpdateTime: now, Fields: f,
	}
	st.byID[rec.ID] = rec
	s.logLocked(*rec, Created, "", now)
	return copyInfiniaRecord(*rec)
}

// SetStatus changes a record's status and merges fields (nil removes);
// updateTime becomes now, at least one second after the previous one.
func (s *Infinia) SetStatus(resource, id, status string, fields map[string]any) (InfiniaRecord, error) {
	f := cloneFields(fields)
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.storeOf(resource).byID[id]
	if !ok {
		return InfiniaRecord{}, fmt.Errorf("simulators: %s %s does not exist", resource, id)
	}
	prev := rec.Status
	for k, v := range f {
		if v == nil {
			delete(rec.Fields, k)
		} else {
			rec.Fields[k] = v
		}
	}
	now := s.nowLocked()
	rec.Status = status
	if now.After(rec.UpdateTime) {
		rec.UpdateTime = now
	} else {
		rec.UpdateTime = rec.UpdateTime.Add(time.Second)
	}
	s.logLocked(*rec, Updated, prev, now)
	return copyInfiniaRecord(*rec), nil
}

// Get returns a record's current version.
func (s *Infinia) Get(resource, id string) (InfiniaRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.storeOf(resource).byID[id]
	if !ok {
		return InfiniaRecord{}, false
	}
	return copyInfiniaRecord(*rec), true
}

// Records returns every record of resource by updateTime, then id.
func (s *Infinia) Records(resource string) []InfiniaRecord {
	return s.query(resource, time.Time{}, time.Time{})
}

// Changes returns a copy of the ledger.
func (s *Infinia) Changes() []InfiniaChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]InfiniaChange(nil), s.changes...)
}

// ChangesOf returns the ledger entries of one resource.
func (s *Infinia) ChangesOf(resource string) []InfiniaChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []InfiniaChange
	for _, c := range s.changes {
		if c.Resource == resource {
			out = append(out, c)
		}
	}
	return out
}

func (s *Infinia) logLocked(rec InfiniaRecord, kind ChangeKind, prev string, at time.Time) {
	s.seq++
	s.changes = append(s.changes, InfiniaChange{
		Seq: s.seq, Resource: rec.Resource, ID: rec.ID, Kind: kind, Status: rec.Status, PrevStatus: prev,
		CreateTime: rec.CreateTime, UpdateTime: rec.UpdateTime, At: at, Record: rec.JSON(),
	})
}

func (s *Infinia) query(resource string, from, until time.Time) []InfiniaRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []InfiniaRecord
	for _, rec := range s.storeOf(resource).byID {
		if rec.UpdateTime.Before(from) || (!until.IsZero() && !rec.UpdateTime.Before(until)) {
			continue
		}
		out = append(out, copyInfiniaRecord(*rec))
	}
	slices.SortFunc(out, func(a, b InfiniaRecord) int {
		return cmp.Or(a.UpdateTime.Compare(b.UpdateTime), cmp.Compare(a.ID, b.ID))
	})
	return out
}

func copyInfiniaRecord(r InfiniaRecord) InfiniaRecord {
	r.Fields = cloneFields(r.Fields)
	return r
}
