package dispatch

import (
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/pollhook/pollhook/api"
)

// Authorizer authorizes a request for the instance named by its {id} path
// value: nil when the caller may use that instance, else the error to
// answer (api.Unauthorized, a 404 *api.Error...). instances.Handlers'
// Authorize fits, adapted:
//
//	dispatch.AuthorizerFunc(func(r *http.Request) error { _, _, err := h.Authorize(r); return err })
type Authorizer interface {
	Authorize(r *http.Request) error
}

// AuthorizerFunc adapts a function to Authorizer.
type AuthorizerFunc func(r *http.Request) error

// Authorize calls f.
func (f AuthorizerFunc) Authorize(r *http.Request) error { return f(r) }

// Handlers serve the events and deliveries routes of SPEC §2.
type Handlers struct {
	store *Store
	auth  Authorizer
}

// NewHandlers returns the handlers over store, authorizing with auth.
func NewHandlers(store *Store, auth Authorizer) *Handlers {
	return &Handlers{store: store, auth: auth}
}

// Register adds the routes to rt:
//
//	GET  /instances/{id}/events                         ?status= ?limit=
//	GET  /instances/{id}/events/{eventId}
//	GET  /instances/events/{eventId}
//	GET  /instances/{id}/deliveries                     ?status= (default failed) ?limit=
//	GET  /instances/{id}/activity
//	POST /instances/{id}/deliveries/redeliver
//	POST /instances/{id}/deliveries/{eventId}/redeliver
//
// /instances/{id}/events and /instances/events/{eventId} overlap for
// net/http's mux (/instances/events/events), so both are served by one
// pattern, /instances/{id}/{rest}: "events" in place of the id is never an
// id (SPEC §2). Other GETs of that shape answer 404.
func (h *Handlers) Register(rt *api.Router) {
	rt.Handle(http.MethodGet, "/instances/{id}/{rest}", h.eventsOrEvent)
	rt.Handle(http.MethodGet, "/instances/{id}/events/{eventId}", h.instanceEvent)
	rt.Handle(http.MethodGet, "/instances/{id}/deliveries", h.deliveries)
	rt.Handle(http.MethodPost, "/instances/{id}/deliveries/redeliver", h.redeliverAll)
	rt.Handle(http.MethodPost, "/instances/{id}/deliveries/{eventId}/redeliver", h.redeliverOne)
}

// authorize checks the caller for {id} and returns the id.
func (h *Handlers) authorize(r *http.Request) (int64, error) {
	if err := h.auth.Authorize(r); err != nil {
		return 0, err
	}
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 || raw[0] == '+' {
		return 0, api.Errorf(http.StatusNotFound, "no instance "+strconv.Quote(raw)+": instance ids are positive decimal integers")
	}
	return id, nil
}

func (h *Handlers) eventsOrEvent(w http.ResponseWriter, r *http.Request) error {
	switch {
	case r.PathValue("id") == "events":
		return h.anyEvent(w, r, r.PathValue("rest"))
	case r.PathValue("rest") == "events":
		return h.list(w, r, "")
	case r.PathValue("rest") == "activity":
		return h.activity(w, r)
	}
	return api.Errorf(http.StatusNotFound, "no such route: "+r.URL.Path)
}

// activity answers the instance's Activity.
func (h *Handlers) activity(w http.ResponseWriter, r *http.Request) error {
	id, err := h.authorize(r)
	if err != nil {
		return err
	}
	a, err := h.store.Activity(r.Context(), id)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, a)
	return nil
}

func (h *Handlers) deliveries(w http.ResponseWriter, r *http.Request) error {
	return h.list(w, r, StatusFailed)
}

var statuses = []string{StatusQueued, StatusInFlight, StatusRetrying, StatusHeld, StatusDelivered, StatusFailed}

