package wasmhost

import "time"

// Headers is an ordered list of header name/value pairs. Names are lower case; pseudo headers
// (":method", ":path", ":authority", ":scheme", ":status") come first by convention.
// A repeated name appears once per value; lookups return the first.
type Headers [][2]string

// Get returns the first value of the header named name (compared case-insensitively).
func (h Headers) Get(name string) (string, bool) {
	if i := h.index([]byte(name)); i >= 0 {
		return h[i][1], true
	}
	return "", false
}

// index returns the position of the first header named key (ASCII case-insensitive), or -1.
func (h Headers) index(key []byte) int {
	for i := range h {
		if equalLower(h[i][0], key) {
			return i
		}
	}
	return -1
}

// set replaces the value of the first header named key and removes the others, or appends
// the header (Envoy's setCopy).
func (h *Headers) set(key []byte, val string) {
	i := h.index(key)
	if i < 0 {
		*h = append(*h, [2]string{lowerString(key), val})
		return
	}
	(*h)[i][1] = val
	out := (*h)[:i+1]
	for _, kv := range (*h)[i+1:] {
		if !equalLower(kv[0], key) {
			out = append(out, kv)
		}
	}
	clear((*h)[len(out):])
	*h = out
}

// remove deletes every header named key.
func (h *Headers) remove(key []byte) {
	out := (*h)[:0]
	for _, kv := range *h {
		if !equalLower(kv[0], key) {
			out = append(out, kv)
		}
	}
	clear((*h)[len(out):])
	*h = out
}

// equalLower reports whether the lower-case name equals key lower-cased.
func equalLower(name string, key []byte) bool {
	if len(name) != len(key) {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if name[i] != c {
			return false
		}
	}
	return true
}

// lowerString returns b as a lower-case string.
func lowerString(b []byte) string {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			out := []byte(string(b))
			for i, c := range out {
				if 'A' <= c && c <= 'Z' {
					out[i] = c + 'a' - 'A'
				}
			}
			return string(out)
		}
	}
	return string(b)
}

// copyHeaders copies h into dst (reusing its storage), lower-casing names.
func copyHeaders(dst, h Headers) Headers {
	if cap(dst) < len(h)+4 {
		dst = make(Headers, 0, len(h)+8) // room for the filter's additions
	}
	dst = dst[:0]
	for _, kv := range h {
		k := kv[0]
		for i := 0; i < len(k); i++ {
			if 'A' <= k[i] && k[i] <= 'Z' {
				k = lowerString([]byte(k))
				break
			}
		}
		dst = append(dst, [2]string{k, kv[1]})
	}
	return dst
}

var timeZero time.Time

func durationMS(ms uint32) time.Duration { return time.Duration(ms) * time.Millisecond }
