// Package rls encodes the request and decodes the answer of Envoy's rate
// limit service protocol (envoy.service.ratelimit.v3.RateLimitService/
// ShouldRateLimit) by hand, on the protobuf wire format, so the filter
// carries no protobuf runtime: this package is a few kilobytes of module.
//
// Only the fields tokengate uses are written or read. The decoder skips
// every other field, known or not, so newer servers stay compatible, and it
// returns an error, never panics, on malformed bytes. Encoder and Response
// are reused from call to call and allocate nothing once warm; neither is
// safe for concurrent use.
package rls

import "errors"

// Code is a RateLimitResponse.Code.
type Code uint8

const (
	CodeUnknown   Code = 0
	CodeOK        Code = 1
	CodeOverLimit Code = 2
)

// Unit is a RateLimitResponse.RateLimit.Unit (SECOND = 1 ... DAY = 4; the
// protocol has more, passed through as numbers).
type Unit uint32

// Field numbers of the messages used.
const (
	// RateLimitRequest
	fieldDomain      = 1
	fieldDescriptors = 2
	fieldHitsAddend  = 3
	// envoy.extensions.common.ratelimit.v3.RateLimitDescriptor
	fieldEntries        = 1
	fieldDescHitsAddend = 3 // google.protobuf.UInt64Value
	fieldEntryKey       = 1
	fieldEntryValue     = 2
	fieldWrapperValue   = 1
	// RateLimitResponse
	fieldOverallCode = 1
	fieldStatuses    = 2
	// RateLimitResponse.DescriptorStatus
	fieldCode               = 1
	fieldCurrentLimit       = 2
	fieldLimitRemaining     = 3
	fieldDurationUntilReset = 4
	// RateLimitResponse.RateLimit
	fieldRequestsPerUnit = 1
	fieldUnit            = 2
	// google.protobuf.Duration
	fieldSeconds = 1
	fieldNanos   = 2
)

// Wire types.
const (
	wireVarint     = 0
	wireFixed64    = 1
	wireBytes      = 2
	wireStartGroup = 3
	wireEndGroup   = 4
	wireFixed32    = 5
)

// Encoder builds one RateLimitRequest at a time in a buffer it keeps:
// Reset, then per descriptor Begin, Entry..., End, then Bytes.
type Encoder struct {
	buf   []byte
	start int // where the open descriptor's body starts
}

// Reset starts a request for domain. hitsAddend is the request-wide
// hits_addend (0 leaves it out: the server then counts 1 per descriptor).
func (e *Encoder) Reset(domain string, hitsAddend uint32) {
	e.buf = appendString(e.buf[:0], fieldDomain, domain)
	if hitsAddend != 0 {
		e.buf = appendTag(e.buf, fieldHitsAddend, wireVarint)
		e.buf = appendVarint(e.buf, uint64(hitsAddend))
	}
}

// Begin opens a descriptor.
func (e *Encoder) Begin() {
	e.buf = appendTag(e.buf, fieldDescriptors, wireBytes)
	e.start = len(e.buf)
}

// Entry adds the entry (key, value) to the open descriptor.
func (e *Encoder) Entry(key string, value []byte) {
	n := 1 + varintLen(uint64(len(key))) + len(key) + 1 + varintLen(uint64(len(value))) + len(value)
	e.buf = appendTag(e.buf, fieldEntries, wireBytes)
	e.buf = appendVarint(e.buf, uint64(n))
	e.buf = appendString(e.buf, fieldEntryKey, key)
	e.buf = appendTag(e.buf, fieldEntryValue, wireBytes)
	e.buf = appendVarint(e.buf, uint64(len(value)))
	e.buf = append(e.buf, value...)
}

// End closes the open descriptor, with its own hits_addend when hits > 0
// (it then takes precedence over the request-wide one).
func (e *Encoder) End(hits uint64) {
	if hits > 0 {
		e.buf = appendTag(e.buf, fieldDescHitsAddend, wireBytes)
		e.buf = appendVarint(e.buf, uint64(1+varintLen(hits)))
		e.buf = appendTag(e.buf, fieldWrapperValue, wireVarint)
		e.buf = appendVarint(e.buf, hits)
	}
	// The body is written; slide it right to make room for its length.
	n := len(e.buf) - e.start
	k := varintLen(uint64(n))
	for i := 0; i < k; i++ {
		e.buf = append(e.buf, 0)
	}
	copy(e.buf[e.start+k:], e.buf[e.start:e.start+n])
	appendVarint(e.buf[e.start:e.start], uint64(n))
}

