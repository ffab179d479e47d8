package simulators_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollhook/pollhook/e2e/simulators"
)

// Keys shared by the Infinia tests (2048-bit generation is slow).
var (
	infiniaClientKey   = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	infiniaProviderKey = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	infiniaOtherKey    = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func newTestInfinia(t *testing.T, opts ...simulators.InfiniaOption) *simulators.Infinia {
	t.Helper()
	base := []simulators.InfiniaOption{
		simulators.WithInfiniaClientKey(infiniaClientKey()),
		simulators.WithInfiniaProviderKey(infiniaProviderKey()),
	}
	return simulators.NewInfinia(t, append(base, opts...)...)
}

// envelopeClient is a client of Infinia's envelope written from SPEC §4
// alone (not from the simulator's helpers): requestData =
// base64(RSA-encrypt(provider public key, JSON)) in PKCS#1 v1.5 blocks of
// k−11 bytes, signature = base64(SHA256withRSA(client private key, the
// requestData string's bytes)); responseData decrypted in k-byte blocks
// with the client's private key. Keys arrive as configuration strings:
// the provider's as bare base64 X.509 DER (or PEM), the client's as bare
// base64 PKCS#8 DER.
type envelopeClient struct {
	appID    string
	provider *rsa.PublicKey
	client   *rsa.PrivateKey
	// sign, when set, replaces the client key for signing (a wrong key).
	sign *rsa.PrivateKey
}

func newEnvelopeClient(t *testing.T, cfg map[string]any) *envelopeClient {
	t.Helper()
	pubText := cfg["infinia.public.key"].(string)
	der := []byte(nil)
	if b, _ := pem.Decode([]byte(pubText)); b != nil {
		der = b.Bytes
	} else {
		var err error
		if der, err = base64.StdEncoding.DecodeString(pubText); err != nil {
			t.Fatalf("public key: %v", err)
		}
	}
	pk, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatalf("public key: %v", err)
	}
	privDER, err := base64.StdEncoding.DecodeString(cfg["infinia.private.key"].(string))
	if err != nil {
		t.Fatalf("private key: %v", err)
	}
	sk, err := x509.ParsePKCS8PrivateKey(privDER)
	if err != nil {
		t.Fatalf("private key: %v", err)
	}
	return &envelopeClient{appID: cfg["infinia.app.id"].(string), provider: pk.(*rsa.PublicKey), client: sk.(*rsa.PrivateKey)}
}

func (c *envelopeClient) seal(t *testing.T, plain []byte) map[string]any {
	t.Helper()
	k := c.provider.Size()
	var enc []byte
	for off := 0; off < len(plain); off += k - 11 {
		block, err := rsa.EncryptPKCS1v15(rand.Reader, c.provider, plain[off:min(off+k-11, len(plain))])
		if err != nil {
			t.Fatal(err)
		}
		enc = append(enc, block...)
	}
	data := base64.StdEncoding.EncodeToString(enc)
	signer := c.client
	if c.sign != nil {
		signer = c.sign
	}
	h := sha256.Sum256([]byte(data))
	sig, err := rsa.SignPKCS1v15(rand.Reader, signer, crypto.SHA256, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"version": "1.0", "appId": c.appID, "dataType": "JSON",
		"requestData": data, "signature": base64.StdEncoding.EncodeToString(sig)}
}

// post sends an envelope (or any body) and returns the HTTP status and the
// envelope answer.
func infiniaPost(t *testing.T, rawURL string, body any) (int, map[string]any) {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Post(rawURL, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("answer not JSON: %d %s", resp.StatusCode, raw)
	}
	return resp.StatusCode, m
}

func (c *envelopeClient) open(t *testing.T, env map[string]any) map[string]any {
	t.Helper()
	if env["code"] != "SUC-200" {
		t.Fatalf("code %v: %v", env["code"], env["message"])
	}
	raw, err := base64.StdEncoding.DecodeString(env["responseData"].(string))
	if err != nil {
		t.Fatal(err)
	}
	k := c.client.Size()
	if len(raw)%k != 0 {
		t.Fatalf("responseData is %d bytes, not whole %d-byte blocks", len(raw), k)
	}
	var plain []byte
	for off := 0; off < len(raw); off += k {
		m, err := rsa.DecryptPKCS1v15(nil, c.client, raw[off:off+k])
		if err != nil {
			t.Fatalf("block %d: %v", off/k, err)
		}
		plain = append(plain, m...)
	}
	var doc map[string]any
	if err := json.Unmarshal(plain, &doc); err != nil {
		t.Fatalf("responseData: %v: %s", err, plain)
	}
	return doc
}

