package envoy

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/config"
)

// Validate checks a Spec built or edited in code with the same rules
// ParseSpec applies, and returns a *Error listing every problem, or nil.
func (s *Spec) Validate() error {
	ps := &problems{}
	s.check(ps)
	return ps.err()
}

// check reports what is out of range or inconsistent in s. It skips paths
// that already have a problem (see problems.checkf). It returns the filter
// block as the filter's parser read it, nil when that is bad.
func (s *Spec) check(ps *problems) *config.Config {
	checkBindAddress(ps, "listen", s.Listen)
	checkBindAddress(ps, "admin", s.Admin)
	if s.Listen.Port != 0 && s.Listen.Port == s.Admin.Port && sameHost(s.Listen.Host, s.Admin.Host) {
		ps.checkf("admin", "%s collides with the listen address %s", s.Admin, s.Listen)
	}
	if s.Concurrency < 0 {
		ps.checkf("concurrency", "must not be negative, got %d", s.Concurrency)
	}
	if s.Wasm == "" {
		ps.checkf("wasm", "is required: the path of the filter's .wasm module")
	}
	checkFailurePolicy(ps, s.FailurePolicy)
	cfg := checkFilter(ps, s.Filter)
	if len(s.Routes) == 0 {
		ps.checkf("routes", "is required: at least one route")
	}
	names := map[string]int{}
	prefixes := map[string]int{}
	for i := range s.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		r := &s.Routes[i]
		checkRoute(ps, path, r)
		if first, dup := names[r.Name]; dup && r.Name != "" {
			ps.checkf(path+".name", "%q is already the name of routes[%d]", r.Name, first)
		} else {
			names[r.Name] = i
		}
		if first, dup := prefixes[r.Prefix]; dup && r.Prefix != "" {
			ps.checkf(path+".prefix", "%q is already the prefix of routes[%d]", r.Prefix, first)
		} else {
			prefixes[r.Prefix] = i
		}
	}
	checkRateLimitService(ps, s.RateLimitService, cfg, names)
	return cfg
}

// checkRateLimitService checks the rate_limit_service block against the
// filter (cfg, nil when the filter block is bad): required exactly when the
// filter has global rules, whose rate_limit_service.cluster then names the
// bootstrap cluster, so it must be a plain name no route uses.
func checkRateLimitService(ps *problems, rls *RateLimitService, cfg *config.Config, routes map[string]int) {
	if cfg != nil {
		switch fc := cfg.RateLimitService; {
		case fc == nil && rls != nil:
			ps.checkf("rate_limit_service", "the filter has no global rule: remove this block, or give a rule a global limit")
		case fc != nil && rls == nil:
			ps.checkf("rate_limit_service", "is required: the filter has global rules; list the gRPC address of the rate limit service, "+
				"like backends: [127.0.0.1:8081]")
		case fc != nil:
			if msg := checkName(fc.Cluster); msg != "" {
				ps.checkf("filter.rate_limit_service.cluster", "names the rate limit service's cluster in the bootstrap: %s", msg)
			} else if i, dup := routes[fc.Cluster]; dup {
				ps.checkf("filter.rate_limit_service.cluster", "%q is already the cluster of routes[%d]", fc.Cluster, i)
			}
		}
	}
	if rls == nil {
		return
	}
	if len(rls.Backends) == 0 {
		ps.checkf("rate_limit_service.backends", "must list at least one host:port (the service's gRPC port)")
	}
	seen := map[Address]int{}
	for i, a := range rls.Backends {
		path := fmt.Sprintf("rate_limit_service.backends[%d]", i)
		if msg := checkBackend(Backend{Host: a.Host, Port: a.Port}); msg != "" {
			ps.checkf(path, "%s", msg)
		} else if first, dup := seen[a]; dup {
			ps.checkf(path, "%s is already backends[%d]", a, first)
		} else {
			seen[a] = i
		}
	}
}

func checkFailurePolicy(ps *problems, p FailurePolicy) {
	switch p {
	case FailClosed, FailOpen, FailReload:
	default:
		ps.checkf("failure_policy", "%q is not one of %s, %s, %s", p, FailClosed, FailOpen, FailReload)
	}
}

// checkFilter runs the filter's own configuration parser over the filter
// block, so the generator accepts exactly what the filter accepts.
// It returns the parsed configuration, or nil when the block is bad.
func checkFilter(ps *problems, filter []byte) *config.Config {
	if len(filter) == 0 {
		ps.checkf("filter", "is required: the filter configuration (rules, ...)")
		return nil
	}
	cfg, err := config.Parse(filter)
	if err == nil {
		return cfg
	}
	var ce *config.Error
	if !errors.As(err, &ce) {
		ps.checkf("filter", "%v", err)
		return nil
	}
	for _, p := range ce.Problems {
		ps.checkf(join("filter", p.Path), "%s", p.Message)
	}
	return nil
}

// checkBindAddress checks an address Envoy binds to: an IP literal and a
// port.
func checkBindAddress(ps *problems, path string, a Address) {
	switch {
	case a == Address{}:
		ps.checkf(path, "is required: ip:port, like 0.0.0.0:10000")
	case net.ParseIP(a.Host) == nil:
		ps.checkf(path, "host %q must be an IP address (Envoy binds to IPs; 0.0.0.0 is every interface)", a.Host)
	case a.Port < 1 || a.Port > 65535:
		ps.checkf(path, "port must be between 1 and 65535, got %d", a.Port)
	}
}

// sameHost reports whether two bind hosts can collide on one port.
func sameHost(a, b string) bool {
	ia, ib := net.ParseIP(a), net.ParseIP(b)
	if ia == nil || ib == nil {
		return a == b
	}
	return ia.Equal(ib) || ia.IsUnspecified() || ib.IsUnspecified()
}

