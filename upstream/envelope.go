package upstream

// Infinia's envelope (SPEC §4, auth type "envelope").
//
// Infinia's public documentation (seed 002) is a glossary: it names appId,
// requestData, responseData, encryption and decryption, but not the
// cryptography. Everything below that it does not say is an ASSUMPTION,
// modelled on the RSA utilities Java integrations use, and configurable:
//
//   - encryption is RSA/ECB/PKCS1Padding in blocks (plaintext cut into
//     chunks of k−11 bytes, each encrypted into a k-byte block, the blocks
//     concatenated, k the modulus size in bytes; decryption reads k-byte
//     blocks); alternatives OAEPWithSHA-1AndMGF1 and OAEPWithSHA-256AndMGF1,
//     with Java's semantics (MGF1 over SHA-1 in both) and the matching
//     smaller chunks;
//   - the signature is SHA256withRSA (PKCS#1 v1.5 over SHA-256) of the
//     requestData string's bytes (its base64 text, not the ciphertext);
//     alternatives SHA1withRSA, SHA512withRSA and SHA256withRSA/PSS (salt
//     length = hash length);
//   - base64 is the standard alphabet with padding (java.util.Base64); on
//     input whitespace, missing padding and the URL alphabet are tolerated;
//   - the envelope "version" is "1.0" unless the connector or
//     configuration infinia.version says otherwise.
//
// The success code SUC-200 and the system errors SYS-001..SYS-008 are from
// Infinia's published error list; SYS-003 and SYS-008 (the connector's
// retryableCodes) are retried as an HTTP 503 is, then reported as a
// temporary 503 *StatusError; any other code is an *EnvelopeError.
//
// Keys and plaintexts are never logged, and never put in errors.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strings"

	"github.com/pollhook/pollhook/connectors"
)

// Envelope defaults applied when the connector's auth.envelope leaves a
// field empty (the registry normally fills them already).
const (
	envelopeVersion     = "1.0"     // ASSUMPTION: Infinia's docs do not give it
	envelopeDataType    = "JSON"    // the only dataType pollhook sends
	envelopeSuccessCode = "SUC-200" // Infinia's published success code
)

// envelopeRetryableCodes are used when the connector lists none: Infinia's
// system errors that mean "try later" (SPEC §4).
var envelopeRetryableCodes = []string{"SYS-003", "SYS-008"}

// EnvelopeError is an envelope answer (HTTP 2xx) whose code is neither the
// success code nor a retryable one: the upstream refused the request, and
// sending it again will not help. Code and Message are the envelope's
// (Message with credentials redacted and shortened); URL has credentials
// redacted. Retryable codes are retried, then a temporary *StatusError.
type EnvelopeError struct {
	Method  string
	URL     string
	Code    string
	Message string
}

func (e *EnvelopeError) Error() string {
	msg := fmt.Sprintf("upstream %s %s: the upstream answered code %s", e.Method, e.URL, e.Code)
	if e.Message != "" {
		msg += fmt.Sprintf(": %q", e.Message)
	}
	return msg
}

// Temporary reports false: a refusal is not cured by waiting.
func (e *EnvelopeError) Temporary() bool { return false }

// envelopeCodec is implemented by authenticators that rewrite bodies (the
// envelope scheme). Client.Do uses it only for requests to the base URL's
// host, around the whole round trip (retries included).
type envelopeCodec interface {
	// seal returns the body sent instead of plain (the caller's request
	// body, empty when it has none) and its Content-Type.
	seal(plain []byte) (body []byte, contentType string, err error)
	// open returns the body the caller sees instead of data, the body of a
	// 2xx answer. A refusal in the envelope is an *envelopeRefusal.
	open(data []byte) ([]byte, error)
}

// envelopeRefusal is the code and message of an envelope answer that is
// not a success; Client.envelopeFailure retries it or turns it into an
// *EnvelopeError or a temporary *StatusError.
type envelopeRefusal struct {
	code, message string
	retryable     bool
}

func (r *envelopeRefusal) Error() string {
	return fmt.Sprintf("the upstream answered code %s: %q", r.code, r.message)
}

// envelopeAuth is the envelope scheme: it sends no credential headers; it
// seals request bodies and opens response bodies. Immutable once built,
// hence safe for concurrent use.
type envelopeAuth struct {
	appID     string
	version   string
	dataType  string
	provider  *rsa.PublicKey  // infinia.public.key: encrypts requestData
	client    *rsa.PrivateKey // infinia.private.key: signs, decrypts responseData
	padding   string
	sigAlg    string
	success   string
	retryable map[string]bool
	values    []string // secrets to redact
}

