package instances

import (
	"time"

	"github.com/pollhook/pollhook/pollers"
)

// Status values of an instance.
const (
	StatusActive                  = "active"
	StatusDisabled                = "disabled"
	StatusReauthorizationRequired = "reauthorization_required"
)

// Redacted replaces every secret value in API responses.
const Redacted = "********"

// Instance is one connector instance. Secrets are held apart from
// Configuration: Configuration never holds a secret value, Secrets holds the
// plain values by configuration key (sealed by the store before they reach
// NATS).
type Instance struct {
	ID          int64
	Name        string
	ElementKey  string
	Token       string // the Element token, ≥128 bits random, URL-safe
	CreatedDate time.Time
	// Configuration is every non-secret configuration key as the client sent
	// it, except event.poller.configuration, which is kept normalized as an
	// object (resource name → resource object), and event.poller.urls, which
	// is converted into it.
	Configuration map[string]any
	Secrets       map[string]string
	Tags          []string
	Disabled      bool
	Status        string // StatusActive, StatusDisabled or StatusReauthorizationRequired
	StatusMessage string // why, when not active; "" otherwise
	Revision      uint64 // the store's revision this was read at; Update checks it
	// ResourcesAdded is when each resource added by a PATCH was added; the
	// others date from CreatedDate. See ResourceAddedAt.
	ResourcesAdded map[string]time.Time

	// Derived at parse time from Configuration; not stored separately.
	EventsEnabled   bool
	CallbackURL     string
	RefreshInterval time.Duration
	BatchSize       int
	Resources       map[string]pollers.Resource
}

// ResourceAddedAt is when the resource was added to the instance: its first
// poll reports nothing older.
func (in *Instance) ResourceAddedAt(name string) time.Time {
	if t, ok := in.ResourcesAdded[name]; ok {
		return t
	}
	return in.CreatedDate
}
