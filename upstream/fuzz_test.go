package upstream

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/pollhook/pollhook/connectors"
)

// fuzzPaddings are the envelope paddings FuzzEnvelopeOpen picks from.
var fuzzPaddings = []string{connectors.PaddingPKCS1v15, connectors.PaddingOAEPSHA1, connectors.PaddingOAEPSHA256}

var (
	fuzzEnvOnce             sync.Once
	fuzzEnvAuths            []*envelopeAuth // one per fuzzPaddings entry
	fuzzClient, fuzzProvide *rsa.PrivateKey
)

// fuzzEnvelopes builds, once, an envelope scheme per padding from PEM keys
// as an instance's configuration gives them. The keys are 1024-bit to keep
// each execution fast.
func fuzzEnvelopes(t *testing.T) []*envelopeAuth {
	t.Helper()
	fuzzEnvOnce.Do(func() {
		var err error
		if fuzzClient, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
			panic(err)
		}
		if fuzzProvide, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
			panic(err)
		}
		vals := map[string]any{
			connectors.ConfigInfiniaAppID:      "app-42",
			connectors.ConfigInfiniaPublicKey:  pemText("PUBLIC KEY", pkixDER(t, &fuzzProvide.PublicKey)),
			connectors.ConfigInfiniaPrivateKey: pemText("PRIVATE KEY", pkcs8DER(t, fuzzClient)),
		}
		for _, p := range fuzzPaddings {
			a, err := newEnvelopeAuth(&connectors.Envelope{Padding: p}, vals)
			if err != nil {
				panic(err)
			}
			fuzzEnvAuths = append(fuzzEnvAuths, a)
		}
	})
	return fuzzEnvAuths
}

// FuzzEnvelopeOpen opens Infinia answers and seals requests:
//   - any answer opens without a panic; it succeeds only with the success
//     code, and a refusal keeps its code and is retryable exactly for the
//     retryable codes; other errors are one line;
//   - responseData encrypted in blocks for the client's key, as Infinia
//     does (independently of envelope.go), in any base64 form Java writes,
//     opens to exactly the plaintext;
//   - requestData of a sealed JSON body decrypts with the provider's key
//     to that body, and its signature verifies with the client's key.
//
// Seeds: testdata/fuzz/FuzzEnvelopeOpen (Infinia answers and request bodies).
func FuzzEnvelopeOpen(f *testing.F) {
	f.Fuzz(func(t *testing.T, answer, plain []byte, form uint8) {
		auths := fuzzEnvelopes(t)
		a := auths[int(form)%len(auths)]
		checkOpenAnswer(t, a, answer)

		plain = plain[:min(len(plain), 300)] // a few blocks: keeps executions fast
		if len(plain) > 0 {
			enc := fuzzEncrypt(t, &fuzzClient.PublicKey, a.padding, plain)
			body, err := json.Marshal(map[string]any{"appId": "app-42", "code": "SUC-200", "message": "Success",
				"responseData": javaBase64Form(enc, form/3)})
			if err != nil {
				t.Fatal(err)
			}
			got, err := a.open(body)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("%s: responseData for %q opens to %q, %v", a.padding, plain, got, err)
			}
		}

		sealed, _, err := a.seal(plain)
		if err != nil {
			if len(bytes.TrimSpace(plain)) == 0 || json.Valid(plain) {
				t.Fatalf("sealing %q: %v", plain, err)
			}
			return
		}
		var req envelopeRequest
		if err := json.Unmarshal(sealed, &req); err != nil {
			t.Fatal(err)
		}
		enc, err := base64.StdEncoding.DecodeString(req.RequestData)
		if err != nil {
			t.Fatal(err)
		}
		want := plain
		if len(bytes.TrimSpace(plain)) == 0 {
			want = []byte("{}")
		}
		if got := fuzzDecrypt(t, fuzzProvide, a.padding, enc); !bytes.Equal(got, want) {
			t.Fatalf("%s: requestData decrypts to %q, want %q", a.padding, got, want)
		}
		sig, err := base64.StdEncoding.DecodeString(req.Signature)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256([]byte(req.RequestData))
		if err := rsa.VerifyPKCS1v15(&fuzzClient.PublicKey, crypto.SHA256, h[:], sig); err != nil {
			t.Fatalf("signature: %v", err)
		}
	})
}

