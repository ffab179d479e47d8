package instances

// InstanceView is an instance as the API shows it (SPEC §2): secrets
// redacted, tags never null, the token only for callers allowed to see it.
type InstanceView struct {
	ID            int64          `json:"id"`
	Name          string         `json:"name"`
	Token         string         `json:"token,omitempty"`
	CreatedDate   string         `json:"createdDate"`
	Element       ElementView    `json:"element"`
	Configuration map[string]any `json:"configuration"`
	Tags          []string       `json:"tags"`
	EventsEnabled bool           `json:"eventsEnabled"`
	Disabled      bool           `json:"disabled"`
	Status        string         `json:"status"`
	StatusMessage string         `json:"statusMessage,omitempty"`
}

// ElementView is the instance's connector, as Open Connectors names it.
type ElementView struct {
	Key string `json:"key"`
}

// CreatedDateFormat is how createdDate is written: RFC 3339 in UTC with
// milliseconds.
const CreatedDateFormat = "2006-01-02T15:04:05.000Z07:00"

// View returns the response form of in. Configuration is a deep copy of
// in.Configuration (event.poller.configuration as an object) plus every key
// of in.Secrets with the value Redacted, so no secret value is in it;
// the token is included only when includeToken is true.
func (in *Instance) View(includeToken bool) InstanceView {
	cfg := cloneMap(in.Configuration)
	if cfg == nil {
		cfg = map[string]any{}
	}
	if pc, ok := cfg[KeyPollerConfig]; ok {
		if obj, ok := resourceObject(pc); ok && obj != nil {
			cfg[KeyPollerConfig] = obj
		}
	}
	for k := range in.Secrets {
		cfg[k] = Redacted
	}
	tags := append([]string{}, in.Tags...)
	v := InstanceView{
		ID:            in.ID,
		Name:          in.Name,
		CreatedDate:   in.CreatedDate.UTC().Format(CreatedDateFormat),
		Element:       ElementView{Key: in.ElementKey},
		Configuration: cfg,
		Tags:          tags,
		EventsEnabled: in.EventsEnabled,
		Disabled:      in.Disabled,
		Status:        in.ShownStatus(),
		StatusMessage: in.StatusMessage,
	}
	if includeToken {
		v.Token = in.Token
	}
	return v
}

// ShownStatus is the status the API shows: active, disabled or
// reauthorization_required.
func (in *Instance) ShownStatus() string {
	switch {
	case in.Status != "":
		return in.Status
	case in.Disabled:
		return StatusDisabled
	}
	return StatusActive
}
