package artifact

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// AllowList says which URLs the cache may fetch, so that a task cannot make the server reach
// arbitrary internal URLs. It is checked before any connection and again for every redirect
// target.
//
// An empty AllowList denies everything: a URL is fetched only if its scheme is listed in Schemes
// AND its host matches one of Hosts. Nothing is allowed implicitly, not even loopback.
//
// Host patterns:
//
//	firmware.example.com        exactly this host, any port
//	*.example.com               any subdomain of example.com (not example.com itself), any port
//	firmware.example.com:8443   this host on port 8443 only (wildcards take a port the same way)
//	10.1.0.0/16, fd00::/8       IP literals inside the prefix, any port
//	192.0.2.7, [2001:db8::1]:80 one IP literal (with or without a port)
//
// Host names are compared as written in the URL, case-insensitively; they are not resolved, so
// a name pattern trusts whatever that name resolves to. CIDR patterns match only URLs that use IP
// literals. A URL without an explicit port is matched on its scheme's default port (80, 443).
type AllowList struct {
	// Schemes lists the allowed URL schemes, e.g. "https" (and "http" where the network is
	// trusted: the checksum still protects integrity, but not confidentiality).
	Schemes []string
	// Hosts lists the allowed host patterns described above.
	Hosts []string
}

// hostRule is one compiled host pattern.
type hostRule struct {
	name     string       // exact host name (lower case), or the suffix ".example.com" when wildcard
	wildcard bool         // name is a suffix
	prefix   netip.Prefix // valid for IP and CIDR patterns
	port     int          // 0 = any port
}

// allowRules is a compiled AllowList.
type allowRules struct {
	schemes map[string]bool
	hosts   []hostRule
}

func (a AllowList) compile() (*allowRules, error) {
	r := &allowRules{schemes: make(map[string]bool)}
	for _, s := range a.Schemes {
		s = strings.ToLower(strings.TrimSpace(s))
		if s != "http" && s != "https" {
			return nil, fmt.Errorf("artifact: allowlist scheme %q: only http and https are supported", s)
		}
		r.schemes[s] = true
	}
	for _, p := range a.Hosts {
		h, err := parseHostRule(p)
		if err != nil {
			return nil, fmt.Errorf("artifact: allowlist host %q: %w", p, err)
		}
		r.hosts = append(r.hosts, h)
	}
	return r, nil
}

func parseHostRule(p string) (hostRule, error) {
	p = strings.ToLower(strings.TrimSpace(p))
	if p == "" {
		return hostRule{}, fmt.Errorf("empty pattern")
	}
	if strings.Contains(p, "/") {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return hostRule{}, fmt.Errorf("bad CIDR: %w", err)
		}
		return hostRule{prefix: pfx.Masked()}, nil
	}
	// A bare IPv6 literal has colons but no port.
	if ip, err := netip.ParseAddr(strings.Trim(p, "[]")); err == nil {
		return hostRule{prefix: netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())}, nil
	}
	host, port := p, 0
	if h, ps, err := net.SplitHostPort(p); err == nil {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 65535 {
			return hostRule{}, fmt.Errorf("bad port %q", ps)
		}
		host, port = h, n
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return hostRule{prefix: netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()), port: port}, nil
	}
	host = strings.TrimSuffix(host, ".")
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		if rest == "" || strings.Contains(rest, "*") {
			return hostRule{}, fmt.Errorf("bad wildcard")
		}
		return hostRule{name: "." + rest, wildcard: true, port: port}, nil
	}
	if host == "" || strings.ContainsAny(host, "*[]@ ") {
		return hostRule{}, fmt.Errorf("bad host name")
	}
	return hostRule{name: host, port: port}, nil
}

// check returns nil when u may be fetched, or an *Error of kind ErrNotAllowed saying why not.
func (r *allowRules) check(u *url.URL) error {
	deny := func(why string) error {
		return &Error{Kind: ErrNotAllowed, URL: redact(u), Err: fmt.Errorf("%s", why)}
	}
	scheme := strings.ToLower(u.Scheme)
	if !r.schemes[scheme] {
		return deny(fmt.Sprintf("scheme %q is not in the allowlist", u.Scheme))
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return deny("no host")
	}
	port := 80
	if scheme == "https" {
		port = 443
	}
	if ps := u.Port(); ps != "" {
		n, err := strconv.Atoi(ps)
		if err != nil {
			return deny("bad port")
		}
		port = n
	}
	ip, ipErr := netip.ParseAddr(host)
	for _, h := range r.hosts {
		if h.port != 0 && h.port != port {
			continue
		}
		switch {
		case h.prefix.IsValid():
			if ipErr == nil && h.prefix.Contains(ip.Unmap()) {
				return nil
			}
		case ipErr == nil:
			// Name patterns never match IP literals.
		case h.wildcard:
			if strings.HasSuffix(host, h.name) && len(host) > len(h.name) {
				return nil
			}
		case host == h.name:
			return nil
		}
	}
	return deny(fmt.Sprintf("host %q (port %d) is not in the allowlist", host, port))
}
