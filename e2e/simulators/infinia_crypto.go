package simulators

// Cryptography of Infinia's envelope as the simulator implements it (SPEC
// §4; the padding and signature are the connector's ASSUMPTIONS, modelled
// on Java's RSA utilities): RSA/ECB/PKCS1Padding in blocks (plaintext cut
// into chunks of k−11 bytes, each encrypted into one k-byte block, blocks
// concatenated; k = modulus bytes), SHA256withRSA (PKCS#1 v1.5) signatures
// over the requestData string's bytes, standard base64 with padding, keys
// as PEM or as the bare base64 DER Java prints (X.509 SubjectPublicKeyInfo
// for public keys, PKCS#8 for private keys).
//
// These helpers are for tests: the product has its own implementation
// (upstream/envelope.go) and tests may compare the two.

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// InfiniaEncrypt encrypts plain for pub with PKCS#1 v1.5 in blocks of
// k−11 bytes (Java's RSA/ECB/PKCS1Padding, chunked).
func InfiniaEncrypt(pub *rsa.PublicKey, plain []byte) ([]byte, error) {
	k := pub.Size()
	n := k - 11
	if n <= 0 {
		return nil, errors.New("infinia: key too small")
	}
	out := make([]byte, 0, (len(plain)+n-1)/n*k)
	for len(plain) > 0 {
		m := plain[:min(n, len(plain))]
		plain = plain[len(m):]
		block, err := rsa.EncryptPKCS1v15(rand.Reader, pub, m)
		if err != nil {
			return nil, err
		}
		out = append(out, block...)
	}
	return out, nil
}

// InfiniaDecrypt decrypts k-byte PKCS#1 v1.5 blocks with priv and
// concatenates the plaintexts.
func InfiniaDecrypt(priv *rsa.PrivateKey, data []byte) ([]byte, error) {
	k := priv.Size()
	if len(data) == 0 || len(data)%k != 0 {
		return nil, fmt.Errorf("infinia: %d bytes are not a whole number of %d-byte blocks", len(data), k)
	}
	out := make([]byte, 0, len(data))
	for i := 0; i < len(data); i += k {
		m, err := rsa.DecryptPKCS1v15(nil, priv, data[i:i+k])
		if err != nil {
			return nil, fmt.Errorf("infinia: block %d: %w", i/k+1, err)
		}
		out = append(out, m...)
	}
	return out, nil
}

// InfiniaSign signs msg with SHA256withRSA (PKCS#1 v1.5 over SHA-256).
func InfiniaSign(priv *rsa.PrivateKey, msg []byte) ([]byte, error) {
	d := sha256.Sum256(msg)
	return rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, d[:])
}

// InfiniaVerify checks a SHA256withRSA signature of msg.
func InfiniaVerify(pub *rsa.PublicKey, msg, sig []byte) error {
	d := sha256.Sum256(msg)
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig)
}

// InfiniaPublicKeyPEM encodes pub as a "PUBLIC KEY" PEM block (X.509
// SubjectPublicKeyInfo).
func InfiniaPublicKeyPEM(pub *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// InfiniaPublicKeyBase64 encodes pub as bare base64 of its X.509 DER, as
// Java's Base64.getEncoder().encodeToString(publicKey.getEncoded()) prints
// it.
func InfiniaPublicKeyBase64(pub *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// InfiniaPrivateKeyPEM encodes priv as a "PRIVATE KEY" PEM block (PKCS#8).
func InfiniaPrivateKeyPEM(priv *rsa.PrivateKey) string {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// InfiniaPrivateKeyBase64 encodes priv as bare base64 of its PKCS#8 DER, as
// Java prints privateKey.getEncoded().
func InfiniaPrivateKeyBase64(priv *rsa.PrivateKey) string {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// ParseInfiniaPublicKey reads an RSA public key given as PEM ("PUBLIC KEY"
// or "RSA PUBLIC KEY") or as bare base64 DER (X.509, else PKCS#1).
func ParseInfiniaPublicKey(text string) (*rsa.PublicKey, error) {
	der, err := infiniaKeyDER(text)
	if err != nil {
		return nil, err
	}
	if k, err := x509.ParsePKIXPublicKey(der); err == nil {
		if rk, ok := k.(*rsa.PublicKey); ok {
			return rk, nil
		}
		return nil, errors.New("infinia: not an RSA public key")
	}
	return x509.ParsePKCS1PublicKey(der)
}

// ParseInfiniaPrivateKey reads an RSA private key given as PEM or as bare
// base64 DER (PKCS#8, else PKCS#1).
func ParseInfiniaPrivateKey(text string) (*rsa.PrivateKey, error) {
	der, err := infiniaKeyDER(text)
	if err != nil {
		return nil, err
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if rk, ok := k.(*rsa.PrivateKey); ok {
			return rk, nil
		}
		return nil, errors.New("infinia: not an RSA private key")
	}
	return x509.ParsePKCS1PrivateKey(der)
}

func infiniaKeyDER(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if b, _ := pem.Decode([]byte(text)); b != nil {
		return b.Bytes, nil
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(text), ""))
	if err != nil {
		return nil, fmt.Errorf("infinia: key is neither PEM nor base64 DER: %w", err)
	}
	return der, nil
}

// InfiniaRequestEnvelope is the body of a request to Infinia.
type InfiniaRequestEnvelope struct {
	Version     string `json:"version"`
	AppID       string `json:"appId"`
	DataType    string `json:"dataType"`
	RequestData string `json:"requestData"`
	Signature   string `json:"signature"`
}

// InfiniaResponseEnvelope is the body of Infinia's answer.
type InfiniaResponseEnvelope struct {
	AppID        string `json:"appId"`
	Code         string `json:"code"`
	Message      string `json:"message,omitempty"`
	ResponseData string `json:"responseData,omitempty"`
}

// SealInfiniaRequest builds a request body the way SPEC §4 describes a
// client's: plain (JSON) encrypted for the provider's key, base64, signed
// with the client's key.
func SealInfiniaRequest(version, appID string, provider *rsa.PublicKey, client *rsa.PrivateKey, plain []byte) ([]byte, error) {
	enc, err := InfiniaEncrypt(provider, plain)
	if err != nil {
		return nil, err
	}
	data := base64.StdEncoding.EncodeToString(enc)
	sig, err := InfiniaSign(client, []byte(data))
	if err != nil {
		return nil, err
	}
	return json.Marshal(InfiniaRequestEnvelope{
		Version: version, AppID: appID, DataType: "JSON",
		RequestData: data, Signature: base64.StdEncoding.EncodeToString(sig),
	})
}

// OpenInfiniaResponse reads an answer: its envelope, and for a success
// with data the decrypted responseData (nil otherwise).
func OpenInfiniaResponse(client *rsa.PrivateKey, body []byte) (InfiniaResponseEnvelope, []byte, error) {
	var env InfiniaResponseEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return env, nil, fmt.Errorf("infinia: answer is not an envelope: %w", err)
	}
	if env.ResponseData == "" {
		return env, nil, nil
	}
	raw, err := base64.StdEncoding.DecodeString(env.ResponseData)
	if err != nil {
		return env, nil, fmt.Errorf("infinia: responseData is not base64: %w", err)
	}
	plain, err := InfiniaDecrypt(client, raw)
	return env, plain, err
}