// Bytes returns the encoded request, valid until the next Reset.
func (e *Encoder) Bytes() []byte { return e.buf }

func appendTag(b []byte, field, wire int) []byte {
	return appendVarint(b, uint64(field<<3|wire))
}

func appendString(b []byte, field int, s string) []byte {
	b = appendTag(b, field, wireBytes)
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// Status is one RateLimitResponse.DescriptorStatus, in the order of the
// request's descriptors.
type Status struct {
	Code            Code
	HasLimit        bool   // current_limit was given
	RequestsPerUnit uint32 // of current_limit
	Unit            Unit   // of current_limit
	Remaining       uint32 // limit_remaining
	HasReset        bool   // duration_until_reset was given
	UntilReset      int64  // duration_until_reset in nanoseconds, clamped to >= 0
}

// MaxStatuses bounds the statuses a Response keeps; a message with more is
// an error (tokengate sends at most one descriptor per rule).
const MaxStatuses = 256

// Response is a decoded RateLimitResponse. The zero value is ready to use.
type Response struct {
	Overall  Code
	Statuses []Status
}

// Decoding errors.
var (
	ErrTruncated = errors.New("rls: truncated message")
	ErrMalformed = errors.New("rls: malformed message")
	ErrTooMany   = errors.New("rls: too many descriptor statuses")
	ErrTooDeep   = errors.New("rls: groups nested too deep")
)

// Decode reads a RateLimitResponse from b into r, replacing what r held.
// Unknown fields are skipped; on error r holds what was read so far.
func (r *Response) Decode(b []byte) error {
	r.Overall, r.Statuses = CodeUnknown, r.Statuses[:0]
	f := reader{b: b}
	for f.next() {
		switch field, wire, num := f.field, f.wire, f.num; {
		case field == fieldOverallCode && wire == wireVarint:
			r.Overall = code(num)
		case field == fieldStatuses && wire == wireBytes:
			if len(r.Statuses) == MaxStatuses {
				return ErrTooMany
			}
			r.Statuses = append(r.Statuses, Status{})
			if err := r.Statuses[len(r.Statuses)-1].decode(f.val); err != nil {
				return err
			}
		}
	}
	return f.err
}

func code(n uint64) Code {
	if n > uint64(CodeOverLimit) {
		return CodeUnknown
	}
	return Code(n)
}

func (s *Status) decode(b []byte) error {
	r := reader{b: b}
	for r.next() {
		switch field, wire, num := r.field, r.wire, r.num; {
		case field == fieldCode && wire == wireVarint:
			s.Code = code(num)
		case field == fieldCurrentLimit && wire == wireBytes:
			s.HasLimit = true
			if err := s.decodeLimit(r.val); err != nil {
				return err
			}
		case field == fieldLimitRemaining && wire == wireVarint:
			s.Remaining = uint32(num)
		case field == fieldDurationUntilReset && wire == wireBytes:
			s.HasReset = true
			if err := s.decodeDuration(r.val); err != nil {
				return err
			}
		}
	}
	return r.err
}

func (s *Status) decodeLimit(b []byte) error {
	r := reader{b: b}
	for r.next() {
		switch field, wire, num := r.field, r.wire, r.num; {
		case field == fieldRequestsPerUnit && wire == wireVarint:
			s.RequestsPerUnit = uint32(num)
		case field == fieldUnit && wire == wireVarint:
			s.Unit = Unit(num)
		}
	}
	return r.err
}

// decodeDuration reads a google.protobuf.Duration; fields absent from
// this occurrence keep the values of an earlier one (protobuf merges
// repeated occurrences of a message field).
func (s *Status) decodeDuration(b []byte) error {
	sec, nanos := s.UntilReset/1e9, s.UntilReset%1e9
	r := reader{b: b}
	for r.next() {
		switch field, wire, num := r.field, r.wire, r.num; {
		case field == fieldSeconds && wire == wireVarint:
			sec = int64(num)
		case field == fieldNanos && wire == wireVarint:
			nanos = min(max(int64(int32(num)), -999_999_999), 999_999_999)
		}
	}
	if r.err != nil {
		return r.err
	}
	const maxSec = (1<<63 - 1) / 1_000_000_000
	switch {
	case sec < 0 || sec == 0 && nanos < 0:
		s.UntilReset = 0
	case sec >= maxSec:
		s.UntilReset = 1<<63 - 1
	default:
		s.UntilReset = max(sec*1e9+nanos, 0)
	}
	return nil
}

// reader walks the fields of one message: after next reports true, the
// field's number, wire type and value (val for wireBytes, num for
// wireVarint) are in its fields; err holds what stopped it, nil at the end.
type reader struct {
	b           []byte
	field, wire int
	val         []byte
	num         uint64
	err         error
}

func (r *reader) next() bool {
	if len(r.b) == 0 || r.err != nil {
		return false
	}
	r.field, r.wire, r.val, r.num, r.b, r.err = next(r.b)
	return r.err == nil
}

// next reads one field of b: its number and wire type, then for wireBytes
// the payload in val, for wireVarint the value in num; fixed-size fields
// and groups are skipped. rest is what follows the field.
func next(b []byte) (field, wire int, val []byte, num uint64, rest []byte, err error) {
	tag, n := varint(b)
	if n <= 0 {
		return 0, 0, nil, 0, nil, errVarint(n)
	}
	b = b[n:]
	if tag>>3 == 0 || tag>>3 > 1<<29-1 {
		return 0, 0, nil, 0, nil, ErrMalformed
	}
	field, wire = int(tag>>3), int(tag&7)
	switch wire {
	case wireVarint:
		num, n = varint(b)
		if n <= 0 {
			return 0, 0, nil, 0, nil, errVarint(n)
		}
		return field, wire, nil, num, b[n:], nil
	case wireFixed64:
		if len(b) < 8 {
			return 0, 0, nil, 0, nil, ErrTruncated
		}
		return field, wire, nil, 0, b[8:], nil
	case wireFixed32:
		if len(b) < 4 {
			return 0, 0, nil, 0, nil, ErrTruncated
		}
		return field, wire, nil, 0, b[4:], nil
	case wireBytes:
		l, n := varint(b)
		if n <= 0 {
			return 0, 0, nil, 0, nil, errVarint(n)
		}
		b = b[n:]
		if l > uint64(len(b)) {
			return 0, 0, nil, 0, nil, ErrTruncated
		}
		return field, wire, b[:l], 0, b[l:], nil
	case wireStartGroup:
		rest, err := skipGroup(b, field)
		return field, wire, nil, 0, rest, err
	}
	return 0, 0, nil, 0, nil, ErrMalformed // an end group without a start, or wire types 6, 7
}

// skipGroup skips a (deprecated, proto2) group up to the end tag of field,
// nested groups included, without recursion.
func skipGroup(b []byte, field int) ([]byte, error) {
	var stack [8]int
	open := stack[:0]
	open = append(open, field)
	for len(open) > 0 {
		tag, n := varint(b)
		if n <= 0 {
			return nil, errVarint(n)
		}
		switch tag & 7 {
		case wireStartGroup:
			if len(open) == cap(stack) {
				return nil, ErrTooDeep
			}
			open = append(open, int(tag>>3))
			b = b[n:]
		case wireEndGroup:
			if int(tag>>3) != open[len(open)-1] {
				return nil, ErrMalformed
			}
			open = open[:len(open)-1]
			b = b[n:]
		default:
			_, _, _, _, rest, err := next(b)
			if err != nil {
				return nil, err
			}
			b = rest
		}
	}
	return b, nil
}

// varint reads a base-128 varint: the value and its length, 0 if b ends
// first, -1 if it runs over 10 bytes.
func varint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b); i++ {
		if i == 10 {
			return 0, -1
		}
		c := b[i]
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

func errVarint(n int) error {
	if n == 0 {
		return ErrTruncated
	}
	return ErrMalformed
}

// Service and method of the protocol, as a gRPC call names them.
const (
	ServiceName = "envoy.service.ratelimit.v3.RateLimitService"
	MethodName  = "ShouldRateLimit"
)

// AppendGrpcService appends a serialized envoy.config.core.v3.GrpcService
// naming an Envoy cluster (envoy_grpc.cluster_name) and, when not empty,
// the :authority of its calls (envoy_grpc.authority): the first argument
// of proxy_grpc_call. Envoy also takes a bare cluster name there, but only
// when the bytes fail to parse as a GrpcService, which some names do not.
func AppendGrpcService(dst []byte, cluster, authority string) []byte {
	const fieldEnvoyGrpc, fieldClusterName, fieldAuthority = 1, 1, 2
	n := 1 + varintLen(uint64(len(cluster))) + len(cluster)
	if authority != "" {
		n += 1 + varintLen(uint64(len(authority))) + len(authority)
	}
	dst = appendTag(dst, fieldEnvoyGrpc, wireBytes)
	dst = appendVarint(dst, uint64(n))
	dst = appendString(dst, fieldClusterName, cluster)
	if authority != "" {
		dst = appendString(dst, fieldAuthority, authority)
	}
	return dst
}