func TestInfiniaEnvelopeRoundTrip(t *testing.T) {
	t.Parallel()
	clk := simulators.NewManualClock(time.Date(2026, 7, 1, 8, 0, 0, 0, time.UTC))
	s := newTestInfinia(t, simulators.WithInfiniaClock(clk.Now))
	cfg := s.InstanceConfiguration()
	if cfg["base.url"] != s.BaseURL() || !strings.HasSuffix(s.BaseURL(), "/api") {
		t.Fatalf("InstanceConfiguration = %v", cfg)
	}
	if strings.Contains(cfg["infinia.public.key"].(string), "BEGIN") || !strings.Contains(s.ProviderPublicKeyPEM(), "BEGIN PUBLIC KEY") {
		t.Fatal("keys: want bare base64 DER in the configuration and PEM from ProviderPublicKeyPEM")
	}
	c := newEnvelopeClient(t, cfg)
	// The PEM form reads to the same key.
	c2 := newEnvelopeClient(t, map[string]any{"infinia.public.key": s.ProviderPublicKeyPEM(),
		"infinia.private.key": cfg["infinia.private.key"], "infinia.app.id": s.AppID()})
	if !c2.provider.Equal(c.provider) {
		t.Fatal("PEM and base64 DER differ")
	}

	// Enough records that responseData takes several blocks.
	var ids []string
	for i := range 8 {
		ids = append(ids, s.Create(simulators.InfiniaAccountBinding, "PROCESSING", map[string]any{
			"sellerId": "SELLER-" + strings.Repeat("x", 20) + string(rune('A'+i))}).ID)
	}
	clk.Add(time.Hour)
	if _, err := s.SetStatus(simulators.InfiniaAccountBinding, ids[3], "SUCCESS", nil); err != nil {
		t.Fatal(err)
	}
	// A request larger than one block (k−11 = 245 bytes).
	req, _ := json.Marshal(map[string]any{"startTime": "2026-07-01 00:00:00", "note": strings.Repeat("n", 400)})
	status, env := infiniaPost(t, s.ResourceURL(simulators.InfiniaAccountBinding), c.seal(t, req))
	if status != 200 || env["appId"] != s.AppID() || env["message"] != "Operation completed successfully." {
		t.Fatalf("answer: %d %v", status, env)
	}
	doc := c.open(t, env)
	recs := doc["records"].([]any)
	if len(recs) != 8 || doc["total"] != float64(8) {
		t.Fatalf("records = %v", doc)
	}
	last := recs[7].(map[string]any)
	if last["bindingId"] != ids[3] || last["status"] != "SUCCESS" || last["createTime"] != "2026-07-01 08:00:00" ||
		last["updateTime"] != "2026-07-01 09:00:00" {
		t.Fatalf("updated record = %v", last)
	}
	// startTime selects by updateTime.
	req, _ = json.Marshal(map[string]any{"startTime": "2026-07-01 08:30:00"})
	_, env = infiniaPost(t, s.ResourceURL(simulators.InfiniaAccountBinding), c.seal(t, req))
	if recs := c.open(t, env)["records"].([]any); len(recs) != 1 {
		t.Fatalf("window: %v", recs)
	}
	// The log has the decrypted request and the verdict.
	rq := s.Requests()
	if len(rq) != 2 || !rq[0].SignatureValid || rq[0].Code != "SUC-200" || rq[0].Records != 8 ||
		!strings.Contains(rq[1].RequestData, "08:30:00") || rq[1].Resource != simulators.InfiniaAccountBinding {
		t.Fatalf("requests = %+v", rq)
	}
	// Each resource answers at the definition's path.
	for _, r := range simulators.InfiniaResources() {
		if _, env := infiniaPost(t, s.ResourceURL(r), c.seal(t, []byte(`{"startTime":"2026-07-01 00:00:00"}`))); env["code"] != "SUC-200" {
			t.Errorf("%s: %v", r, env)
		}
	}
}

