package limiter

import "bytes"

// Textual IP addresses, read and written without net/netip: that package
// and what it pulls in (unique, weak, internal/sync) cost the module about
// 150 KB, more than the rest of the limiter. The grammar is net/netip's, and
// FuzzParseHostPort and FuzzAppendAddr hold these functions to it.

// parseIPv4 reads strict dotted decimal ("192.0.2.1": four fields, each 0
// to 255 without leading zeros) into v4.
func parseIPv4(b []byte, v4 *[4]byte) bool {
	field, digits, val := 0, 0, 0
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			if digits == 1 && val == 0 {
				return false // leading zero
			}
			val = val*10 + int(c-'0')
			digits++
			if val > 255 {
				return false
			}
		case c == '.' && digits > 0 && field < 3:
			v4[field] = byte(val)
			field, digits, val = field+1, 0, 0
		default:
			return false
		}
	}
	if field != 3 || digits == 0 {
		return false
	}
	v4[3] = byte(val)
	return true
}

// mapped returns v4 as 16 bytes, in its IPv4-mapped IPv6 form.
func mapped(v4 [4]byte) [16]byte {
	return [16]byte{10: 0xff, 11: 0xff, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]}
}

// parseIPv6 reads an IPv6 address: up to eight groups of one to four hex
// digits separated by colons, one "::" standing for at least one zero group,
// the last 32 bits possibly written as dotted IPv4, and an optional
// non-empty zone after "%", which is dropped.
func parseIPv6(b []byte, ip *[16]byte) bool {
	if z := bytes.IndexByte(b, '%'); z >= 0 {
		if z == len(b)-1 {
			return false // empty zone
		}
		b = b[:z]
	}
	var out [16]byte
	gap := -1 // where "::" stands, as a byte index into out
	if len(b) >= 2 && b[0] == ':' && b[1] == ':' {
		gap, b = 0, b[2:]
		if len(b) == 0 {
			*ip = out
			return true
		}
	}
	i := 0
	for i < 16 {
		n, v := 0, 0
		for n < len(b) && n <= 4 {
			d := hexValue(b[n])
			if d < 0 {
				break
			}
			v = v<<4 | d
			n++
		}
		if n == 0 || n > 4 {
			return false
		}
		if n < len(b) && b[n] == '.' { // the last 32 bits in dotted IPv4
			if gap < 0 && i != 12 || i > 12 {
				return false
			}
			var v4 [4]byte
			if !parseIPv4(b, &v4) {
				return false
			}
			copy(out[i:], v4[:])
			i, b = i+4, nil
			break
		}
		out[i], out[i+1] = byte(v>>8), byte(v)
		i += 2
		if b = b[n:]; len(b) == 0 {
			break
		}
		if b[0] != ':' || len(b) == 1 {
			return false
		}
		if b = b[1:]; b[0] == ':' {
			if gap >= 0 {
				return false // a second "::"
			}
			if gap, b = i, b[1:]; len(b) == 0 {
				break
			}
		}
	}
	switch {
	case len(b) != 0:
		return false // more than eight groups
	case i < 16 && gap < 0:
		return false // too short
	case i == 16 && gap >= 0:
		return false // "::" standing for nothing
	}
	if i < 16 {
		n := 16 - i
		copy(out[gap+n:], out[gap:i])
		clear(out[gap : gap+n])
	}
	*ip = out
	return true
}

func hexValue(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// parseAddr reads an IPv4 or IPv6 address into 16 bytes, IPv4 (and
// IPv4-mapped IPv6) in the mapped form. The first '.', ':' or '%' decides
// which: a '%' first is a zone without an address.
func parseAddr(b []byte, ip *[16]byte) bool {
	switch firstSpecial(b) {
	case '.':
		var v4 [4]byte
		if !parseIPv4(b, &v4) {
			return false
		}
		*ip = mapped(v4)
		return true
	case ':':
		return parseIPv6(b, ip)
	}
	return false
}

// validPort reports whether b is a port: decimal digits, leading zeros
// allowed, at most 65535.
func validPort(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
		if n = n*10 + int(c-'0'); n > 65535 {
			return false
		}
	}
	return true
}

// parseHostPort reads "ip:port", "[ipv6]:port" or a bare address into ip,
// IPv4 in its IPv4-mapped form. Brackets go with IPv6 only, and IPv6 with a
// port needs them; input that is not an address and a port is read as an
// address (so "::1:80" is the address ::1:80).
func parseHostPort(b []byte, ip *[16]byte) bool {
	if c := bytes.LastIndexByte(b, ':'); c > 0 && validPort(b[c+1:]) {
		host := b[:c]
		if host[0] == '[' {
			if len(host) >= 2 && host[len(host)-1] == ']' {
				if inner := host[1 : len(host)-1]; firstSpecial(inner) == ':' && parseIPv6(inner, ip) {
					return true
				}
			}
		} else if firstSpecial(host) == '.' {
			var v4 [4]byte
			if parseIPv4(host, &v4) {
				*ip = mapped(v4)
				return true
			}
		}
	}
	return parseAddr(b, ip)
}

// firstSpecial returns the first '.', ':' or '%' of b, or 0: the byte that
// tells an IPv4 address from an IPv6 one.
func firstSpecial(b []byte) byte {
	for _, c := range b {
		if c == '.' || c == ':' || c == '%' {
			return c
		}
	}
	return 0
}

// appendAddr appends ip as text: dotted decimal for IPv4 (mapped) addresses,
// else RFC 5952 (lower-case hex, no leading zeros, the first longest run of
// two or more zero groups written "::").
func appendAddr(dst []byte, ip [16]byte) []byte {
	if [12]byte(ip[:12]) == [12]byte{10: 0xff, 11: 0xff} {
		for i, v := range ip[12:] {
			if i > 0 {
				dst = append(dst, '.')
			}
			dst = appendInt(dst, int64(v))
		}
		return dst
	}
	runStart, runLen := -1, 1 // the longest run of zero groups, if longer than 1
	for i := 0; i < 8; {
		if ip[2*i] != 0 || ip[2*i+1] != 0 {
			i++
			continue
		}
		j := i
		for j < 8 && ip[2*j] == 0 && ip[2*j+1] == 0 {
			j++
		}
		if j-i > runLen {
			runStart, runLen = i, j-i
		}
		i = j
	}
	const hex = "0123456789abcdef"
	for i := 0; i < 8; i++ {
		if i == runStart {
			dst = append(dst, ':', ':')
			i += runLen - 1
			continue
		}
		if i > 0 && i != runStart+runLen {
			dst = append(dst, ':')
		}
		g := uint16(ip[2*i])<<8 | uint16(ip[2*i+1])
		started := false
		for shift := 12; shift >= 0; shift -= 4 {
			d := g >> shift & 0xf
			if d != 0 || started || shift == 0 {
				dst = append(dst, hex[d])
				started = true
			}
		}
	}
	return dst
}
