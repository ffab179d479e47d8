package instances

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"golang.org/x/oauth2"

	"github.com/pollhook/pollhook/api"
)

// Handlers serve the /instances routes.
type Handlers struct {
	store *Store
	auth  *api.Authenticator
	rules Rules
	opts  Options
}

// Credentials is what the handlers need of upstream authentication
// (upstream.Authorizer): the OAuth authorization code exchange.
type Credentials interface {
	ExchangeCode(ctx context.Context, elementKey string, configuration map[string]any, secrets map[string]string, code string) (*oauth2.Token, error)
	SaveToken(ctx context.Context, instanceID int64, tok *oauth2.Token) error
}

// Options are the parts the handlers call besides the store.
type Options struct {
	// Credentials exchanges providerData.code; nil refuses any code.
	Credentials Credentials
	// OnChange runs after a PATCH was stored, with the instance before and
	// after (e.g. to resume held deliveries). Errors are logged.
	OnChange []func(ctx context.Context, before, after *Instance) error
	// OnDelete runs after an instance is deleted, to drop what other parts
	// keep of it (tokens, poll state, undelivered notifications). Errors
	// are logged: the instance is gone either way.
	OnDelete []func(ctx context.Context, instanceID int64) error
}

// NewHandlers returns the /instances handlers over store.
func NewHandlers(store *Store, auth *api.Authenticator, rules Rules, opts Options) *Handlers {
	return &Handlers{store: store, auth: auth, rules: rules, opts: opts}
}

// Register adds the routes to rt.
func (h *Handlers) Register(rt *api.Router) {
	rt.Handle(http.MethodPost, "/instances", h.create)
	rt.Handle(http.MethodGet, "/instances", h.list)
	rt.Handle(http.MethodGet, "/instances/{id}", h.get)
	rt.Handle(http.MethodPatch, "/instances/{id}", h.patch)
	rt.Handle(http.MethodDelete, "/instances/{id}", h.delete)
}

const (
	defaultPageSize = 200
	maxPageSize     = 1000
	// NextPageHeader carries the token of the next page of GET /instances.
	NextPageHeader = "Elements-Next-Page-Token"
)

func (h *Handlers) admin(r *http.Request) error {
	caller, err := h.auth.Authenticate(r)
	if err != nil {
		return err
	}
	if !caller.Admin {
		return api.Errorf(http.StatusUnauthorized, "an Element token may only read its own instance; this needs the User and Organization secrets")
	}
	return nil
}

// Authorize returns the instance named by the request's {id} if the caller
// may use it: the organization, or the holder of that instance's Element
// token. A token caller gets 401 whether or not the id exists.
func (h *Handlers) Authorize(r *http.Request) (*Instance, api.Caller, error) {
	caller, err := h.auth.Authenticate(r)
	if err != nil {
		return nil, caller, err
	}
	id, err := pathID(r)
	if err != nil {
		if caller.Admin {
			return nil, caller, err
		}
		return nil, caller, api.Unauthorized
	}
	in, err := h.store.Get(r.Context(), id)
	switch {
	case errors.Is(err, ErrNotFound) && caller.Admin:
		return nil, caller, api.Errorf(http.StatusNotFound, "instance "+strconv.FormatInt(id, 10)+" does not exist")
	case errors.Is(err, ErrNotFound):
		return nil, caller, api.Unauthorized
	case err != nil:
		return nil, caller, err
	case !caller.Admin && !caller.MatchesToken(in.Token):
		return nil, caller, api.Unauthorized
	}
	return in, caller, nil
}

// pathID reads {id}: decimal digits naming a positive integer.
func pathID(r *http.Request) (int64, error) {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 || raw[0] == '+' {
		return 0, api.Errorf(http.StatusNotFound, "no instance "+strconv.Quote(raw)+": instance ids are positive decimal integers")
	}
	return id, nil
}

