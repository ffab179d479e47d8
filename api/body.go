package api

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/pollhook/pollhook/internal/jsondepth"
)

// MaxBody is the largest request body accepted (larger: 413).
const MaxBody = 1 << 20

// MaxDepth is how many levels of arrays and objects a request body may nest
// (deeper: 400). Deeper bodies can be valid JSON, but what is stored comes
// back in GET answers, and common client parsers give up far sooner (Python's
// json at about 1000 levels), so one such instance would make the whole
// organization's list unreadable to them.
const MaxDepth = 100

// ReadJSONBody returns the request body, refusing one over MaxBody (413), one
// whose Content-Type is not JSON (415) and one nesting arrays and objects
// deeper than MaxDepth (400). Whether the bytes are valid JSON is for the
// caller's parser to say, with the field it concerns.
func ReadJSONBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mediaType, _, err := mime.ParseMediaType(ct)
		if err != nil || !(mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")) {
			return nil, Errorf(http.StatusUnsupportedMediaType, "the request body must be JSON (Content-Type: application/json), not "+quote(ct))
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, Errorf(http.StatusRequestEntityTooLarge, "the request body is over the limit of 1 MiB")
	}
	if err != nil {
		return nil, Errorf(http.StatusBadRequest, "reading the request body: "+err.Error())
	}
	if jsondepth.Exceeds(body, MaxDepth) {
		return nil, Errorf(http.StatusBadRequest, fmt.Sprintf("the request body nests arrays and objects more than %d levels deep", MaxDepth))
	}
	return body, nil
}

func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return `"` + s + `"`
}
