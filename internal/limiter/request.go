package limiter

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/tokengate/tokengate/internal/config"
)

// Request is the view of one HTTP request the limiter needs. Implementations
// fetch lazily: the limiter asks only for what its rules use. Returned bytes
// must stay valid until Decide returns and are never retained.
type Request interface {
	// Header returns the first value of a request header; name is lower
	// case. Pseudo headers (":path", ":method", ":authority") are included.
	Header(name string) ([]byte, bool)
	// SourceAddress returns the downstream peer as "ip:port" (Envoy's
	// source.address property).
	SourceAddress() ([]byte, bool)
}

const headerXFF = "x-forwarded-for"

// clientIP returns the client address as 16 bytes (IPv4 addresses in their
// IPv4-mapped form, so every spelling of one address gives one key).
//
// With trustedHops N > 0 it follows Envoy's xff_num_trusted_hops with
// use_remote_address: the client is the Nth address from the right of the
// X-Forwarded-For header as the peer sent it. Envoy appends the peer's own
// address to the header before filters run, so a final entry equal to the
// peer is taken as that append and skipped. A header too short, or an entry
// that is not an IP address, falls back to the peer address. ok is false
// only when the peer address itself is missing or malformed.
func clientIP(req Request, trustedHops int) (ip [16]byte, ok bool) {
	var peer [16]byte
	raw, peerOK := req.SourceAddress()
	if peerOK {
		peerOK = parseHostPort(raw, &peer)
	}
	if trustedHops > 0 {
		if xff, found := req.Header(headerXFF); found && fromXFF(xff, trustedHops, &peer, peerOK, &ip) {
			return ip, true
		}
	}
	return peer, peerOK
}

// fromXFF writes the Nth entry from the right of an X-Forwarded-For value
// into ip, skipping a last entry equal to the peer (Envoy's own append).
func fromXFF(xff []byte, n int, peer *[16]byte, peerOK bool, ip *[16]byte) bool {
	rest := xff
	skippedAppend := false
	for i := 0; ; {
		entry := rest
		if c := bytes.LastIndexByte(rest, ','); c >= 0 {
			entry, rest = rest[c+1:], rest[:c]
		} else {
			rest = nil
		}
		if !parseHostPort(bytes.TrimSpace(entry), ip) {
			return false
		}
		if i == 0 && !skippedAppend && peerOK && *ip == *peer {
			skippedAppend = true
		} else {
			i++
			if i == n {
				return true
			}
		}
		if rest == nil {
			return false
		}
	}
}

// hostOf returns the :authority without port, for matching and keys. Case
// is left alone: callers compare case-insensitively.
func hostOf(authority []byte) []byte {
	if len(authority) > 0 && authority[0] == '[' { // [v6]:port
		if end := bytes.IndexByte(authority, ']'); end > 0 {
			return authority[1:end]
		}
		return authority
	}
	if c := bytes.LastIndexByte(authority, ':'); c >= 0 && bytes.IndexByte(authority[:c], ':') < 0 {
		if _, err := strconv.Atoi(bytesToString(authority[c+1:])); err == nil {
			return authority[:c]
		}
	}
	return authority
}

// partHeader returns the request header key part p reads: the named header,
// or the pseudo header of the path, method or host; "" for the client
// address, which comes from the peer (and X-Forwarded-For, see clientIP).
func partHeader(p config.KeyPart) string {
	switch p.Kind {
	case config.KeyHeader:
		return p.Header
	case config.KeyPath:
		return ":path"
	case config.KeyMethod:
		return ":method"
	case config.KeyHost:
		return ":authority"
	}
	return ""
}

// partValue returns the value of key part p in req, for every kind but the
// client address: the header's value, the path without its query, the
// method, or the host without its port (not lower-cased); ok is false when
// req lacks it. The value aliases the request's.
func partValue(p config.KeyPart, req Request) ([]byte, bool) {
	v, ok := req.Header(partHeader(p))
	switch p.Kind {
	case config.KeyPath:
		v = pathOf(v)
	case config.KeyHost:
		v = hostOf(v)
	}
	return v, ok
}

// pathOf returns the path without query or fragment.
func pathOf(path []byte) []byte {
	if i := bytes.IndexAny(path, "?#"); i >= 0 {
		return path[:i]
	}
	return path
}

// matchHost reports whether host (any case, no port) matches pattern (lower
// case; "*.example.com" matches any subdomain of example.com).
func matchHost(pattern string, host []byte) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
		return len(host) > len(suffix)+1 && host[len(host)-len(suffix)-1] == '.' &&
			equalFoldASCII(host[len(host)-len(suffix):], suffix)
	}
	return equalFoldASCII(host, pattern)
}

// equalFoldASCII compares b with the lower-case string s, ignoring the case
// of ASCII letters in b.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