func TestInfiniaEnvelopeRefusals(t *testing.T) {
	t.Parallel()
	s := newTestInfinia(t)
	c := newEnvelopeClient(t, s.InstanceConfiguration())
	u := s.ResourceURL(simulators.InfiniaRevenueSharing)
	good := []byte(`{"startTime":"2026-07-01 00:00:00"}`)
	with := func(key string, v any) map[string]any {
		env := c.seal(t, good)
		if v == nil {
			delete(env, key)
		} else {
			env[key] = v
		}
		return env
	}
	tampered := c.seal(t, good)
	other := c.seal(t, []byte(`{"startTime":"2026-07-02 00:00:00"}`))
	tampered["requestData"] = other["requestData"] // signature of another requestData
	wrongKey := &envelopeClient{appID: c.appID, provider: c.provider, client: c.client, sign: infiniaOtherKey()}
	// requestData encrypted for the wrong key, correctly signed.
	wrongProvider := &envelopeClient{appID: c.appID, provider: &infiniaOtherKey().PublicKey, client: c.client}

	for _, tc := range []struct {
		name string
		body any
		code string
		msg  string
	}{
		{"not JSON", []byte("hello"), "SYS-002", ""},
		{"no signature", with("signature", nil), "SYS-004", "signature"},
		{"no requestData", with("requestData", nil), "SYS-004", "requestData"},
		{"unknown appId", with("appId", "someone-else"), "SYS-002", "appId"},
		{"other version", with("version", "2.0"), "SYS-002", "version"},
		{"dataType XML", with("dataType", "XML"), "SYS-005", "dataType"},
		{"signature not base64", with("signature", "!!!"), "SYS-005", ""},
		{"signature by another key", wrongKey.seal(t, good), "SYS-002", "Signature verification failed"},
		{"requestData swapped", tampered, "SYS-002", "Signature verification failed"},
		{"encrypted for another key", wrongProvider.seal(t, good), "SYS-005", "decrypted"},
		{"request not an object", c.seal(t, []byte(`[1]`)), "SYS-005", ""},
		{"no startTime", c.seal(t, []byte(`{}`)), "SYS-004", "startTime"},
		{"bad startTime", c.seal(t, []byte(`{"startTime":"2026-07-01T00:00:00Z"}`)), "SYS-005", "startTime"},
		{"requestData too long", c.seal(t, []byte(`{"startTime":"2026-07-01 00:00:00","pad":"`+strings.Repeat("p", 1500)+`"}`)), "SYS-007", ""},
	} {
		status, env := infiniaPost(t, u, tc.body)
		msg, _ := env["message"].(string)
		if status != 200 || env["code"] != tc.code || env["responseData"] != nil || !strings.Contains(msg, tc.msg) || msg == "" {
			t.Errorf("%s: %d %v, want %s with %q", tc.name, status, env, tc.code, tc.msg)
		}
	}
	if n := s.CodeCount("SUC-200"); n != 0 {
		t.Fatalf("%d successes", n)
	}
	// HTTP level.
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	if st, _ := infiniaPost(t, s.BaseURL()+"/v1/unknown", c.seal(t, good)); st != 404 {
		t.Fatalf("unknown path: %d", st)
	}
	s.FailNext(1, http.StatusBadGateway)
	if st, _ := infiniaPost(t, u, c.seal(t, good)); st != 502 {
		t.Fatalf("injected 502: %d", st)
	}
}

func TestInfiniaInjectedCodes(t *testing.T) {
	t.Parallel()
	s := newTestInfinia(t)
	c := newEnvelopeClient(t, s.InstanceConfiguration())
	u := s.ResourceURL(simulators.InfiniaTradeDetailsUpload)
	good := []byte(`{"startTime":"2026-07-01 00:00:00"}`)
	for _, code := range simulators.InfiniaSystemCodes() {
		s.FailNextCode(1, code, "")
		status, env := infiniaPost(t, u, c.seal(t, good))
		if status != 200 || env["code"] != code || env["message"] != simulators.InfiniaCodeMessage(code) || env["message"] == "" {
			t.Errorf("%s: %d %v", code, status, env)
		}
	}
	if simulators.InfiniaCodeMessage("SYS-008") != "Service unavailable. Please try again later." {
		t.Errorf("SYS-008 message = %q", simulators.InfiniaCodeMessage("SYS-008"))
	}
	s.FailNextCode(2, "SYS-003", "busy")
	for range 2 {
		if _, env := infiniaPost(t, u, c.seal(t, good)); env["code"] != "SYS-003" || env["message"] != "busy" {
			t.Fatalf("custom message: %v", env)
		}
	}
	if _, env := infiniaPost(t, u, c.seal(t, good)); env["code"] != "SUC-200" {
		t.Fatalf("after faults: %v", env)
	}
	if s.CodeCount("SYS-003") != 3 {
		t.Fatalf("CodeCount(SYS-003) = %d", s.CodeCount("SYS-003"))
	}
}