func (h *Handlers) create(w http.ResponseWriter, r *http.Request) error {
	if err := h.admin(r); err != nil {
		return err
	}
	body, err := api.ReadJSONBody(w, r)
	if err != nil {
		return err
	}
	in, provider, problems := ParseCreate(body, h.rules)
	if len(problems) > 0 {
		return api.Invalid("the instance is not valid", problems)
	}
	tok, err := h.exchange(r.Context(), in, provider)
	if err != nil {
		return err
	}
	in.Token = newToken()
	in.CreatedDate = h.rules.now().UTC()
	if err := h.store.Create(r.Context(), in); err != nil {
		return err
	}
	if tok != nil {
		if err := h.opts.Credentials.SaveToken(r.Context(), in.ID, tok); err != nil {
			// No instance without its token: take it back.
			if delErr := h.store.Delete(context.WithoutCancel(r.Context()), in.ID); delErr != nil {
				slog.ErrorContext(r.Context(), "instance left without its token", "instance_id", in.ID, "error", delErr)
			}
			return err
		}
	}
	api.WriteJSON(w, http.StatusOK, in.View(true))
	return nil
}

// exchange runs the OAuth code exchange when the body brought a code. A
// refusal is a 502 quoting the provider; nothing is stored.
func (h *Handlers) exchange(ctx context.Context, in *Instance, provider *ProviderData) (*oauth2.Token, error) {
	if provider == nil || provider.Code == "" {
		return nil, nil
	}
	if h.opts.Credentials == nil {
		return nil, api.Invalid("the instance is not valid", []FieldError{{Field: "providerData.code", Message: "this server does not exchange authorization codes"}})
	}
	tok, err := h.opts.Credentials.ExchangeCode(ctx, in.ElementKey, in.Configuration, in.Secrets, provider.Code)
	if err != nil {
		return nil, api.Errorf(http.StatusBadGateway, "the provider refused the authorization code exchange: "+err.Error())
	}
	return tok, nil
}

func (h *Handlers) list(w http.ResponseWriter, r *http.Request) error {
	if err := h.admin(r); err != nil {
		return err
	}
	q := r.URL.Query()
	pageSize := defaultPageSize
	if raw := q.Get("pageSize"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxPageSize {
			return api.Invalid("bad query", []FieldError{{Field: "pageSize", Message: "must be an integer from 1 to 1000, got " + strconv.Quote(raw)}})
		}
		pageSize = n
	}
	var after int64
	if raw := q.Get("nextPage"); raw != "" {
		n, err := decodePageToken(raw)
		if err != nil {
			return api.Invalid("bad query", []FieldError{{Field: "nextPage", Message: "not a page token from " + NextPageHeader}})
		}
		after = n
	}
	match, problems := listFilter(q)
	if len(problems) > 0 {
		return api.Invalid("bad query", problems)
	}
	page, more, err := h.store.List(r.Context(), after, pageSize, match)
	if err != nil {
		return err
	}
	views := make([]InstanceView, 0, len(page))
	for _, in := range page {
		views = append(views, in.View(true))
	}
	if more {
		w.Header().Set(NextPageHeader, encodePageToken(page[len(page)-1].ID))
	}
	api.WriteJSON(w, http.StatusOK, views)
	return nil
}

// listFilter reads GET /instances' filters: ?tags[]= (repeatable: an
// instance must have every tag given) and ?status=.
func listFilter(q url.Values) (func(*Instance) bool, []FieldError) {
	tags, status := q["tags[]"], q.Get("status")
	if status != "" && !slices.Contains([]string{StatusActive, StatusDisabled, StatusReauthorizationRequired}, status) {
		return nil, []FieldError{{Field: "status", Message: "must be active, disabled or reauthorization_required, got " + strconv.Quote(status)}}
	}
	if len(tags) == 0 && status == "" {
		return nil, nil
	}
	return func(in *Instance) bool {
		if status != "" && in.ShownStatus() != status {
			return false
		}
		for _, tag := range tags {
			if !slices.Contains(in.Tags, tag) {
				return false
			}
		}
		return true
	}, nil
}

