package dispatch

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of a delivery (SPEC §5).
const (
	HeaderElementsID        = "Elements-Webhook-Id"
	HeaderElementsSignature = "Elements-Webhook-Signature"
	HeaderWebhookID         = "webhook-id"
	HeaderWebhookTimestamp  = "webhook-timestamp"
	HeaderWebhookSignature  = "webhook-signature"
)

// SetHeaders sets every header of one attempt of a delivery on h: the
// content type, User-Agent pollhook/<version>, Elements-Webhook-Id and, when
// key is not empty, both signatures for the attempt's time at (Unix
// seconds). It is a pure function of its arguments.
//
// Elements-Webhook-Signature is "sha256=" + base64(HMAC-SHA256(key as UTF-8,
// body)) as Open Connectors sends it. The Standard Webhooks headers sign
// eventId + "." + timestamp + "." + body with the key's bytes: a key written
// "whsec_<base64>" is base64-decoded first, any other key is its UTF-8
// bytes.
func SetHeaders(h http.Header, version, eventID, key string, at time.Time, body []byte) {
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "pollhook/"+version)
	h.Set(HeaderElementsID, eventID)
	if key == "" {
		return
	}
	h.Set(HeaderElementsSignature, ElementsSignature(key, body))
	ts := strconv.FormatInt(at.Unix(), 10)
	// Set with the exact lower-case names Standard Webhooks uses.
	h[HeaderWebhookID] = []string{eventID}
	h[HeaderWebhookTimestamp] = []string{ts}
	h[HeaderWebhookSignature] = []string{StandardSignature(key, eventID, ts, body)}
}

// ElementsSignature is the Elements-Webhook-Signature value for body.
func ElementsSignature(key string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(body)
	return "sha256=" + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// StandardSignature is the webhook-signature value ("v1,<base64>") of
// Standard Webhooks for this id, timestamp (Unix seconds, decimal) and body.
func StandardSignature(key, id, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, standardKey(key))
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// standardKey is the HMAC key of Standard Webhooks: whsec_<base64> decoded,
// else the UTF-8 bytes. A whsec_ key whose rest is not base64 is used as
// written, so that it still signs (and the receiver's check says why not).
func standardKey(key string) []byte {
	if rest, ok := strings.CutPrefix(key, "whsec_"); ok {
		if b, err := base64.StdEncoding.DecodeString(rest); err == nil {
			return b
		}
		if b, err := base64.RawStdEncoding.DecodeString(rest); err == nil {
			return b
		}
	}
	return []byte(key)
}
