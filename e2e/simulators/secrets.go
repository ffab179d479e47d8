package simulators

import (
	"maps"
	"slices"
)

// IssuedSecrets returns every authorization code, access token and refresh
// token the simulator issued so far, expired, used and revoked ones
// included, sorted: the values a client must never log or show.
func (k *Keap) IssuedSecrets() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := slices.Collect(maps.Keys(k.codes))
	out = slices.AppendSeq(out, maps.Keys(k.access))
	return slices.Sorted(slices.Values(slices.AppendSeq(out, maps.Keys(k.refresh))))
}

// IssuedSecrets returns every access token and refresh token the simulator
// issued so far, expired and revoked ones included, sorted: the values a
// client must never log or show.
func (f *Finfo) IssuedSecrets() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Collect(maps.Keys(f.access))
	return slices.Sorted(slices.Values(slices.AppendSeq(out, maps.Keys(f.refresh))))
}
