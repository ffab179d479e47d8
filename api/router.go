package api

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/google/uuid"
)

// BasePath is Open Connectors' base path; every route is served under it too.
const BasePath = "/elements/api-v2"

// HandlerFunc is a handler that returns its error for Router to write.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Router maps paths to handlers by method. Unknown paths get a JSON 404,
// known paths with another method a JSON 405 with an Allow header.
type Router struct {
	mux     *http.ServeMux
	methods map[string]map[string]HandlerFunc // pattern → method → handler
}

// NewRouter returns an empty Router.
func NewRouter() *Router {
	rt := &Router{mux: http.NewServeMux(), methods: map[string]map[string]HandlerFunc{}}
	rt.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, Errorf(http.StatusNotFound, "no such route: "+r.URL.Path))
	})
	return rt
}

// Handle registers h for method and a net/http path pattern without a
// method ("/instances/{id}"). Register all routes before serving.
func (rt *Router) Handle(method, pattern string, h HandlerFunc) {
	byMethod, ok := rt.methods[pattern]
	if !ok {
		byMethod = map[string]HandlerFunc{}
		rt.methods[pattern] = byMethod
		rt.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			h, ok := byMethod[r.Method]
			if !ok && r.Method == http.MethodHead {
				h, ok = byMethod[http.MethodGet]
			}
			if !ok {
				allowed := make([]string, 0, len(byMethod))
				for m := range byMethod {
					allowed = append(allowed, m)
				}
				slices.Sort(allowed)
				w.Header().Set("Allow", strings.Join(allowed, ", "))
				WriteError(w, r, Errorf(http.StatusMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path+"; allowed: "+strings.Join(allowed, ", ")))
				return
			}
			if err := h(w, r); err != nil {
				WriteError(w, r, err)
			}
		})
	}
	byMethod[method] = h
}

// Route is one registered method and path pattern ("GET",
// "/instances/{id}"), served at "/" and under BasePath.
type Route struct {
	Method, Pattern string
}

// Routes returns every registered route, sorted by pattern, then method.
// HEAD is served for every GET route and is not listed on its own.
func (rt *Router) Routes() []Route {
	var out []Route
	for pattern, byMethod := range rt.methods {
		for method := range byMethod {
			out = append(out, Route{Method: method, Pattern: pattern})
		}
	}
	slices.SortFunc(out, func(a, b Route) int {
		return cmp.Or(strings.Compare(a.Pattern, b.Pattern), strings.Compare(a.Method, b.Method))
	})
	return out
}

// ServeHTTP serves the routes at "/" and under BasePath, giving every request
// an id (X-Request-Id, and requestId in error bodies).
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := uuid.NewString()
	w.Header().Set("X-Request-Id", id)
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
	if rest, ok := strings.CutPrefix(r.URL.Path, BasePath); ok && (rest == "" || rest[0] == '/') {
		r2 := r.Clone(r.Context())
		r2.URL.Path = rest
		r2.URL.RawPath = ""
		if r2.URL.Path == "" {
			r2.URL.Path = "/"
		}
		r = r2
	}
	rt.mux.ServeHTTP(w, r)
}

type requestIDKey struct{}

// RequestID returns the id Router gave the request, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