func encodePageToken(afterID int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("after:" + strconv.FormatInt(afterID, 10)))
}

func decodePageToken(token string) (int64, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) < 7 || string(raw[:6]) != "after:" {
		return 0, errors.New("bad page token")
	}
	return strconv.ParseInt(string(raw[6:]), 10, 64)
}

func (h *Handlers) get(w http.ResponseWriter, r *http.Request) error {
	in, caller, err := h.Authorize(r)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, in.View(caller.Admin))
	return nil
}

// patch applies the body to the stored instance, re-reading and applying it
// again if another writer changed the instance meanwhile.
func (h *Handlers) patch(w http.ResponseWriter, r *http.Request) error {
	if err := h.admin(r); err != nil {
		return err
	}
	id, err := pathID(r)
	if err != nil {
		return err
	}
	body, err := api.ReadJSONBody(w, r)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		current, err := h.store.Get(r.Context(), id)
		if errors.Is(err, ErrNotFound) {
			return api.Errorf(http.StatusNotFound, "instance "+strconv.FormatInt(id, 10)+" does not exist")
		}
		if err != nil {
			return err
		}
		next, provider, problems := ApplyPatch(current, body, h.rules)
		if len(problems) > 0 {
			return api.Invalid("the change is not valid", problems)
		}
		next.ResourcesAdded = resourcesAdded(current, next, h.rules.now().UTC())
		if attempt == 0 {
			tok, err := h.exchange(r.Context(), next, provider)
			if err != nil {
				return err
			}
			if tok != nil {
				if err := h.opts.Credentials.SaveToken(r.Context(), id, tok); err != nil {
					return err
				}
			}
		}
		err = h.store.Update(r.Context(), next)
		switch {
		case err == nil:
			for _, changed := range h.opts.OnChange {
				if err := changed(context.WithoutCancel(r.Context()), current, next); err != nil {
					slog.ErrorContext(r.Context(), "after PATCH", "instance_id", id, "error", err)
				}
			}
			api.WriteJSON(w, http.StatusOK, next.View(true))
			return nil
		case errors.Is(err, ErrConflict) && attempt < 5:
			continue
		case errors.Is(err, ErrConflict):
			return api.Errorf(http.StatusConflict, "the instance is being changed by another request; try again")
		case errors.Is(err, ErrNotFound):
			return api.Errorf(http.StatusNotFound, "instance "+strconv.FormatInt(id, 10)+" does not exist")
		default:
			return err
		}
	}
}

func (h *Handlers) delete(w http.ResponseWriter, r *http.Request) error {
	if err := h.admin(r); err != nil {
		return err
	}
	id, err := pathID(r)
	if err != nil {
		return err
	}
	err = h.store.Delete(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		return api.Errorf(http.StatusNotFound, "instance "+strconv.FormatInt(id, 10)+" does not exist")
	}
	if errors.Is(err, ErrConflict) {
		return api.Errorf(http.StatusConflict, "the instance is being changed by another request; try again")
	}
	if err != nil {
		return err
	}
	for _, cleanup := range h.opts.OnDelete {
		if err := cleanup(context.WithoutCancel(r.Context()), id); err != nil {
			slog.ErrorContext(r.Context(), "cleanup after delete", "instance_id", id, "error", err)
		}
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "deleted": true})
	return nil
}

// newToken returns an Element token: 256 random bits, URL-safe.
func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (r Rules) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// resourcesAdded dates the resources a PATCH added: a new resource's first
// poll starts at the time of the PATCH; a changed one keeps its watermark.
func resourcesAdded(current, next *Instance, now time.Time) map[string]time.Time {
	added, _, removed := ResourceChanges(current, next)
	out := maps.Clone(current.ResourcesAdded)
	for _, name := range removed {
		delete(out, name)
	}
	for _, name := range added {
		if out == nil {
			out = map[string]time.Time{}
		}
		out[name] = now
	}
	return out
}
