// Package config parses and validates the tokengate plugin configuration, the
// JSON document Envoy hands the filter in proxy_on_configure.
//
// Validation is strict and complete: unknown fields, duplicate fields, wrong
// types and out-of-range values are all errors, every problem is reported at
// once, and each names its field path (rules[2].capacity). The same package
// validates the filter block of a gateway spec, so there is one source of
// truth for what the filter accepts.
package config

import (
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/bucket"
)

// Config is a validated plugin configuration. Parse fills every default, so
// the zero values of its fields never reach the limiter.
type Config struct {
	Rules       []Rule
	TrustedHops int         // X-Forwarded-For hops to trust; 0 uses the peer address
	Status      int         // status of a rejection, 400..599
	Body        string      // body of a rejection, never empty
	ContentType string      // content type of Body
	Headers     HeaderMode  // which rate-limit headers responses carry
	FailureMode FailureMode // what to do when shared data cannot be updated
	Slots       int         // tracked client keys per rule (the shared-data bound)
	// RateLimitService is set when, and only when, a rule is global.
	RateLimitService *RateLimitService
}

// Rule is one limit and the requests it governs: a token bucket in shared
// data (local), or, when Global is set, a descriptor decided by the rate
// limit service; a global rule has no Capacity, Refill nor Interval.
type Rule struct {
	Name     string
	Match    Match
	Key      []KeyPart
	Capacity int64         // tokens; the burst
	Refill   int64         // tokens added per Interval
	Interval time.Duration // >= 1ms
	Cost     int64         // tokens one request takes, 1..Capacity (global: the hits_addend, 1..RequestsPerUnit)
	Shadow   bool          // count and add headers, never reject
	Global   *Global       // nil for a local rule
}

// Limit returns the bucket parameters of r (zero for a global rule).
func (r *Rule) Limit() bucket.Limit {
	return bucket.Limit{Capacity: r.Capacity, Refill: r.Refill, Interval: int64(r.Interval)}
}

// Match selects requests; every condition given must hold, and a Match with
// no condition selects every request.
type Match struct {
	PathPrefix string   // compared with the path, query included
	Methods    []string // upper case
	Hosts      []string // lower case, no port; "*.example.com" matches subdomains
}

// KeyKind names one part of a client key.
type KeyKind uint8

const (
	KeyRemoteAddress KeyKind = iota + 1 // the client IP (see Config.TrustedHops)
	KeyHeader                           // a request header's value
	KeyPath                             // the request path without the query
	KeyMethod                           // the request method
	KeyHost                             // the :authority without port, lower case
)

// KeyPart is one part of a rule's client key. Header is set for KeyHeader,
// lower case.
type KeyPart struct {
	Kind   KeyKind
	Header string
}

// String returns the part as it is written in the configuration.
func (p KeyPart) String() string {
	switch p.Kind {
	case KeyRemoteAddress:
		return "remote_address"
	case KeyHeader:
		return "header:" + p.Header
	case KeyPath:
		return "path"
	case KeyMethod:
		return "method"
	case KeyHost:
		return "host"
	}
	return "unknown"
}

// HeaderMode selects the rate-limit response headers.
type HeaderMode uint8

const (
	HeadersDraft  HeaderMode = iota // RateLimit-Policy and RateLimit (IETF httpapi draft)
	HeadersLegacy                   // X-RateLimit-Limit, -Remaining, -Reset
	HeadersBoth                     // both sets
	HeadersNone                     // no rate-limit headers (Retry-After is still sent on rejection)
)

// Draft reports whether m includes the draft headers.
func (m HeaderMode) Draft() bool { return m == HeadersDraft || m == HeadersBoth }

// Legacy reports whether m includes the X-RateLimit-* headers.
func (m HeaderMode) Legacy() bool { return m == HeadersLegacy || m == HeadersBoth }

// FailureMode is the decision taken when a bucket cannot be updated (the
// compare-and-swap loop is exhausted or shared data fails).
type FailureMode uint8

const (
	FailAllow FailureMode = iota // admit the request
	FailDeny                     // reject it
)

// Defaults and bounds. They are part of the configuration contract.
const (
	DefaultStatus      = 429
	DefaultSlots       = 8192
	MinSlots           = 16
	MaxSlots           = 1 << 22
	MaxRules           = 64
	MaxKeyParts        = 8
	MaxTrustedHops     = 64
	MaxBodyBytes       = 64 << 10
	MaxNameLen         = 64
	MinInterval        = time.Millisecond
	DefaultContentType = "application/problem+json"
	TextContentType    = "text/plain; charset=utf-8"
)

// DefaultBody is the rejection body when none is configured: an RFC 9457
// problem document.
const DefaultBody = `{"type":"https://iana.org/assignments/http-problem-types#quota-exceeded",` +
	`"title":"Request cannot be satisfied as assigned quota has been exceeded","status":429}`

// Problem is one thing wrong with a configuration.
type Problem struct {
	Path    string // field path, like "rules[2].capacity"; empty for the whole document
	Message string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Error lists every problem found in a configuration. It is the one error
// format of every document the project reads strictly: the filter's
// configuration and, through package envoy, the gateway spec.
type Error struct {
	// What names the document in the message ("invalid <What>: ..."); ""
	// means "tokengate configuration".
	What     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("invalid ")
	if e.What == "" {
		b.WriteString("tokengate configuration")
	} else {
		b.WriteString(e.What)
	}
	b.WriteString(": ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}