// newEnvelopeAuth builds the envelope scheme from the resolved
// auth.envelope (nil: all defaults) and the configuration. The keys are
// parsed here, once per Client; a bad key is an error naming its
// configuration key (and not showing the key).
func newEnvelopeAuth(env *connectors.Envelope, vals map[string]any) (*envelopeAuth, error) {
	var e connectors.Envelope
	if env != nil {
		e = *env
	}
	a := &envelopeAuth{
		appID:     connectors.ConfigString(vals, connectors.ConfigInfiniaAppID),
		version:   orDefault(e.Version, envelopeVersion),
		dataType:  orDefault(e.DataType, envelopeDataType),
		padding:   orDefault(e.Padding, connectors.PaddingPKCS1v15),
		sigAlg:    orDefault(e.SignatureAlgorithm, connectors.SigSHA256withRSA),
		success:   orDefault(e.SuccessCode, envelopeSuccessCode),
		retryable: map[string]bool{},
	}
	if a.appID == "" {
		return nil, &ConfigError{Key: connectors.ConfigInfiniaAppID, Err: errors.New("is required by the envelope scheme")}
	}
	if _, _, err := a.cipherHashes(); err != nil {
		return nil, err
	}
	if _, err := a.signatureHash(); err != nil {
		return nil, err
	}
	codes := e.RetryableCodes
	if codes == nil {
		codes = envelopeRetryableCodes
	}
	for _, c := range codes {
		a.retryable[strings.TrimSpace(c)] = true
	}
	pubText := connectors.ConfigString(vals, connectors.ConfigInfiniaPublicKey)
	privText := connectors.ConfigString(vals, connectors.ConfigInfiniaPrivateKey)
	a.values = append(a.values, privText, compactKey(privText))
	var err error
	if a.provider, err = parseRSAPublicKey(pubText); err != nil {
		return nil, &ConfigError{Key: connectors.ConfigInfiniaPublicKey, Err: err}
	}
	if a.client, err = parseRSAPrivateKey(privText); err != nil {
		return nil, &ConfigError{Key: connectors.ConfigInfiniaPrivateKey, Err: err}
	}
	if n := a.chunk(a.provider.Size()); n <= 0 {
		return nil, &ConfigError{Key: connectors.ConfigInfiniaPublicKey,
			Err: fmt.Errorf("a %d-bit key is too small for padding %s", a.provider.N.BitLen(), a.padding)}
	}
	return a, nil
}

func orDefault(v, def string) string {
	if v = strings.TrimSpace(v); v != "" {
		return v
	}
	return def
}

func (a *envelopeAuth) apply(context.Context, *http.Request) (string, error) { return "", nil }

func (a *envelopeAuth) unauthorized(context.Context, string) (bool, error) { return false, nil }

func (a *envelopeAuth) credentialNames() (headers, query []string) { return nil, nil }

func (a *envelopeAuth) secrets() []string { return a.values }

// envelopeRequest is the body sent to Infinia.
type envelopeRequest struct {
	Version     string `json:"version"`
	AppID       string `json:"appId"`
	DataType    string `json:"dataType"`
	RequestData string `json:"requestData"`
	Signature   string `json:"signature"`
}

// envelopeResponse is Infinia's answer. code is read whether a string or
// a number.
type envelopeResponse struct {
	AppID        string          `json:"appId"`
	Code         json.RawMessage `json:"code"`
	Message      json.RawMessage `json:"message"`
	ResponseData json.RawMessage `json:"responseData"`
}

func (a *envelopeAuth) seal(plain []byte) ([]byte, string, error) {
	if len(bytes.TrimSpace(plain)) == 0 {
		plain = []byte("{}")
	}
	if !json.Valid(plain) {
		return nil, "", errors.New("envelope: the request body is not JSON")
	}
	enc, err := a.encrypt(plain)
	if err != nil {
		return nil, "", fmt.Errorf("envelope: encrypt requestData: %w", err)
	}
	data := base64.StdEncoding.EncodeToString(enc)
	sig, err := a.sign([]byte(data))
	if err != nil {
		return nil, "", fmt.Errorf("envelope: sign requestData: %w", err)
	}
	body, err := json.Marshal(envelopeRequest{
		Version: a.version, AppID: a.appID, DataType: a.dataType,
		RequestData: data, Signature: base64.StdEncoding.EncodeToString(sig),
	})
	if err != nil {
		return nil, "", err
	}
	return body, "application/json", nil
}

