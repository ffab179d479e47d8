package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
)

// FieldError is one problem of a request, named by its field path
// (e.g. "configuration.event.poller.configuration.contacts.idField").
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is an HTTP error in Open Connectors' shape. Handlers return it (or
// any error, which becomes a 500 without its text) and Handle writes it.
type Error struct {
	Status  int
	Message string
	Errors  []FieldError
}

func (e *Error) Error() string { return e.Message }

// Errorf builds an *Error with a status and a message.
func Errorf(status int, message string) *Error {
	return &Error{Status: status, Message: message}
}

// Invalid is a 400 listing every problem.
func Invalid(message string, problems []FieldError) *Error {
	return &Error{Status: http.StatusBadRequest, Message: message, Errors: problems}
}

// errorBody is the JSON of every error response.
type errorBody struct {
	RequestID string       `json:"requestId"`
	Message   string       `json:"message"`
	Errors    []FieldError `json:"errors,omitempty"`
}

// WriteError writes err as an error body. Errors that are not *Error are
// logged and answered as a 500 without their text, which may hold internals.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var apiErr *Error
	if !errors.As(err, &apiErr) {
		slog.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path,
			"request_id", RequestID(r.Context()), "error", err)
		apiErr = Errorf(http.StatusInternalServerError, "internal error; see the server log for request "+RequestID(r.Context()))
	}
	WriteJSON(w, apiErr.Status, errorBody{RequestID: RequestID(r.Context()), Message: apiErr.Message, Errors: apiErr.Errors})
}

// WriteJSON writes v as a JSON response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client may have gone; nothing to do about it
}
