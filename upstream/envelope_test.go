package upstream

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Key pairs shared by the envelope tests (2048-bit generation is slow).
var (
	envKeysOnce                            sync.Once
	envClientKey, envProviderKey, envWrong *rsa.PrivateKey
)

func envKeys(t *testing.T) {
	t.Helper()
	envKeysOnce.Do(func() {
		for _, k := range []**rsa.PrivateKey{&envClientKey, &envProviderKey, &envWrong} {
			var err error
			if *k, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				panic(err)
			}
		}
	})
}

func pkixDER(t *testing.T, pub *rsa.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pkcs8DER(t *testing.T, priv *rsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemText(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

// javaBase64 is bare base64 DER as Java tools print it, wrapped at 64
// columns with CRLF, to check that whitespace is tolerated.
func javaBase64(der []byte) string {
	s := base64.StdEncoding.EncodeToString(der)
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + "\r\n")
		s = s[64:]
	}
	return "  " + b.String() + s + "\n"
}

// provider is an Infinia written from SPEC §4, independently of
// envelope.go: it decrypts requestData in blocks with its own key,
// verifies the signature with the client's public key, and answers
// responseData encrypted for the client in blocks.
type provider struct {
	key       *rsa.PrivateKey
	clientPub *rsa.PublicKey
	oaep      bool // RSA/ECB/OAEPWithSHA-256AndMGF1Padding (MGF1-SHA1, as Java) instead of PKCS1Padding
	sha1Sig   bool // SHA1withRSA instead of SHA256withRSA
	// answer gives code, message and plaintext responseData (nil: none) for
	// a request whose signature was verified.
	answer func(plain []byte) (code, message string, data []byte)

	mu       sync.Mutex
	seen     []map[string]any // envelopes received
	plains   [][]byte         // decrypted requestData
	blocks   []int            // requestData blocks
	ctypes   []string
	answered []int // responseData blocks
}

func (p *provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var env map[string]any
	if err := json.Unmarshal(body, &env); err != nil {
		p.reply(w, "SYS-001", "Invalid request format", nil)
		return
	}
	data, _ := env["requestData"].(string)
	sigText, _ := env["signature"].(string)
	enc, err1 := base64.StdEncoding.DecodeString(data)
	sig, err2 := base64.StdEncoding.DecodeString(sigText)
	if err1 != nil || err2 != nil {
		p.reply(w, "SYS-001", "Invalid request format", nil)
		return
	}
	var err error
	if p.sha1Sig {
		h := sha1.Sum([]byte(data))
		err = rsa.VerifyPKCS1v15(p.clientPub, crypto.SHA1, h[:], sig)
	} else {
		h := sha256.Sum256([]byte(data))
		err = rsa.VerifyPKCS1v15(p.clientPub, crypto.SHA256, h[:], sig)
	}
	if err != nil {
		p.reply(w, "SYS-002", "Signature verification failed", nil)
		return
	}
	k := p.key.Size()
	if len(enc) == 0 || len(enc)%k != 0 {
		p.reply(w, "SYS-004", "Decryption failed", nil)
		return
	}
	var plain []byte
	for i := 0; i < len(enc); i += k {
		var m []byte
		if p.oaep {
			m, err = p.key.Decrypt(nil, enc[i:i+k], &rsa.OAEPOptions{Hash: crypto.SHA256, MGFHash: crypto.SHA1})
		} else {
			m, err = rsa.DecryptPKCS1v15(nil, p.key, enc[i:i+k])
		}
		if err != nil {
			p.reply(w, "SYS-004", "Decryption failed", nil)
			return
		}
		plain = append(plain, m...)
	}
	p.mu.Lock()
	p.seen = append(p.seen, env)
	p.plains = append(p.plains, plain)
	p.blocks = append(p.blocks, len(enc)/k)
	p.ctypes = append(p.ctypes, r.Header.Get("Content-Type"))
	p.mu.Unlock()
	code, msg, out := "SUC-200", "Success", plain
	if p.answer != nil {
		code, msg, out = p.answer(plain)
	}
	p.reply(w, code, msg, out)
}

func (p *provider) reply(w http.ResponseWriter, code, message string, plain []byte) {
	resp := map[string]any{"appId": "app-42", "code": code, "message": message}
	if plain != nil {
		k := p.clientPub.Size()
		chunk := k - 11
		if p.oaep {
			chunk = k - 2*sha256.Size - 2
		}
		var enc []byte
		for rest := plain; len(rest) > 0; {
			m := rest[:min(chunk, len(rest))]
			rest = rest[len(m):]
			var c []byte
			var err error
			if p.oaep {
				c, err = rsa.EncryptOAEPWithOptions(rand.Reader, p.clientPub, m, &rsa.OAEPOptions{Hash: crypto.SHA256, MGFHash: crypto.SHA1})
			} else {
				c, err = rsa.EncryptPKCS1v15(rand.Reader, p.clientPub, m)
			}
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			enc = append(enc, c...)
		}
		p.mu.Lock()
		p.answered = append(p.answered, len(enc)/k)
		p.mu.Unlock()
		resp["responseData"] = base64.StdEncoding.EncodeToString(enc)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func newProvider(t *testing.T, p *provider) *httptest.Server {
	t.Helper()
	envKeys(t)
	if p.key == nil {
		p.key = envProviderKey
	}
	if p.clientPub == nil {
		p.clientPub = &envClientKey.PublicKey
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv
}

// infiniaTarget is an infinia instance at base with PEM keys; cfg adds
// configuration, secrets replace infinia.private.key when given.
func infiniaTarget(t *testing.T, base string, cfg map[string]any, private string) Target {
	t.Helper()
	envKeys(t)
	c := map[string]any{
		"base.url":           base,
		"infinia.app.id":     "app-42",
		"infinia.public.key": pemText("PUBLIC KEY", pkixDER(t, &envProviderKey.PublicKey)),
	}
	for k, v := range cfg {
		c[k] = v
	}
	if private == "" {
		private = pemText("PRIVATE KEY", pkcs8DER(t, envClientKey))
	}
	return Target{ID: newID(), Revision: 1, Definition: definition(t, "infinia"),
		Configuration: c, Secrets: map[string]string{"infinia.private.key": private}}
}

func post(t *testing.T, c *Client, u, body string) ([]byte, error) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(http.MethodPost, u, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(context.Background(), req)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(resp.Body)
}

func TestEnvelopeRoundTripInBlocks(t *testing.T) {
	t.Parallel()
	answer := []byte(fmt.Sprintf(`{"list":[{"bindingId":"b1","note":%q}]}`, strings.Repeat("réponse ", 400)))
	p := &provider{answer: func([]byte) (string, string, []byte) { return "SUC-200", "Success", answer }}
	srv := newProvider(t, p)
	c := newTestClient(t, infiniaTarget(t, srv.URL+"/api", nil, ""), testOptions(nil))

	request := fmt.Sprintf(`{"startTime":"2025-09-09 08:00:09","pad":%q}`, strings.Repeat("x", 1000))
	got, err := post(t, c, srv.URL+"/api/account/binding/status/query", request)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if !bytes.Equal(got, answer) {
		t.Fatalf("body = %.80q…, want the decrypted responseData", got)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.plains) != 1 || string(p.plains[0]) != request {
		t.Fatalf("provider decrypted %q, want the request body", p.plains)
	}
	if p.blocks[0] < 5 || p.answered[0] < 10 {
		t.Errorf("blocks: request %d, response %d; want several of each", p.blocks[0], p.answered[0])
	}
	env := p.seen[0]
	if env["version"] != "1.0" || env["appId"] != "app-42" || env["dataType"] != "JSON" || len(env) != 5 {
		t.Errorf("envelope fields = %v", env)
	}
	if p.ctypes[0] != "application/json" {
		t.Errorf("Content-Type = %q", p.ctypes[0])
	}
}

func TestEnvelopeKeysAsPEMOrBareDER(t *testing.T) {
	t.Parallel()
	envKeys(t)
	pub, priv := &envProviderKey.PublicKey, envClientKey
	cases := []struct{ name, public, private string }{
		{"PEM", pemText("PUBLIC KEY", pkixDER(t, pub)), pemText("PRIVATE KEY", pkcs8DER(t, priv))},
		{"bare DER", javaBase64(pkixDER(t, pub)), javaBase64(pkcs8DER(t, priv))},
		{"PKCS#1 PEM", pemText("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(pub)), pemText("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(priv))},
		{"escaped newlines", strings.ReplaceAll(pemText("PUBLIC KEY", pkixDER(t, pub)), "\n", `\n`), base64.StdEncoding.EncodeToString(pkcs8DER(t, priv))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := &provider{}
			srv := newProvider(t, p)
			target := infiniaTarget(t, srv.URL, map[string]any{"infinia.public.key": tc.public}, tc.private)
			c := newTestClient(t, target, testOptions(nil))
			got, err := post(t, c, srv.URL+"/status", "") // no body: {} is sent
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if string(got) != "{}" {
				t.Errorf("body = %q, want {} echoed", got)
			}
		})
	}
}

func TestEnvelopeBadKeyIsAnErrorNamingItsConfigurationKey(t *testing.T) {
	t.Parallel()
	envKeys(t)
	der := pkcs8DER(t, envClientKey)
	broken := base64.StdEncoding.EncodeToString(der[:len(der)/2])
	cases := []struct {
		name, public, private, want string
	}{
		{"public not a key", "pk", "", "infinia.public.key"},
		{"public is a private key", pemText("PRIVATE KEY", der), "", "infinia.public.key"},
		{"private truncated", "", broken, "infinia.private.key"},
		{"private garbage", "", "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----", "infinia.private.key"},
	}
	for _, tc := range cases {
		cfg := map[string]any{}
		if tc.public != "" {
			cfg["infinia.public.key"] = tc.public
		}
		_, err := NewClient(infiniaTarget(t, "https://uat-openapi.infiniax.com/api", cfg, tc.private), testOptions(nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), broken[10:40]) || strings.Contains(err.Error(), "MII") {
			t.Errorf("%s: the error shows the key: %v", tc.name, err)
		}
	}
}

func TestEnvelopeBadSignatureIsRefusedWithItsCodeAndMessage(t *testing.T) {
	t.Parallel()
	p := &provider{}
	srv := newProvider(t, p)
	wrong := pemText("PRIVATE KEY", pkcs8DER(t, envWrong)) // signs with a key the provider does not know
	c := newTestClient(t, infiniaTarget(t, srv.URL, nil, wrong), testOptions(nil))
	_, err := post(t, c, srv.URL+"/status", `{"a":1}`)
	var ee *EnvelopeError
	if !errors.As(err, &ee) {
		t.Fatalf("err = %v (%T), want *EnvelopeError", err, err)
	}
	if ee.Code != "SYS-002" || ee.Message != "Signature verification failed" || ee.Temporary() {
		t.Errorf("EnvelopeError = %+v", ee)
	}
	if !strings.Contains(err.Error(), `SYS-002: "Signature verification failed"`) {
		t.Errorf("message = %v", err)
	}
	if len(p.plains) != 0 {
		t.Error("the provider accepted the request")
	}
}

func TestEnvelopeRetryableCodeIsATemporaryStatusError(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"SYS-003", "SYS-008"} {
		p := &provider{answer: func([]byte) (string, string, []byte) { return code, "System busy, try again later", nil }}
		srv := newProvider(t, p)
		c := newTestClient(t, infiniaTarget(t, srv.URL, nil, ""), testOptions(nil))
		_, err := post(t, c, srv.URL+"/status", `{}`)
		var se *StatusError
		if !errors.As(err, &se) || !se.Temporary() {
			t.Fatalf("%s: err = %v (%T), want a temporary *StatusError", code, err, err)
		}
		if !strings.Contains(err.Error(), code) || !strings.Contains(err.Error(), `"System busy, try again later"`) {
			t.Errorf("%s: message = %v", code, err)
		}
		if len(p.plains) != 1 {
			t.Errorf("%s: %d requests, want 1 (the next poll retries)", code, len(p.plains))
		}
	}
}

func TestEnvelopeOtherCodeFailsWithItsMessage(t *testing.T) {
	t.Parallel()
	p := &provider{answer: func([]byte) (string, string, []byte) { return "SYS-005", "appId not authorized", nil }}
	srv := newProvider(t, p)
	c := newTestClient(t, infiniaTarget(t, srv.URL, nil, ""), testOptions(nil))
	_, err := post(t, c, srv.URL+"/status", `{}`)
	var ee *EnvelopeError
	if !errors.As(err, &ee) || ee.Code != "SYS-005" || ee.Message != "appId not authorized" {
		t.Fatalf("err = %v (%T), want *EnvelopeError SYS-005", err, err)
	}
	var se *StatusError
	if errors.As(err, &se) {
		t.Error("a refusal is not a StatusError")
	}
	if !strings.Contains(err.Error(), "appId not authorized") || !strings.Contains(err.Error(), "POST") {
		t.Errorf("message = %v", err)
	}
}

func TestEnvelopeIsNotSentToAnotherHost(t *testing.T) {
	t.Parallel()
	srv := newProvider(t, &provider{})
	var mu sync.Mutex
	var seen []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, string(b))
		mu.Unlock()
		_, _ = io.WriteString(w, `{"plain":true}`)
	}))
	t.Cleanup(other.Close)
	c := newTestClient(t, infiniaTarget(t, srv.URL, nil, ""), testOptions(nil))
	got, err := post(t, c, other.URL+"/next", `{"page":2}`)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if string(got) != `{"plain":true}` {
		t.Errorf("body = %q, want the other host's answer as is", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != `{"page":2}` {
		t.Errorf("other host got %q, want the plain body", seen)
	}
}

func TestEnvelopeConfiguredOAEPAndSHA1withRSA(t *testing.T) {
	t.Parallel()
	p := &provider{oaep: true, sha1Sig: true}
	srv := newProvider(t, p)
	cfg := map[string]any{"infinia.padding": "OAEPWithSHA-256AndMGF1", "infinia.signature.algorithm": "SHA1withRSA"}
	c := newTestClient(t, infiniaTarget(t, srv.URL, cfg, ""), testOptions(nil))
	request := fmt.Sprintf(`{"pad":%q}`, strings.Repeat("y", 600))
	got, err := post(t, c, srv.URL+"/status", request)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if string(got) != request {
		t.Errorf("round trip = %.60q…", got)
	}
	if p.blocks[0] < 3 {
		t.Errorf("%d request blocks, want several", p.blocks[0])
	}
}

func TestEnvelopeErrorsRedactThePrivateKey(t *testing.T) {
	t.Parallel()
	envKeys(t)
	bare := base64.StdEncoding.EncodeToString(pkcs8DER(t, envClientKey))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"code":"SYS-001","message":"bad key `+bare+`"}`)
	}))
	t.Cleanup(srv.Close)
	c := newTestClient(t, infiniaTarget(t, srv.URL, nil, bare), testOptions(nil))
	_, err := post(t, c, srv.URL+"/status", `{}`)
	if err == nil || strings.Contains(err.Error(), bare[:40]) {
		t.Errorf("err = %v, want one without the key", err)
	}
}