func (a *envelopeAuth) open(data []byte) ([]byte, error) {
	var r envelopeResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("the answer is not an envelope (%v): %s", err, excerpt(string(data), a.values))
	}
	code, message := jsonText(r.Code), jsonText(r.Message)
	if code == "" {
		return nil, fmt.Errorf("the answer is an envelope without a code: %s", excerpt(string(data), a.values))
	}
	if code != a.success {
		return nil, &envelopeRefusal{code: code, message: message, retryable: a.retryable[code]}
	}
	var enc string
	if len(r.ResponseData) > 0 && !bytes.Equal(r.ResponseData, []byte("null")) {
		if err := json.Unmarshal(r.ResponseData, &enc); err != nil {
			return nil, errors.New("envelope: responseData is not a string")
		}
	}
	if strings.TrimSpace(enc) == "" {
		return []byte{}, nil // success without data
	}
	raw, err := decodeBase64(enc)
	if err != nil {
		return nil, fmt.Errorf("envelope: responseData is not base64: %w", err)
	}
	plain, err := a.decrypt(raw)
	if err != nil {
		return nil, fmt.Errorf("envelope: decrypt responseData (is %s the key Infinia encrypts for?): %w",
			connectors.ConfigInfiniaPrivateKey, err)
	}
	return plain, nil
}

// jsonText renders a JSON string or other scalar as text ("" for none).
func jsonText(raw json.RawMessage) string {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	return strings.TrimSpace(string(raw))
}

// cipherHashes returns the OAEP hash and MGF1 hash of the padding (zero for
// PKCS#1 v1.5). Java's OAEPWith<H>AndMGF1Padding uses MGF1 over SHA-1
// whatever H is (SunJCE's default), so MGF1 is SHA-1 in both.
func (a *envelopeAuth) cipherHashes() (oaep, mgf crypto.Hash, err error) {
	switch a.padding {
	case connectors.PaddingPKCS1v15:
		return 0, 0, nil
	case connectors.PaddingOAEPSHA1:
		return crypto.SHA1, crypto.SHA1, nil
	case connectors.PaddingOAEPSHA256:
		return crypto.SHA256, crypto.SHA1, nil
	}
	return 0, 0, &ConfigError{Key: connectors.ConfigInfiniaPadding, Err: fmt.Errorf("unknown padding %q", a.padding)}
}

// chunk is the most plaintext one block of a k-byte key carries.
func (a *envelopeAuth) chunk(k int) int {
	oaep, _, _ := a.cipherHashes()
	if oaep == 0 {
		return k - 11
	}
	return k - 2*oaep.Size() - 2
}

// encrypt encrypts plain for the provider in blocks: chunks of chunk(k)
// bytes, each a k-byte block, concatenated.
func (a *envelopeAuth) encrypt(plain []byte) ([]byte, error) {
	return encryptBlocks(a.provider, a.padding, plain)
}

// decrypt decrypts k-byte blocks with the client's key and concatenates
// the plaintexts.
func (a *envelopeAuth) decrypt(enc []byte) ([]byte, error) {
	return decryptBlocks(a.client, a.padding, enc)
}

func encryptBlocks(pub *rsa.PublicKey, padding string, plain []byte) ([]byte, error) {
	a := envelopeAuth{padding: padding}
	oaep, mgf, err := a.cipherHashes()
	if err != nil {
		return nil, err
	}
	k := pub.Size()
	n := a.chunk(k)
	if n <= 0 {
		return nil, errors.New("key too small for the padding")
	}
	out := make([]byte, 0, (len(plain)+n-1)/n*k)
	for len(plain) > 0 {
		m := plain[:min(n, len(plain))]
		plain = plain[len(m):]
		var block []byte
		if oaep == 0 {
			block, err = rsa.EncryptPKCS1v15(rand.Reader, pub, m)
		} else {
			block, err = rsa.EncryptOAEPWithOptions(rand.Reader, pub, m, &rsa.OAEPOptions{Hash: oaep, MGFHash: mgf})
		}
		if err != nil {
			return nil, err
		}
		out = append(out, block...)
	}
	return out, nil
}

