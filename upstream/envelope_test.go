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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
		{"PEM on one line", strings.Join(strings.Fields(pemText("PUBLIC KEY", pkixDER(t, pub))), " "), strings.ReplaceAll(pemText("PRIVATE KEY", pkcs8DER(t, priv)), "\n", "")},
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
		target := infiniaTarget(t, "https://uat-openapi.infiniax.com/api", cfg, tc.private)
		problems := CheckCredentials(target.Definition, mergeValues(target.Configuration, target.Secrets))
		if len(problems) != 1 || problems[0].Field != tc.want || strings.Contains(problems[0].Message, "MII") {
			t.Errorf("%s: CheckCredentials = %+v, want one problem of %s", tc.name, problems, tc.want)
		}
		_, err := NewClient(target, testOptions(nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), broken[10:40]) || strings.Contains(err.Error(), "MII") {
			t.Errorf("%s: the error shows the key: %v", tc.name, err)
		}
	}
}

func TestCheckCredentialsPassesGoodKeysAndOtherSchemes(t *testing.T) {
	t.Parallel()
	envKeys(t)
	good := infiniaTarget(t, "https://uat-openapi.infiniax.com/api", nil, "")
	if problems := CheckCredentials(good.Definition, mergeValues(good.Configuration, good.Secrets)); len(problems) != 0 {
		t.Errorf("good keys: %+v", problems)
	}
	if problems := CheckCredentials(definition(t, "finfo"), map[string]any{"username": "u"}); len(problems) != 0 {
		t.Errorf("a password grant is not checked here: %+v", problems)
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

func TestEnvelopeRetryableCodeIsRetriedLikeA503(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	answer := []byte(`{"list":[]}`)
	p := &provider{answer: func([]byte) (string, string, []byte) {
		if n.Add(1) == 1 {
			return "SYS-003", "System busy, try again later", nil
		}
		return "SUC-200", "Success", answer
	}}
	srv := newProvider(t, p)
	sleeps := &recordedSleeps{}
	opts := testOptions(nil)
	opts.sleep = sleeps.sleep
	c := newTestClient(t, infiniaTarget(t, srv.URL, nil, ""), opts)
	got, err := post(t, c, srv.URL+"/status", `{"a":1}`)
	if err != nil || !bytes.Equal(got, answer) {
		t.Fatalf("Do = %q, %v; want the second answer's responseData", got, err)
	}
	if w := sleeps.all(); !slices.Equal(w, []time.Duration{retryBackoff}) {
		t.Errorf("waits %v, want [%s] (the 503 backoff)", w, retryBackoff)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.seen) != 2 || p.seen[0]["requestData"] != p.seen[1]["requestData"] || p.seen[0]["signature"] != p.seen[1]["signature"] {
		t.Errorf("%d requests; want 2 carrying the same envelope", len(p.seen))
	}
}

func TestEnvelopeRetryableCodeIsATemporaryStatusErrorOnceRetriesAreSpent(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"SYS-003", "SYS-008"} {
		p := &provider{answer: func([]byte) (string, string, []byte) { return code, "System busy, try again later", nil }}
		srv := newProvider(t, p)
		sleeps := &recordedSleeps{}
		opts := testOptions(nil)
		opts.sleep = sleeps.sleep
		c := newTestClient(t, infiniaTarget(t, srv.URL, nil, ""), opts)
		_, err := post(t, c, srv.URL+"/status", `{}`)
		var se *StatusError
		if !errors.As(err, &se) || !se.Temporary() || se.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s: err = %v (%T), want a temporary 503 *StatusError", code, err, err)
		}
		var ee *EnvelopeError
		if errors.As(err, &ee) {
			t.Errorf("%s: a retryable code is not an *EnvelopeError", code)
		}
		if !strings.Contains(err.Error(), code) || !strings.Contains(err.Error(), `"System busy, try again later"`) {
			t.Errorf("%s: message = %v", code, err)
		}
		want := []time.Duration{retryBackoff, 2 * retryBackoff, 4 * retryBackoff}
		if w := sleeps.all(); !slices.Equal(w, want) {
			t.Errorf("%s: waits %v, want %v", code, w, want)
		}
		p.mu.Lock()
		if len(p.plains) != DefaultMaxRetries+1 {
			t.Errorf("%s: %d requests, want %d", code, len(p.plains), DefaultMaxRetries+1)
		}
		p.mu.Unlock()
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
	der := pkcs8DER(t, envClientKey)
	bare := base64.StdEncoding.EncodeToString(der)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"code":"SYS-001","message":"bad key `+bare+`"}`)
	}))
	t.Cleanup(srv.Close)
	onePEM := strings.Join(strings.Fields(pemText("PRIVATE KEY", der)), " ")
	for _, private := range []string{bare, onePEM} {
		c := newTestClient(t, infiniaTarget(t, srv.URL, nil, private), testOptions(nil))
		_, err := post(t, c, srv.URL+"/status", `{}`)
		if err == nil || strings.Contains(err.Error(), bare[:40]) || !strings.Contains(err.Error(), "SYS-001") {
			t.Errorf("err = %v, want SYS-001 without the key", err)
		}
	}
}

func TestEnvelopeRedirects(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var leaked []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		leaked = append(leaked, r.Method+" "+string(b))
		mu.Unlock()
		_, _ = io.WriteString(w, `{"plain":true}`)
	}))
	t.Cleanup(other.Close)
	p := &provider{}
	envKeys(t)
	p.key, p.clientPub = envProviderKey, &envClientKey.PublicKey
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "/status", http.StatusTemporaryRedirect)
		case "/elsewhere":
			http.Redirect(w, r, other.URL+"/status", http.StatusTemporaryRedirect)
		case "/elsewhere-get":
			http.Redirect(w, r, other.URL+"/status", http.StatusSeeOther)
		default:
			p.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	c := newTestClient(t, infiniaTarget(t, srv.URL, nil, ""), testOptions(nil))

	// Same host: the envelope is sent again and the answer opened.
	if got, err := post(t, c, srv.URL+"/moved", `{"b":2}`); err != nil || string(got) != `{"b":2}` {
		t.Errorf("same-host redirect: %q, %v", got, err)
	}
	// Another host: refused, whether the body would follow (307) or not (303).
	for _, path := range []string{"/elsewhere", "/elsewhere-get"} {
		if _, err := post(t, c, srv.URL+path, `{"b":2}`); err == nil || !strings.Contains(err.Error(), "envelope") {
			t.Errorf("%s: err = %v, want the redirect refused", path, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(leaked) != 0 {
		t.Errorf("the other host received %q", leaked)
	}
}
