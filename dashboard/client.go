package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/pollhook/pollhook/api"
)

// apiClient calls the REST API in-process with one caller's Authorization.
type apiClient struct {
	api  http.Handler
	auth string
}

// apiError is an answer of the API other than 2xx.
type apiError struct {
	Status  int
	Message string
	Errors  []api.FieldError // the problems of a 400, by field
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Message) }

// call sends method and path (with its query) to the API and decodes a 2xx
// JSON answer into out (when not nil); it returns the answer's header.
// Other answers are an *apiError with the API's message.
func (c apiClient) call(ctx context.Context, method, path string, out any) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, method, path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", c.auth)
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	c.api.ServeHTTP(rec, req)
	if err := ctx.Err(); err != nil {
		return rec.header, err // the API may have written nothing
	}
	if rec.status < 200 || rec.status > 299 {
		var body struct {
			Message string
			Errors  []api.FieldError
		}
		_ = json.Unmarshal(rec.body.Bytes(), &body)
		if body.Message == "" {
			body.Message = strings.TrimSpace(rec.body.String())
		}
		return rec.header, &apiError{Status: rec.status, Message: body.Message, Errors: body.Errors}
	}
	if out != nil {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return rec.header, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return rec.header, nil
}

// recorder is the http.ResponseWriter of an in-process API call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	wrote  bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}