// checkOpenAnswer opens an arbitrary answer and checks what open promises.
func checkOpenAnswer(t *testing.T, a *envelopeAuth, answer []byte) {
	t.Helper()
	var env struct {
		Code any `json:"code"`
	}
	isEnvelope := json.Unmarshal(answer, &env) == nil
	code, _ := env.Code.(string)
	_, err := a.open(answer)
	var refusal *envelopeRefusal
	switch {
	case err == nil:
		if !isEnvelope || strings.TrimSpace(code) != a.success {
			t.Fatalf("%q opened without the success code", answer)
		}
	case errors.As(err, &refusal):
		if refusal.code == "" || refusal.code == a.success || refusal.retryable != a.retryable[refusal.code] {
			t.Fatalf("%q: refusal %+v", answer, refusal)
		}
	case err.Error() == "" || strings.Contains(err.Error(), "\n"):
		t.Fatalf("%q: error not one line: %q", answer, err)
	}
}

// fuzzHashes are the OAEP and MGF1 hashes of a padding as Java's SunJCE
// uses them (MGF1 over SHA-1 for both OAEP paddings); 0 for PKCS#1 v1.5.
func fuzzHashes(padding string) (oaep, mgf crypto.Hash) {
	switch padding {
	case connectors.PaddingOAEPSHA1:
		return crypto.SHA1, crypto.SHA1
	case connectors.PaddingOAEPSHA256:
		return crypto.SHA256, crypto.SHA1
	}
	return 0, 0
}

// fuzzEncrypt encrypts plain in blocks as Infinia does: chunks of the most
// one block carries, each encrypted into a key-sized block.
func fuzzEncrypt(t *testing.T, pub *rsa.PublicKey, padding string, plain []byte) []byte {
	t.Helper()
	oaep, mgf := fuzzHashes(padding)
	chunk := pub.Size() - 11
	if oaep != 0 {
		chunk = pub.Size() - 2*oaep.Size() - 2
	}
	var out []byte
	for rest := plain; len(rest) > 0; {
		m := rest[:min(chunk, len(rest))]
		rest = rest[len(m):]
		var c []byte
		var err error
		if oaep == 0 {
			c, err = rsa.EncryptPKCS1v15(rand.Reader, pub, m)
		} else {
			c, err = rsa.EncryptOAEPWithOptions(rand.Reader, pub, m, &rsa.OAEPOptions{Hash: oaep, MGFHash: mgf})
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c...)
	}
	return out
}

// fuzzDecrypt decrypts key-sized blocks as Infinia does.
func fuzzDecrypt(t *testing.T, key *rsa.PrivateKey, padding string, enc []byte) []byte {
	t.Helper()
	oaep, mgf := fuzzHashes(padding)
	k := key.Size()
	if len(enc) == 0 || len(enc)%k != 0 {
		t.Fatalf("%d bytes are not whole %d-byte blocks", len(enc), k)
	}
	var out []byte
	for i := 0; i < len(enc); i += k {
		var m []byte
		var err error
		if oaep == 0 {
			m, err = rsa.DecryptPKCS1v15(nil, key, enc[i:i+k])
		} else {
			m, err = key.Decrypt(nil, enc[i:i+k], &rsa.OAEPOptions{Hash: oaep, MGFHash: mgf})
		}
		if err != nil {
			t.Fatalf("block %d: %v", i/k+1, err)
		}
		out = append(out, m...)
	}
	return out
}

// javaBase64Form writes b in one of the forms Java's encoders give:
// java.util.Base64's basic (0), without padding (1), URL-safe (2), MIME
// with CRLF every 76 characters (3).
func javaBase64Form(b []byte, form uint8) string {
	switch form % 4 {
	case 1:
		return base64.RawStdEncoding.EncodeToString(b)
	case 2:
		return base64.URLEncoding.EncodeToString(b)
	case 3:
		s := base64.StdEncoding.EncodeToString(b)
		var lines []string
		for len(s) > 76 {
			lines = append(lines, s[:76])
			s = s[76:]
		}
		return strings.Join(append(lines, s), "\r\n")
	}
	return base64.StdEncoding.EncodeToString(b)
}