func checkRoute(ps *problems, path string, r *Route) {
	if msg := checkName(r.Name); msg != "" {
		ps.checkf(path+".name", "%s", msg)
	}
	switch {
	case r.Prefix == "":
		ps.checkf(path+".prefix", "is required: a path prefix like /api")
	case !strings.HasPrefix(r.Prefix, "/"):
		ps.checkf(path+".prefix", "must start with \"/\", got %q", r.Prefix)
	case strings.ContainsAny(r.Prefix, "?#") || hasControl(r.Prefix):
		ps.checkf(path+".prefix", "%q must be a plain path: no query, fragment, spaces or control characters", r.Prefix)
	}
	checkBackends(ps, path, r)
	checkHealthCheck(ps, path+".health_check", r.HealthCheck)
	if r.Retries < 0 || r.Retries > MaxRetries {
		ps.checkf(path+".retries", "must be between 0 and %d, got %d", MaxRetries, r.Retries)
	}
	checkDuration(ps, path+".timeout", r.Timeout)
}

func checkBackends(ps *problems, path string, r *Route) {
	if len(r.Backends) == 0 {
		ps.checkf(path+".backends", "must list at least one backend (host:port or an http:// URL)")
		return
	}
	seen := map[Address]int{}
	ref := -1 // the first good backend, whose path the others must share
	for j, b := range r.Backends {
		bpath := fmt.Sprintf("%s.backends[%d]", path, j)
		if msg := checkBackend(b); msg != "" {
			ps.checkf(bpath, "%s", msg)
			continue
		}
		if first, dup := seen[b.Address()]; dup {
			ps.checkf(bpath, "%s is already backends[%d]", b.Address(), first)
			continue
		}
		seen[b.Address()] = j
		if ref < 0 {
			ref = j
			checkRewrite(ps, bpath, r.Prefix, b.Path)
		} else if b.Path != r.Backends[ref].Path {
			ps.checkf(bpath, "path %q differs from %q of backends[%d]: one route rewrites every request the same way, "+
				"so its backends must share one path", b.Path, r.Backends[ref].Path, ref)
		}
	}
}

// checkRewrite refuses a backend path that, put in place of the route prefix,
// would double or drop a slash.
func checkRewrite(ps *problems, path, prefix, rewrite string) {
	if rewrite == "" || prefix == "" || strings.HasSuffix(rewrite, "/") == strings.HasSuffix(prefix, "/") {
		return
	}
	req := prefix + "/x"
	if strings.HasSuffix(prefix, "/") {
		req = prefix + "x"
	}
	ps.checkf(path, "path %q in place of prefix %q would turn %s into %s: end both with \"/\" or neither",
		rewrite, prefix, req, rewrite+strings.TrimPrefix(req, prefix))
}

// checkBackend returns what is wrong with one backend, or "".
func checkBackend(b Backend) string {
	switch {
	case b.Host == "":
		return "host is required: host:port or an http:// URL"
	case net.ParseIP(b.Host) == nil && !isDNSName(b.Host):
		return fmt.Sprintf("host %q is neither an IP address nor a DNS name", b.Host)
	case b.Port < 1 || b.Port > 65535:
		return fmt.Sprintf("port must be between 1 and 65535, got %d", b.Port)
	case b.Path != "" && !strings.HasPrefix(b.Path, "/"):
		return fmt.Sprintf("path %q must start with \"/\"", b.Path)
	case hasControl(b.Path) || strings.ContainsAny(b.Path, "?#"):
		return fmt.Sprintf("path %q must be a plain path", b.Path)
	}
	return ""
}

func checkHealthCheck(ps *problems, path string, hc HealthCheck) {
	if !strings.HasPrefix(hc.Path, "/") || hasControl(hc.Path) {
		ps.checkf(path+".path", "must be a path starting with \"/\", got %q", hc.Path)
	}
	checkDuration(ps, path+".interval", hc.Interval)
	checkDuration(ps, path+".timeout", hc.Timeout)
	if hc.UnhealthyThreshold < 1 || hc.UnhealthyThreshold > 1000 {
		ps.checkf(path+".unhealthy_threshold", "must be between 1 and 1000, got %d", hc.UnhealthyThreshold)
	}
	if hc.HealthyThreshold < 1 || hc.HealthyThreshold > 1000 {
		ps.checkf(path+".healthy_threshold", "must be between 1 and 1000, got %d", hc.HealthyThreshold)
	}
}

// checkDuration requires a positive whole number of milliseconds: Envoy
// keeps these durations in milliseconds, and zero would mean "never" or
// "no timeout" to it.
func checkDuration(ps *problems, path string, d time.Duration) {
	switch {
	case d < time.Millisecond:
		ps.checkf(path, "must be at least 1ms, got %v", d)
	case d%time.Millisecond != 0:
		ps.checkf(path, "must be a whole number of milliseconds, got %v", d)
	case d > 24*time.Hour:
		ps.checkf(path, "must be at most 24h, got %v", d)
	}
}

// checkName checks a route name, which is also the cluster name and part of
// Envoy's stat names (where a '.' would split it).
func checkName(name string) string {
	if name == "" {
		return "is required: letters, digits, '-' and '_'"
	}
	if len(name) > 64 {
		return fmt.Sprintf("must be at most 64 characters, got %d", len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(isAlnum(c) || c == '-' || c == '_') {
			return fmt.Sprintf("%q may hold only letters, digits, '-' and '_'", name)
		}
	}
	return ""
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isDNSName accepts host names made of labels of letters, digits, '-' and
// '_' (which some service names carry), joined by dots.
func isDNSName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(isAlnum(c) || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return true
		}
	}
	return false
}
