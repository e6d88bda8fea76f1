package config

import "time"

// Global makes a rule global: the rate limit service (RLS) decides it, with
// the fleet-wide budget of RequestsPerUnit requests per fixed window of one
// Unit. The filter does not enforce the numbers itself; they are validated
// here and the generator writes the RLS configuration from them.
type Global struct {
	RequestsPerUnit int64 // >= 1
	Unit            Unit
}

// Unit is the window of a global limit. Its values are those of the RLS
// protocol's RateLimitResponse.RateLimit.Unit enum.
type Unit uint8

const (
	UnitSecond Unit = 1
	UnitMinute Unit = 2
	UnitHour   Unit = 3
	UnitDay    Unit = 4
)

var unitNames = [...]string{UnitSecond: "second", UnitMinute: "minute", UnitHour: "hour", UnitDay: "day"}

// String returns the unit as written in the configuration (and in
// envoyproxy/ratelimit's configuration, upper-cased there).
func (u Unit) String() string {
	if u >= UnitSecond && u <= UnitDay {
		return unitNames[u]
	}
	return "unknown"
}

// Duration returns the length of one window of u, 0 for an unknown unit.
func (u Unit) Duration() time.Duration {
	switch u {
	case UnitSecond:
		return time.Second
	case UnitMinute:
		return time.Minute
	case UnitHour:
		return time.Hour
	case UnitDay:
		return 24 * time.Hour
	}
	return 0
}

// RateLimitService is where and how global rules are decided. Parse sets it
// when, and only when, at least one rule is global, with every default
// filled in.
type RateLimitService struct {
	Cluster     string        // the Envoy cluster of the RLS (gRPC over HTTP/2)
	Authority   string        // :authority of the call; defaults to Cluster
	Domain      string        // the RLS domain of every descriptor sent
	Timeout     time.Duration // of one ShouldRateLimit call, MinRLSTimeout..MaxRLSTimeout
	FailureMode FailureMode   // when the RLS errors, times out or cannot be reached
	CacheSlots  int           // bound of the denial cache, in entries, like Config.Slots
}

// Defaults and bounds of the rate_limit_service block.
//
// DefaultRLSTimeout is 100ms where Envoy's own ratelimit filter uses 20ms:
// the call from a wasm module goes through the VM, the host's gRPC client
// and back into the VM for the answer (several host calls and two guest
// entries more than the native filter), and the RLS itself makes a Redis
// round trip. 100ms stays far below what a user notices, yet keeps a
// healthy RLS on a busy node (p99 in single milliseconds) from falling into
// the failure mode on a scheduling hiccup.
const (
	DefaultRLSTimeout = 100 * time.Millisecond
	MinRLSTimeout     = time.Millisecond
	MaxRLSTimeout     = 60 * time.Second
	MaxClusterLen     = 255
)

// Descriptor entries. Every global rule sends one descriptor: the entry
// (DescriptorRuleKey, rule name), then one entry per key part whose key is
// the part as written in the configuration (KeyPart.String) and whose value
// is the part's value in the request, or MissingValue when the request has
// no such value (or an empty one): RLS descriptor values must be non-empty.
// Like the local tier, every request without, say, an API key therefore
// shares one budget instead of escaping the limit.
const (
	DescriptorRuleKey = "rule"
	MissingValue      = "-"
)

// DescriptorKeys returns the entry keys of the descriptor a global rule
// sends, in order: DescriptorRuleKey, then each key part as written. The
// filter builds its descriptors and the generator the matching RLS
// configuration from this one list.
func (r *Rule) DescriptorKeys() []string {
	keys := make([]string, 0, 1+len(r.Key))
	keys = append(keys, DescriptorRuleKey)
	for _, kp := range r.Key {
		keys = append(keys, kp.String())
	}
	return keys
}
