package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// health is the shared state of one destination, at d.<hash>.
type health struct {
	Destination string    `json:"destination"`
	Failures    int       `json:"failures"`            // consecutive
	HeldSince   time.Time `json:"heldSince,omitzero"`  // zero: not held
	ProbeUntil  time.Time `json:"probeUntil,omitzero"` // a probe is in flight until then
}

func (h *health) held() bool { return !h.HeldSince.IsZero() }

// healthy reports whether h has nothing to keep: a healthy destination has
// no entry.
func (h *health) healthy() bool { return h.Failures == 0 && !h.held() && h.ProbeUntil.IsZero() }

// health reads the destination's state; a missing one is healthy (rev 0).
func (d *Dispatcher) health(ctx context.Context, dest string) (*health, uint64, error) {
	e, err := d.store.kv.Get(ctx, destKey(destHash(dest)))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return &health{Destination: dest}, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var h health
	if err := json.Unmarshal(e.Value(), &h); err != nil {
		return &health{Destination: dest}, e.Revision(), nil
	}
	return &h, e.Revision(), nil
}

// healthMarkerTTL is how long the marker of a purged destination entry
// stays.
const healthMarkerTTL = time.Minute

// updateHealth applies change to the destination's state with
// compare-and-set, retrying on conflicts. change returns false to write
// nothing. A state changed to healthy is not kept: its entry is purged.
func (d *Dispatcher) updateHealth(ctx context.Context, dest string, change func(h *health) bool) (*health, error) {
	key := destKey(destHash(dest))
	for range 20 {
		h, rev, err := d.health(ctx, dest)
		if err != nil {
			return nil, err
		}
		if !change(h) {
			return h, nil
		}
		switch {
		case h.healthy() && rev == 0:
			return h, nil // nothing kept, nothing to keep
		case h.healthy():
			err = d.store.purge(ctx, key, rev, healthMarkerTTL)
		default:
			_, err = d.store.put(ctx, key, h, rev, 0)
		}
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return h, nil
	}
	return nil, ErrConflict
}

// takeProbe claims the one probe of a held destination, if none is in
// flight (across all processes).
func (d *Dispatcher) takeProbe(ctx context.Context, dest string, h *health, rev uint64) bool {
	now := d.store.now()
	if now.Before(h.ProbeUntil) {
		return false
	}
	h.ProbeUntil = now.Add(d.cfg.DeliveryTimeout + 5*time.Second)
	_, err := d.store.put(ctx, destKey(destHash(dest)), h, rev, 0)
	return err == nil
}

func (d *Dispatcher) releaseProbe(ctx context.Context, dest string) {
	_, _ = d.updateHealth(ctx, dest, func(h *health) bool {
		if h.ProbeUntil.IsZero() {
			return false
		}
		h.ProbeUntil = time.Time{}
		return true
	})
}

// succeeded records a delivered attempt: the destination answers, so its
// state is healthy again (its entry purged) and, if it was held, its
// notifications wake up.
func (d *Dispatcher) succeeded(ctx context.Context, dest string) {
	wasHeld := false
	_, err := d.updateHealth(ctx, dest, func(h *health) bool {
		wasHeld = h.held()
		*h = health{Destination: dest}
		return true
	})
	if err != nil {
		d.log.Warn("writing destination health failed", "destination", dest, "error", err)
		return
	}
	if wasHeld {
		d.log.Info("destination answers again: resuming its notifications", "destination", dest)
		if err := d.store.wake(ctx, destGroup(dest)); err != nil {
			d.log.Warn("resuming held notifications failed", "destination", dest, "error", err)
		}
	}
}

// failed records a failed attempt and reports whether the destination is
// now held.
func (d *Dispatcher) failed(ctx context.Context, dest string, probe bool) bool {
	h, err := d.updateHealth(ctx, dest, func(h *health) bool {
		h.Failures++
		if probe {
			h.ProbeUntil = time.Time{}
		}
		if h.Failures >= d.cfg.HoldAfter && !h.held() {
			h.HeldSince = d.store.now().UTC()
			d.log.Warn("destination held after consecutive failures", "destination", dest, "failures", h.Failures)
		}
		return true
	})
	if err != nil {
		d.log.Warn("writing destination health failed", "destination", dest, "error", err)
		return false
	}
	return h.held()
}

// probeLoop, every ProbeInterval, counts the held destinations (the gauge)
// and, for each held one without a probe in flight, queues one of its
// parked notifications now: the first dispatcher to take it claims the
// probe and attempts it.
func (d *Dispatcher) probeLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		held := 0
		err := d.store.scan(ctx, "d.>", true, func(key string, value []byte, _ uint64) error {
			var h health
			if json.Unmarshal(value, &h) != nil || !h.held() {
				return nil
			}
			held++
			if !d.store.now().Before(h.ProbeUntil) {
				d.probeOne(ctx, "d"+strings.TrimPrefix(key, "d."))
			}
			return nil
		})
		if err == nil {
			d.metrics.held.Set(float64(held))
		}
	}
}

// probeOne queues the first parked notification of group now.
func (d *Dispatcher) probeOne(ctx context.Context, group string) {
	_ = d.store.scan(ctx, parkPrefix(group)+">", false, func(key string, _ []byte, _ uint64) error {
		instanceID, seq, ok := parseRef(strings.TrimPrefix(key, parkPrefix(group)))
		if !ok {
			return nil
		}
		r, _, err := d.store.load(ctx, stateKey(instanceID, seq))
		if err != nil || r.Status != StatusHeld {
			_ = d.store.kv.Purge(ctx, key)
			return nil
		}
		_ = d.store.dueNow(ctx, instanceID, seq, r.Gen)
		return errScanStopped
	})
}
