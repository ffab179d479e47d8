package simulators

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const apiPrefix = "/crm/rest/v1"

// serveAPI implements /crm/rest/v1.
func (k *Keap) serveAPI(w http.ResponseWriter, r *http.Request, info *reqInfo) {
	if status, retryAfter, ok := k.faults.takeNext(); ok {
		injectedFailure(w, status, retryAfter)
		return
	}

	if ok, fault, code := k.checkBearer(r, info); !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="api.infusionsoft.com"`)
		writeJSON(w, http.StatusUnauthorized, map[string]any{
			"fault": map[string]any{"faultstring": fault, "detail": map[string]any{"errorcode": code}},
		})
		return
	}

	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, apiPrefix), "/")
	resource, idPart, hasID := strings.Cut(rest, "/")
	if _, ok := k.stores[resource]; !ok || strings.Contains(idPart, "/") {
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"message": "Method " + r.Method + " is not supported by the simulator"})
		return
	}
	if hasID {
		k.serveOne(w, resource, idPart)
		return
	}
	k.serveList(w, r, resource)
}

func (k *Keap) serveOne(w http.ResponseWriter, resource, idPart string) {
	id, err := strconv.ParseInt(idPart, 10, 64)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "Invalid id: " + idPart})
		return
	}
	rec, ok := k.Get(resource, id)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"message": fmt.Sprintf("%s not found", strings.TrimSuffix(resource, "s"))})
		return
	}
	k.writeOK(w, rec.JSON())
}

// listQuery is a parsed listing request.
type listQuery struct {
	limit, offset int
	since, until  time.Time
	order         string
	descending    bool
}

func parseListQuery(resource string, q url.Values) (listQuery, string) {
	lq := listQuery{limit: KeapDefaultLimit, order: "id"}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return lq, "Invalid value for limit: " + v
		}
		if n > 0 {
			lq.limit = min(n, KeapMaxLimit)
		}
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return lq, "Invalid value for offset: " + v
		}
		lq.offset = n
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &lq.since}, {"until", &lq.until}} {
		if v := q.Get(p.name); v != "" {
			t, ok := parseKeapQueryDate(v)
			if !ok {
				return lq, fmt.Sprintf("Invalid date format for %s: %s", p.name, v)
			}
			*p.dst = t
		}
	}
	if v := q.Get("order"); v != "" {
		if !slices.Contains(orderFields[resource], strings.ToLower(v)) {
			return lq, fmt.Sprintf("Invalid value for order: %s (one of %s)", v, strings.Join(orderFields[resource], ", "))
		}
		lq.order = strings.ToLower(v)
	}
	if v := q.Get("order_direction"); v != "" {
		switch strings.ToLower(v) {
		case "ascending", "asc":
		case "descending", "desc":
			lq.descending = true
		default:
			return lq, "Invalid value for order_direction: " + v + " (ASCENDING or DESCENDING)"
		}
	}
	return lq, ""
}

// orderFields are the values of order each resource accepts.
var orderFields = map[string][]string{
	Contacts:      {"id", "date_created", "last_updated", "name", "firstname", "email"},
	Opportunities: {"id", "date_created", "last_updated", "next_action", "opportunity_name", "contact_name"},
}

// parseKeapQueryDate reads since and until: ISO 8601 date-times with or
// without fraction and zone (no zone = UTC), or a date.
func parseKeapQueryDate(v string) (time.Time, bool) {
	v = strings.ReplaceAll(strings.TrimSpace(v), " ", "+") // an unescaped '+' in a query
	for _, layout := range []string{
		time.RFC3339Nano,
		"2006-01-02T15:04:05.999999999-0700",
		"2006-01-02T15:04:05.999999999-07",
		"2006-01-02T15:04:05.999999999",
		"2006-01-02T15:04",
		"2006-01-02",
	} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

func (k *Keap) serveList(w http.ResponseWriter, r *http.Request, resource string) {
	q := r.URL.Query()
	lq, problem := parseListQuery(resource, q)
	if problem != "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": problem})
		return
	}

	k.mu.Lock()
	page := lq.offset/lq.limit + 1
	if f, ok := k.pageFaults[page]; ok {
		status := f.status
		if f.times > 0 {
			f.times--
			if f.times == 0 {
				delete(k.pageFaults, page)
			}
		}
		k.mu.Unlock()
		injectedFailure(w, status, k.faults.retryAfterValue())
		return
	}
	now := k.nowLocked()
	var matching []Record
	for _, e := range k.stores[resource].entries {
		rec, ok := e.visible(now, k.indexDelay)
		if !ok {
			continue
		}
		if !lq.since.IsZero() && rec.LastUpdated.Before(lq.since) {
			continue
		}
		if !lq.until.IsZero() && rec.LastUpdated.After(lq.until) {
			continue
		}
		matching = append(matching, rec)
	}
	base := k.linkBase
	k.mu.Unlock()
	if base == "" {
		base = k.srv.URL
	}

	slices.SortFunc(matching, func(a, b Record) int {
		c := compareBy(lq.order, a, b)
		if lq.descending {
			c = -c
		}
		if c == 0 {
			c = cmpInt64(a.ID, b.ID)
		}
		return c
	})
	items := []map[string]any{}
	for i := lq.offset; i < len(matching) && i < lq.offset+lq.limit; i++ {
		items = append(items, matching[i].JSON())
	}
	link := func(offset int) string {
		v := url.Values{}
		for key, vals := range q {
			v[key] = vals
		}
		v.Set("limit", strconv.Itoa(lq.limit))
		v.Set("offset", strconv.Itoa(offset))
		// Keap's links end the collection path with a slash.
		return base + apiPrefix + "/" + resource + "/?" + v.Encode()
	}
	k.writeOK(w, map[string]any{
		resource:   items,
		"count":    len(matching),
		"next":     link(lq.offset + lq.limit),
		"previous": link(max(lq.offset-lq.limit, 0)),
	})
}

func compareBy(order string, a, b Record) int {
	switch order {
	case "date_created":
		return a.DateCreated.Compare(b.DateCreated)
	case "last_updated":
		return a.LastUpdated.Compare(b.LastUpdated)
	case "name":
		return cmp.Or(
			cmp.Compare(fieldString(a, "family_name"), fieldString(b, "family_name")),
			cmp.Compare(fieldString(a, "given_name"), fieldString(b, "given_name")))
	case "firstname":
		return cmp.Compare(fieldString(a, "given_name"), fieldString(b, "given_name"))
	case "email":
		return cmp.Compare(firstEmail(a), firstEmail(b))
	case "opportunity_name":
		return cmp.Compare(fieldString(a, "opportunity_title"), fieldString(b, "opportunity_title"))
	case "next_action":
		return cmp.Compare(fieldString(a, "next_action_date"), fieldString(b, "next_action_date"))
	case "contact_name":
		ca, _ := a.Fields["contact"].(map[string]any)
		cb, _ := b.Fields["contact"].(map[string]any)
		sa, _ := ca["last_name"].(string)
		sb, _ := cb["last_name"].(string)
		return cmp.Compare(sa, sb)
	}
	return cmpInt64(a.ID, b.ID)
}

func fieldString(r Record, key string) string {
	s, _ := r.Fields[key].(string)
	return s
}

func firstEmail(r Record) string {
	list, _ := r.Fields["email_addresses"].([]any)
	if len(list) == 0 {
		return ""
	}
	m, _ := list[0].(map[string]any)
	s, _ := m["email"].(string)
	return s
}

// writeOK writes a 200 JSON body, unless TruncateNext or MalformNext asks
// for a broken one.
func (k *Keap) writeOK(w http.ResponseWriter, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"message": err.Error()})
		return
	}
	b = k.faults.corrupt(b)
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func injectedFailure(w http.ResponseWriter, status int, retryAfter string) {
	setRetryAfterHeader(w, status, retryAfter)
	if status == http.StatusTooManyRequests {
		writeJSON(w, status, map[string]any{
			"fault": map[string]any{"faultstring": "Rate limit quota violation. Quota limit exceeded.",
				"detail": map[string]any{"errorcode": "policies.ratelimit.QuotaViolation"}},
		})
		return
	}
	writeJSON(w, status, map[string]any{"message": fmt.Sprintf("Injected failure: %d %s", status, http.StatusText(status))})
}