func decryptBlocks(priv *rsa.PrivateKey, padding string, enc []byte) ([]byte, error) {
	a := envelopeAuth{padding: padding}
	oaep, mgf, err := a.cipherHashes()
	if err != nil {
		return nil, err
	}
	k := priv.Size()
	if len(enc)%k != 0 {
		return nil, fmt.Errorf("%d bytes are not a whole number of %d-byte blocks", len(enc), k)
	}
	out := make([]byte, 0, len(enc))
	for i := 0; i < len(enc); i += k {
		var m []byte
		if oaep == 0 {
			m, err = rsa.DecryptPKCS1v15(nil, priv, enc[i:i+k])
		} else {
			m, err = priv.Decrypt(nil, enc[i:i+k], &rsa.OAEPOptions{Hash: oaep, MGFHash: mgf})
		}
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", i/k+1, err)
		}
		out = append(out, m...)
	}
	return out, nil
}

// signatureHash returns the hash of the signature algorithm.
func (a *envelopeAuth) signatureHash() (crypto.Hash, error) {
	return sigHash(a.sigAlg)
}

func sigHash(alg string) (crypto.Hash, error) {
	switch alg {
	case connectors.SigSHA256withRSA, connectors.SigSHA256withPSS:
		return crypto.SHA256, nil
	case connectors.SigSHA1withRSA:
		return crypto.SHA1, nil
	case connectors.SigSHA512withRSA:
		return crypto.SHA512, nil
	}
	return 0, &ConfigError{Key: connectors.ConfigInfiniaSignatureAlgorithm, Err: fmt.Errorf("unknown signature algorithm %q", alg)}
}

func digest(h crypto.Hash, msg []byte) []byte {
	var d hash.Hash
	switch h {
	case crypto.SHA1:
		d = sha1.New()
	case crypto.SHA512:
		d = sha512.New()
	default:
		d = sha256.New()
	}
	d.Write(msg)
	return d.Sum(nil)
}

// pssOptions are those of BouncyCastle's SHA256withRSA/PSS: MGF1 over the
// same hash, salt as long as the hash.
var pssOptions = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}

func (a *envelopeAuth) sign(msg []byte) ([]byte, error) {
	return signWith(a.client, a.sigAlg, msg)
}

func signWith(priv *rsa.PrivateKey, alg string, msg []byte) ([]byte, error) {
	h, err := sigHash(alg)
	if err != nil {
		return nil, err
	}
	if alg == connectors.SigSHA256withPSS {
		return rsa.SignPSS(rand.Reader, priv, h, digest(h, msg), pssOptions)
	}
	return rsa.SignPKCS1v15(nil, priv, h, digest(h, msg))
}

func verifyWith(pub *rsa.PublicKey, alg string, msg, sig []byte) error {
	h, err := sigHash(alg)
	if err != nil {
		return err
	}
	if alg == connectors.SigSHA256withPSS {
		return rsa.VerifyPSS(pub, h, digest(h, msg), sig, pssOptions)
	}
	return rsa.VerifyPKCS1v15(pub, h, digest(h, msg), sig)
}

// compactKey is a key's text without PEM armour and whitespace (the bare
// base64 of its DER, as typed), as a secret to redact.
func compactKey(s string) string {
	s = strings.ReplaceAll(s, `\n`, "\n")
	for _, marker := range []string{"-----BEGIN ", "-----END "} {
		for {
			i := strings.Index(s, marker)
			if i < 0 {
				break
			}
			j := strings.Index(s[i+len(marker):], "-----")
			if j < 0 {
				s = s[:i]
				break
			}
			s = s[:i] + " " + s[i+len(marker)+j+len("-----"):]
		}
	}
	return strings.Join(strings.Fields(s), "")
}

// keyDER returns the DER of a key given as PEM (also flattened onto one
// line) or as bare base64 DER (whitespace, and escaped "\n" from a
// JSON-in-JSON paste, tolerated), and the PEM block type ("" for bare DER).
func keyDER(s string) ([]byte, string, error) {
	s = strings.TrimSpace(strings.ReplaceAll(s, `\n`, "\n"))
	if s == "" {
		return nil, "", errors.New("empty")
	}
	if i := strings.Index(s, "-----BEGIN "); i >= 0 {
		if block, _ := pem.Decode([]byte(s[i:])); block != nil {
			return block.Bytes, block.Type, nil
		}
		// PEM flattened onto one line (pasted into JSON or an env var):
		// "-----BEGIN T----- base64 -----END T-----".
		rest := s[i+len("-----BEGIN "):]
		typ, body, ok := strings.Cut(rest, "-----")
		end := strings.Index(body, "-----END ")
		if !ok || end < 0 {
			return nil, "", errors.New("not a valid PEM block")
		}
		der, err := decodeBase64(body[:end])
		if err != nil || len(der) == 0 {
			return nil, "", errors.New("not a valid PEM block")
		}
		return der, strings.TrimSpace(typ), nil
	}
	der, err := decodeBase64(s)
	if err != nil {
		return nil, "", errors.New("neither PEM nor base64 DER")
	}
	return der, "", nil
}

