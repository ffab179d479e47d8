package simulators

import "slices"

// IssuedSecrets returns every authorization code, access token and refresh
// token the simulator issued so far, expired, used and revoked ones
// included, sorted: the values a client must never log or show.
func (k *Keap) IssuedSecrets() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for c := range k.codes {
		out = append(out, c)
	}
	for t := range k.access {
		out = append(out, t)
	}
	for t := range k.refresh {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// IssuedSecrets returns every access token and refresh token the simulator
// issued so far, expired and revoked ones included, sorted: the values a
// client must never log or show.
func (f *Finfo) IssuedSecrets() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for t := range f.access {
		out = append(out, t)
	}
	for t := range f.refresh {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}
