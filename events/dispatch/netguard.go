package dispatch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// ErrBlockedAddress is returned (wrapped) when --block-private-callbacks
// refuses an address: loopback, private, link-local or unspecified.
var ErrBlockedAddress = errors.New("callback address is loopback, private, link-local or unspecified, which --block-private-callbacks refuses")

// Blocked reports whether ip is an address --block-private-callbacks
// refuses: loopback (127/8, ::1), private (10/8, 172.16/12, 192.168/16,
// fc00::/7), link-local (169.254/16, fe80::/10, and their multicast),
// unspecified (0.0.0.0, ::), and IPv4 0/8; IPv4-mapped IPv6 addresses are
// judged as IPv4.
func Blocked(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return true
	}
	if ip.Is4() && ip.As4()[0] == 0 {
		return true
	}
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsUnspecified()
}

// CheckCallbackURL checks a callback URL for --block-private-callbacks, at
// instance creation: http or https with a host, and every address the host
// resolves to (now) allowed. It resolves with a 5 second limit. The error
// wraps ErrBlockedAddress when an address is refused. The dispatcher checks
// again at each connection (the answer may change).
func CheckCallbackURL(u *url.URL) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return CheckCallbackURLContext(ctx, u)
}

// CheckCallbackURLContext is CheckCallbackURL with a caller's context.
func CheckCallbackURLContext(ctx context.Context, u *url.URL) error {
	return checkCallbackURL(ctx, net.DefaultResolver, u)
}

// checkCallbackURL is CheckCallbackURLContext resolving with resolver.
func checkCallbackURL(ctx context.Context, resolver *net.Resolver, u *url.URL) error {
	if u == nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return errors.New("callback URL must be an absolute http or https URL with a host")
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		if Blocked(ip) {
			return fmt.Errorf("callback host %s: %w", host, ErrBlockedAddress)
		}
		return nil
	}
	addrs, err := resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("callback host %s does not resolve: %w", host, err)
	}
	for _, ip := range addrs {
		if Blocked(ip) {
			return fmt.Errorf("callback host %s resolves to %s: %w", host, ip.Unmap(), ErrBlockedAddress)
		}
	}
	return nil
}

// blockingControl is a net.Dialer Control hook refusing blocked addresses:
// it sees the address actually being connected to, after DNS resolution.
func blockingControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", address, ErrBlockedAddress)
	}
	if Blocked(ap.Addr()) {
		return fmt.Errorf("connect to %s: %w", ap.Addr().Unmap(), ErrBlockedAddress)
	}
	return nil
}