func (h *Handlers) list(w http.ResponseWriter, r *http.Request, defaultStatus string) error {
	id, err := h.authorize(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var problems []api.FieldError
	status := defaultStatus
	if q.Has("status") {
		status = q.Get("status")
		if !slices.Contains(statuses, status) {
			problems = append(problems, api.FieldError{Field: "status", Message: "must be one of queued, in_flight, retrying, held, delivered, failed; got " + strconv.Quote(status)})
		}
	}
	limit := DefaultListLimit
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > MaxListLimit {
			problems = append(problems, api.FieldError{Field: "limit", Message: "must be an integer from 1 to 500, got " + strconv.Quote(q.Get("limit"))})
		}
		limit = n
	}
	if len(problems) > 0 {
		return api.Invalid("bad query", problems)
	}
	views, err := h.store.List(r.Context(), id, status, limit)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, views)
	return nil
}

func (h *Handlers) instanceEvent(w http.ResponseWriter, r *http.Request) error {
	id, err := h.authorize(r)
	if err != nil {
		return err
	}
	eventID := r.PathValue("eventId")
	v, err := h.store.Get(r.Context(), eventID)
	if errors.Is(err, ErrNotFound) || (err == nil && v.InstanceID != id) {
		return notFound(eventID)
	}
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, v)
	return nil
}

// anyEvent serves GET /instances/events/{eventId}: it finds the
// notification, then authorizes the caller for its instance. For an unknown
// id it still authorizes (with {id} "0", no instance) so that a caller
// without credentials gets 401, not 404.
func (h *Handlers) anyEvent(w http.ResponseWriter, r *http.Request, eventID string) error {
	v, err := h.store.Get(r.Context(), eventID)
	if errors.Is(err, ErrNotFound) {
		r.SetPathValue("id", "0")
		if err := h.auth.Authorize(r); err != nil {
			var apiErr *api.Error
			if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
				return notFound(eventID)
			}
			return err
		}
		return notFound(eventID)
	}
	if err != nil {
		return err
	}
	r.SetPathValue("id", strconv.FormatInt(v.InstanceID, 10))
	if _, err := h.authorize(r); err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, v)
	return nil
}

func notFound(eventID string) error {
	return api.Errorf(http.StatusNotFound, "no notification "+strconv.Quote(eventID)+" (neither an eventId nor the id of a change in one)")
}

// Redelivered is the answer of POST /instances/{id}/deliveries/redeliver.
type Redelivered struct {
	InstanceID  int64    `json:"instanceId"`
	Redelivered int      `json:"redelivered"`
	EventIDs    []string `json:"eventIds"`
}

func (h *Handlers) redeliverAll(w http.ResponseWriter, r *http.Request) error {
	id, err := h.authorize(r)
	if err != nil {
		return err
	}
	ids, err := h.store.RedeliverFailed(r.Context(), id)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, Redelivered{InstanceID: id, Redelivered: len(ids), EventIDs: ids})
	return nil
}

func (h *Handlers) redeliverOne(w http.ResponseWriter, r *http.Request) error {
	id, err := h.authorize(r)
	if err != nil {
		return err
	}
	eventID := r.PathValue("eventId")
	v, err := h.store.Redeliver(r.Context(), id, eventID)
	switch {
	case errors.Is(err, ErrNotFound):
		return notFound(eventID)
	case errors.Is(err, ErrNotFailed):
		return api.Errorf(http.StatusConflict, "notification "+strconv.Quote(eventID)+" is not failed; only failed notifications are redelivered")
	case errors.Is(err, ErrBodyExpired):
		return api.Errorf(http.StatusConflict, "notification "+strconv.Quote(eventID)+" can no longer be redelivered: its body is past the stream's retention")
	case errors.Is(err, ErrConflict):
		return api.Errorf(http.StatusConflict, "notification "+strconv.Quote(eventID)+" is changing; try again")
	case err != nil:
		return err
	}
	api.WriteJSON(w, http.StatusOK, v)
	return nil
}