// decodeBase64 decodes standard or URL-safe base64, padded or not, with
// whitespace anywhere.
func decodeBase64(s string) ([]byte, error) {
	s = strings.Join(strings.Fields(s), "")
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// parseRSAPublicKey reads an X.509 SubjectPublicKeyInfo (PEM "PUBLIC KEY"
// or bare DER), a PKCS#1 "RSA PUBLIC KEY", or the key of a certificate.
func parseRSAPublicKey(s string) (*rsa.PublicKey, error) {
	der, typ, err := keyDER(s)
	if err != nil {
		return nil, fmt.Errorf("not an RSA public key: %w", err)
	}
	var key any
	switch typ {
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(der); err == nil {
			key = cert.PublicKey
		}
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(der)
	default:
		if key, err = x509.ParsePKIXPublicKey(der); err != nil {
			if k, err1 := x509.ParsePKCS1PublicKey(der); err1 == nil {
				key, err = k, nil
			}
		}
	}
	if err != nil {
		return nil, errors.New("not an RSA public key (want PEM or base64 X.509 SubjectPublicKeyInfo DER)")
	}
	pub, ok := key.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an RSA public key", key)
	}
	return pub, nil
}

// parseRSAPrivateKey reads a PKCS#8 private key (PEM "PRIVATE KEY" or bare
// DER) or a PKCS#1 "RSA PRIVATE KEY".
func parseRSAPrivateKey(s string) (*rsa.PrivateKey, error) {
	der, typ, err := keyDER(s)
	if err != nil {
		return nil, fmt.Errorf("not an RSA private key: %w", err)
	}
	var key any
	if typ == "RSA PRIVATE KEY" {
		key, err = x509.ParsePKCS1PrivateKey(der)
	} else if key, err = x509.ParsePKCS8PrivateKey(der); err != nil {
		if k, err1 := x509.ParsePKCS1PrivateKey(der); err1 == nil {
			key, err = k, nil
		}
	}
	if err != nil {
		return nil, errors.New("not an RSA private key (want PEM or base64 PKCS#8 DER)")
	}
	priv, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an RSA private key", key)
	}
	return priv, nil
}

// envelopeFailure handles an error of envelopeCodec.open for Do. A
// retryable code is treated as a 503 is: while Options.MaxRetries allows
// and the wait fits ctx, it waits (Retry-After when the answer has one,
// else the doubling backoff) and returns retry; once retries are spent it
// is a temporary *StatusError with Code 503 whose excerpt quotes the
// envelope's code and message. Any other refusal is an *EnvelopeError
// (not temporary), anything else an error naming the request.
func (c *Client) envelopeFailure(ctx context.Context, req *http.Request, resp *http.Response, err error, retries *int) (retry bool, _ error) {
	var r *envelopeRefusal
	if !errors.As(err, &r) {
		return false, c.errorf(req, "%w", err)
	}
	msg := excerpt(r.message, c.allSecrets())
	if !r.retryable {
		return false, &EnvelopeError{Method: req.Method, URL: c.redactURL(req.URL), Code: r.code, Message: msg}
	}
	wait, asked := c.retryDelay(resp.Header, *retries)
	if *retries < c.opts.MaxRetries && fits(ctx, wait) {
		*retries++
		c.opts.Logger.Debug("upstream envelope code asks to try later; retrying", "instance_id", c.id,
			"code", r.code, "wait", wait, "retry", *retries, "url", c.redactURL(req.URL))
		if err := c.opts.sleep(ctx, wait); err != nil {
			return false, c.errorf(req, "wait %s after envelope code %s: %w", wait, r.code, err)
		}
		return true, nil
	}
	se := &StatusError{
		Method:  req.Method,
		URL:     c.redactURL(req.URL),
		Code:    http.StatusServiceUnavailable,
		Excerpt: fmt.Sprintf("envelope code %s (answered with HTTP %d; temporary): %q", r.code, resp.StatusCode, msg),
	}
	if asked {
		se.RetryAfter = wait
	}
	return false, se
}