func TestInfiniaStatusLedger(t *testing.T) {
	t.Parallel()
	clk := simulators.NewManualClock(time.Date(2026, 7, 1, 8, 0, 0, 700_000_000, time.UTC))
	s := newTestInfinia(t, simulators.WithInfiniaClock(clk.Now))
	const res = simulators.InfiniaRevenueSharing
	r := s.Create(res, "PENDING", map[string]any{"amount": "10.00"})
	// Two changes in the same second: each gets its own updateTime.
	s.SetStatus(res, r.ID, "PROCESSING", nil)
	s.SetStatus(res, r.ID, "SUCCESS", map[string]any{"amount": nil})
	if _, err := s.SetStatus(res, "RVS999999", "X", nil); err == nil {
		t.Fatal("unknown id accepted")
	}
	ch := s.ChangesOf(res)
	if len(ch) != 3 || ch[0].Kind != simulators.Created || ch[1].PrevStatus != "PENDING" || ch[2].Status != "SUCCESS" {
		t.Fatalf("ledger = %+v", ch)
	}
	for i, want := range []string{"2026-07-01 08:00:00", "2026-07-01 08:00:01", "2026-07-01 08:00:02"} {
		if got := simulators.FormatInfiniaTime(ch[i].UpdateTime); got != want || ch[i].Record["updateTime"] != want {
			t.Errorf("change %d updateTime = %s, want %s", i, got, want)
		}
	}
	if _, ok := ch[2].Record["amount"]; ok || ch[2].Record["sharingId"] != r.ID {
		t.Errorf("last record = %v", ch[2].Record)
	}
	if got, _ := s.Get(res, r.ID); got.Status != "SUCCESS" {
		t.Errorf("Get = %+v", got)
	}
}

func TestInfiniaHelpers(t *testing.T) {
	t.Parallel()
	s := newTestInfinia(t)
	// The exported helpers against the simulator.
	body, err := simulators.SealInfiniaRequest("1.0", s.AppID(), s.ProviderPublicKey(), infiniaClientKey(), []byte(`{"startTime":"2026-01-01 00:00:00"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(s.ResourceURL(simulators.InfiniaAccountBinding), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	env, plain, err := simulators.OpenInfiniaResponse(infiniaClientKey(), raw)
	if err != nil || env.Code != simulators.InfiniaSuccess || !json.Valid(plain) {
		t.Fatalf("helpers: %v %+v %s", err, env, plain)
	}
	// Keys in both textual forms.
	for _, text := range []string{s.ProviderPublicKeyPEM(), s.ProviderPublicKeyBase64()} {
		k, err := simulators.ParseInfiniaPublicKey(text)
		if err != nil || !k.Equal(s.ProviderPublicKey()) {
			t.Errorf("ParseInfiniaPublicKey: %v", err)
		}
	}
	for _, text := range []string{simulators.InfiniaPrivateKeyPEM(infiniaClientKey()), simulators.InfiniaPrivateKeyBase64(infiniaClientKey())} {
		k, err := simulators.ParseInfiniaPrivateKey(text)
		if err != nil || !k.Equal(infiniaClientKey()) {
			t.Errorf("ParseInfiniaPrivateKey: %v", err)
		}
	}
	// Block encryption: 600 bytes take 3 blocks of a 2048-bit key.
	msg := bytes.Repeat([]byte("z"), 600)
	enc, err := simulators.InfiniaEncrypt(&infiniaClientKey().PublicKey, msg)
	if err != nil || len(enc) != 3*256 {
		t.Fatalf("encrypt: %v, %d bytes", err, len(enc))
	}
	if dec, err := simulators.InfiniaDecrypt(infiniaClientKey(), enc); err != nil || !bytes.Equal(dec, msg) {
		t.Fatalf("decrypt: %v", err)
	}
	sig, _ := simulators.InfiniaSign(infiniaClientKey(), msg)
	if simulators.InfiniaVerify(&infiniaClientKey().PublicKey, msg, sig) != nil ||
		simulators.InfiniaVerify(&infiniaClientKey().PublicKey, msg[1:], sig) == nil {
		t.Fatal("sign/verify")
	}
	// Only the client's public key given: no private key in the
	// configuration.
	s2 := simulators.NewInfinia(t, simulators.WithInfiniaClientPublicKey(&infiniaClientKey().PublicKey),
		simulators.WithInfiniaProviderKey(infiniaProviderKey()))
	if _, ok := s2.InstanceConfiguration()["infinia.private.key"]; ok || s2.ClientPrivateKey() != nil {
		t.Fatal("private key leaked into the configuration")
	}
}
