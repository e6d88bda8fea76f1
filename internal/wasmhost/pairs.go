package wasmhost

import "encoding/binary"

// The pairs format of proxy-wasm (cpp-host's pairs_util), in which header maps cross the
// ABI both ways: a little-endian u32 count N; N entries of (u32 name length, u32 value
// length); then for each pair its name, a NUL byte, its value, a NUL byte; nothing after.
// The host has its own encoder and decoder, never the guest's: both sides are checked
// against the byte vectors of internal/abivectors.

// cpp-host's limits on pairs a guest sends; above them the map decodes as empty.
const (
	maxPairsBytes = 1 << 20 // PROXY_WASM_HOST_PAIRS_MAX_BYTES: 1 MiB of serialized map
	maxPairsCount = 1024    // PROXY_WASM_HOST_PAIRS_MAX_COUNT
)

// appendPairs appends h to dst in the pairs format. The host encodes maps of any size.
func appendPairs(dst []byte, h Headers) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(h)))
	for _, kv := range h {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(kv[0])))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(kv[1])))
	}
	for _, kv := range h {
		dst = append(append(dst, kv[0]...), 0)
		dst = append(append(dst, kv[1]...), 0)
	}
	return dst
}

// decodePairs parses data, bytes in the pairs format sent by a guest, into dst[:0] the way
// cpp-host does: empty input, a short or inconsistent size table, a missing NUL, trailing
// bytes, more than maxPairsCount pairs or more than maxPairsBytes all yield an empty map,
// never an error. Names are lower-cased, as Envoy's header maps store them. The result
// copies data, which may alias guest memory.
func decodePairs(dst Headers, data []byte) Headers {
	dst = dst[:0]
	if len(data) < 4 || len(data) > maxPairsBytes {
		return dst
	}
	n := uint64(binary.LittleEndian.Uint32(data))
	if n > maxPairsCount || 8*n > uint64(len(data)-4) {
		return dst
	}
	table, rest := data[4:4+8*n], data[4+8*n:]
	for ; len(table) > 0; table = table[8:] {
		nameLen := uint64(binary.LittleEndian.Uint32(table))
		valueLen := uint64(binary.LittleEndian.Uint32(table[4:]))
		end := nameLen + 1 + valueLen + 1
		if end > uint64(len(rest)) || rest[nameLen] != 0 || rest[end-1] != 0 {
			return dst[:0]
		}
		dst = append(dst, [2]string{lowerString(rest[:nameLen]), string(rest[nameLen+1 : end-1])})
		rest = rest[end:]
	}
	if len(rest) != 0 {
		return dst[:0]
	}
	return dst
}
