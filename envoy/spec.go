// Package envoy turns a gateway spec (a small YAML or JSON document: listener,
// admin, wasm module, filter rules, routes with backends) into the
// configuration that runs tokengate: an Envoy bootstrap built from
// go-control-plane's typed messages, or an Istio WasmPlugin manifest. For
// global rules it also writes the rate limit service's side: the
// envoyproxy/ratelimit configuration (RateLimitConfig) and, for Istio, the
// Kubernetes manifests of that service and its Redis (RateLimitManifests).
//
// ParseSpec is strict: unknown fields, wrong types, bad durations and
// addresses, duplicate routes and a filter block that the filter itself would
// reject are all errors, reported together, each with its path
// (routes[1].backends[0]). Bootstrap validates every generated message,
// typed_config payloads included; BootstrapYAML and WasmPlugin give
// byte-for-byte deterministic output. The choices behind the generated
// configuration (route order, health checks, outlier detection, panic
// threshold) are explained in DESIGN.md.
//
// Nothing in this package is safe for concurrent mutation of a Spec, and
// nothing needs Envoy or a built .wasm.
package envoy

import (
	"fmt"
	"github.com/tokengate/tokengate/internal/config"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Spec is a parsed, validated gateway spec. ParseSpec fills every default,
// so a Spec it returns can be handed to Bootstrap or WasmPlugin as is.
// Callers may also build or edit a Spec in code (for example to put free
// ports into Listen and the backends); Bootstrap validates it again.
type Spec struct {
	Listen        Address       // where the gateway listens; Host is an IP literal
	Admin         Address       // Envoy admin (stats, ready); Host is an IP literal
	Concurrency   int           // Envoy worker threads (--concurrency); 0 leaves Envoy's default
	Wasm          string        // path of the .wasm module as written; see WasmPath
	Dir           string        // directory relative Wasm paths start from; "" means the working directory
	FailurePolicy FailurePolicy // what Envoy does when the filter's VM fails
	Filter        []byte        // the filter block as compact JSON, keys sorted
	Routes        []Route       // in spec order; Bootstrap orders the Envoy routes
	// RateLimitService is where the rate limit service of the filter's
	// global rules listens; nil when the filter has none (see RateLimitConfig).
	RateLimitService *RateLimitService
}

// RateLimitService is the gRPC address of a rate limit service speaking
// Envoy's protocol (envoyproxy/ratelimit, for one). The bootstrap gives it
// the cluster named by the filter block's rate_limit_service.cluster, over
// HTTP/2; the domain, the timeout and the failure mode are the filter
// block's too, so they are written once.
type RateLimitService struct {
	Backends []Address // at least one; IP literals or DNS names
}

// FailurePolicy is the wasm filter's failure_policy, spelled as Envoy spells it.
type FailurePolicy string

// The failure policies Envoy (>= 1.33) accepts. The zero value is not valid.
const (
	FailClosed FailurePolicy = "FAIL_CLOSED" // 503 for every request on a failed VM (Envoy's default)
	FailOpen   FailurePolicy = "FAIL_OPEN"   // skip the filter on a failed VM
	FailReload FailurePolicy = "FAIL_RELOAD" // restart the VM after a back-off, 503 until then
)

// Address is a host and TCP port.
type Address struct {
	Host string // IP literal or DNS name (for backends); no brackets
	Port uint32 // 1..65535
}

// String returns host:port, with brackets around an IPv6 host.
func (a Address) String() string {
	return net.JoinHostPort(a.Host, strconv.FormatUint(uint64(a.Port), 10))
}

// Route sends requests whose path starts with Prefix to Backends.
type Route struct {
	Name        string        // also the Envoy cluster name: letters, digits, '-', '_'
	Prefix      string        // path prefix, starts with "/"
	Backends    []Backend     // at least one; all share one Path
	HealthCheck HealthCheck   // active HTTP health check of every backend
	Retries     int           // retries on another backend after a failure; 0 disables
	Timeout     time.Duration // whole request, retries included; > 0
}

// Backend is one upstream endpoint of a route.
type Backend struct {
	Host string // IP literal or DNS name; no brackets
	Port uint32 // 1..65535
	// Path is the path prefix of a URL backend ("http://b:8080/v1" gives
	// "/v1"), "" for none. It replaces the route prefix in forwarded requests
	// (Envoy's prefix_rewrite).
	Path string
}

// Address returns the backend's host and port.
func (b Backend) Address() Address { return Address{Host: b.Host, Port: b.Port} }

// HealthCheck is an active HTTP health check. A host turns unhealthy after
// UnhealthyThreshold failed checks in a row and healthy again after
// HealthyThreshold passed ones. A check passes on a 200 response.
type HealthCheck struct {
	Path               string        // request path, starts with "/"
	Interval           time.Duration // between checks of one host, traffic or not
	Timeout            time.Duration // of one check
	UnhealthyThreshold int           // >= 1
	HealthyThreshold   int           // >= 1
}

// Defaults of the optional spec fields. DESIGN.md explains them.
const (
	DefaultHealthPath         = "/healthz"
	DefaultHealthInterval     = 5 * time.Second
	DefaultHealthTimeout      = 1 * time.Second
	DefaultUnhealthyThreshold = 2
	DefaultHealthyThreshold   = 1
	DefaultRetries            = 1
	DefaultTimeout            = 15 * time.Second
	DefaultFailurePolicy      = FailClosed
	MaxRetries                = 10
)

// DefaultHealthCheck returns the health check used when a route gives none.
func DefaultHealthCheck() HealthCheck {
	return HealthCheck{
		Path:               DefaultHealthPath,
		Interval:           DefaultHealthInterval,
		Timeout:            DefaultHealthTimeout,
		UnhealthyThreshold: DefaultUnhealthyThreshold,
		HealthyThreshold:   DefaultHealthyThreshold,
	}
}

// Warnings returns what a valid spec does that an operator should know
// before deploying it: an admin listener beyond loopback (Envoy's admin has
// no authentication, and it can stop the server or change its runtime).
func (s *Spec) Warnings() []string {
	var ws []string
	if ip := net.ParseIP(s.Admin.Host); ip != nil && !ip.IsLoopback() {
		ws = append(ws, fmt.Sprintf("admin %s listens beyond loopback: Envoy's admin has no authentication "+
			"(POST /quitquitquit stops the server, /runtime_modify changes it); keep it on 127.0.0.1 or ::1 "+
			"unless only trusted hosts can reach that address", s.Admin))
	}
	return ws
}

// WasmPath returns the absolute path of the wasm module: Wasm itself when it
// is absolute, else Wasm joined to Dir, else to the working directory.
func (s *Spec) WasmPath() (string, error) {
	if filepath.IsAbs(s.Wasm) {
		return filepath.Clean(s.Wasm), nil
	}
	p, err := filepath.Abs(filepath.Join(s.Dir, s.Wasm))
	if err != nil {
		return "", fmt.Errorf("wasm path %q: %w", s.Wasm, err)
	}
	return p, nil
}

// ParseSpecFile reads and parses the spec at path. A relative wasm path in it
// is taken relative to the spec file's directory, so the generated
// configuration does not depend on where the command ran.
func ParseSpecFile(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseSpec(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.Dir = filepath.Dir(path)
	return s, nil
}

// Problem is one thing wrong with a spec: a field path like
// "routes[1].backends[0]" (empty for the whole document) and a message. It
// is the filter configuration's type, so problems of the filter block pass
// through unchanged but for their "filter." prefix.
type Problem = config.Problem

// Error lists every problem found in a spec, ordered by path. It is the
// filter configuration's error type (one format for both), with What set to
// "gateway spec".
type Error = config.Error
