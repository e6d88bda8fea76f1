package envoysim

import (
	"strings"
)

// Path normalization, as Envoy's HTTP connection manager does it before any filter or route
// sees the request (ConnectionManagerUtility::maybeNormalizePath), in Envoy's order: the
// escaped-slash check, then normalize_path (RFC 3986 dot segments plus the percent-encoding
// and backslash rules of the Chromium URL code that Envoy uses), then merge_slashes. Each step
// works on the path before the first '?'; the query is kept as it came. The result is the
// :path that the filter, the router and the upstream see.

// normalizePath applies the connection manager's path options to p. ok is false when Envoy
// answers 400 instead (downstream_rq_failed_path_normalization): an escaped slash under
// REJECT_REQUEST, or a path that normalize_path refuses (one that holds %00).
func (c *Config) normalizePath(p string) (string, bool) {
	path, query, hasQuery := strings.Cut(p, "?")
	if c.RejectEscapedSlashes && hasEscapedSlash(path) {
		return p, false
	}
	if c.NormalizePath {
		var ok bool
		if path, ok = canonicalPath(path); !ok {
			return p, false
		}
	}
	if c.MergeSlashes {
		path = mergeSlashes(path)
	}
	if hasQuery {
		return path + "?" + query, true
	}
	return path, true
}

// hasEscapedSlash reports whether path holds %2F or %5C, in either case: what
// path_with_escaped_slashes_action acts on.
func hasEscapedSlash(path string) bool {
	for i := 0; i+2 < len(path); i++ {
		if path[i] != '%' {
			continue
		}
		switch path[i+1 : i+3] {
		case "2F", "2f", "5C", "5c":
			return true
		}
	}
	return false
}

// pathChar says what normalize_path does with a byte of the path, as Envoy's copy of
// Chromium's path table does.
type pathChar uint8

const (
	charPass     pathChar = iota // copied, and kept escaped when it comes as %XX
	charUnescape                 // copied; %XX of it is decoded (unreserved characters)
	charEscape                   // written as %XX (upper-case hex)
	charInvalid                  // NUL: written as %00, and the request is refused
)

func classify(b byte) pathChar {
	switch {
	case b == 0:
		return charInvalid
	case b < 0x20 || b >= 0x7f:
		return charEscape
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return charUnescape
	}
	switch b {
	case '-', '.', '_', '~':
		return charUnescape
	case ' ', '"', '#', '<', '>', '?', '`', '{', '|', '}', '^', '%':
		return charEscape
	}
	return charPass // ! $ & ' ( ) * + , / : ; = @ [ \ ]
}

func unhex(b byte) (byte, bool) {
	switch {
	case '0' <= b && b <= '9':
		return b - '0', true
	case 'a' <= b && b <= 'f':
		return b - 'a' + 10, true
	case 'A' <= b && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}

// decodeAt decodes the escape %XX at path[i], if there is a valid one.
func decodeAt(path string, i int) (byte, bool) {
	if i+2 >= len(path) || path[i] != '%' {
		return 0, false
	}
	hi, ok1 := unhex(path[i+1])
	lo, ok2 := unhex(path[i+2])
	return hi<<4 | lo, ok1 && ok2
}

// dotAt returns the length of a dot at path[i]: 1 for '.', 3 for %2E or %2e, 0 for none.
func dotAt(path string, i int) int {
	if i < len(path) && path[i] == '.' {
		return 1
	}
	if b, ok := decodeAt(path, i); ok && b == '.' {
		return 3
	}
	return 0
}

func isSlash(b byte) bool { return b == '/' || b == '\\' }

// canonicalPath is normalize_path on the path part (no query): '\' becomes '/'; "." and ".."
// segments (also written %2E) are removed, and ".." never climbs above the root; %XX of an
// unreserved character (letters, digits, - . _ ~) is decoded, any other valid %XX is kept as
// sent (hex case included); bytes that must be escaped (controls, space, " # < > ` { | } ^,
// non-ASCII) are written as %XX. A path without a leading slash gets one. It reports false
// for a path that holds a NUL, raw or as %00, which Envoy refuses.
//
// Not reproduced: Chromium's guard against nested escapes ("%%30" decoding into a new "%0"):
// Go's HTTP server already refuses a request target with an invalid escape (400), so such a
// path never reaches this function.
func canonicalPath(path string) (string, bool) {
	var out strings.Builder
	out.Grow(len(path) + 1)
	ok := true
	if path == "" || !isSlash(path[0]) {
		out.WriteByte('/')
	}
	// A dot starts a "." or ".." segment only right after a slash of the output.
	for i := 0; i < len(path); i++ {
		b := path[i]
		if n := dotAt(path, i); n > 0 {
			s := out.String()
			if !strings.HasSuffix(s, "/") {
				out.WriteByte('.') // part of a name
				i += n - 1
				continue
			}
			after := i + n
			switch {
			case after == len(path): // "/." at the end
				i = after - 1
			case isSlash(path[after]): // "/./"
				i = after
			default:
				n2 := dotAt(path, after)
				end := after + n2
				if n2 > 0 && (end == len(path) || isSlash(path[end])) { // "/.." then end or slash
					backUp(&out)
					if end < len(path) {
						end++ // the slash is consumed too
					}
					i = end - 1
				} else { // ".x", "..x": a name
					out.WriteByte('.')
					i += n - 1
				}
			}
			continue
		}
		switch {
		case b == '\\':
			out.WriteByte('/')
		case b == '%':
			v, valid := decodeAt(path, i)
			if !valid {
				out.WriteByte('%') // kept as sent, as Envoy's permissive mode does
				continue
			}
			switch classify(v) {
			case charUnescape:
				out.WriteByte(v)
			case charInvalid:
				out.WriteString(path[i : i+3])
				ok = false
			default:
				out.WriteString(path[i : i+3])
			}
			i += 2
		default:
			switch classify(b) {
			case charInvalid:
				writeEscaped(&out, b)
				ok = false
			case charEscape:
				writeEscaped(&out, b)
			default:
				out.WriteByte(b)
			}
		}
	}
	return out.String(), ok
}

// backUp removes the last segment of out, which ends with '/', keeping its slash; at the root
// it does nothing.
func backUp(out *strings.Builder) {
	s := out.String()
	j := strings.LastIndexByte(s[:len(s)-1], '/')
	if j < 0 {
		return
	}
	out.Reset()
	out.WriteString(s[:j+1])
}

func writeEscaped(out *strings.Builder, b byte) {
	const hex = "0123456789ABCDEF"
	out.WriteByte('%')
	out.WriteByte(hex[b>>4])
	out.WriteByte(hex[b&15])
}

// mergeSlashes is merge_slashes on the path part: runs of '/' become one, a leading and a
// trailing slash are kept (so "//" alone stays "//", as Envoy's does).
func mergeSlashes(path string) string {
	if !strings.Contains(path, "//") {
		return path
	}
	var parts []string
	for _, s := range strings.Split(path, "/") {
		if s != "" {
			parts = append(parts, s)
		}
	}
	out := strings.Join(parts, "/")
	if strings.HasPrefix(path, "/") {
		out = "/" + out
	}
	if strings.HasSuffix(path, "/") { // "//" stays "//", as in Envoy
		out += "/"
	}
	return out
}
