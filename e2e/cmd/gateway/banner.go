package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tokengate/tokengate/e2e/harness"
	"github.com/tokengate/tokengate/internal/config"
)

// banner says, once each, what runs where, the filter's rules, and commands to try, derived
// from the spec: the refusal status and rate-limit headers it configures, the rule a burst
// runs into, the paths its rules and routes match, and its backends.
func banner(g *harness.Gateway, filter *config.Config, specPath, logPath string) string {
	var b strings.Builder
	var bs []string
	for _, a := range g.Order {
		bs = append(bs, g.Names[a]+" "+a)
	}
	fmt.Fprintf(&b, "\ntokengate is running\n  %s\n", g.Dataplane.Describe())
	fmt.Fprintf(&b, "  listener   http://%s   (%d workers)\n", g.Listen, g.Spec.Concurrency)
	fmt.Fprintf(&b, "  admin      http://%s   (/ready, /stats, /stats/prometheus)\n", g.Admin)
	fmt.Fprintf(&b, "  backends   %s\n", strings.Join(bs, ", "))
	fmt.Fprintf(&b, "  bootstrap  %s\n  log        %s\n", g.Bootstrap, logPath)
	fmt.Fprintf(&b, "\nRules of %s, in order; a refusal is %d with Retry-After%s:\n", specPath, filter.Status, headerNames(filter.Headers))
	for _, r := range filter.Rules {
		fmt.Fprintf(&b, "  %s\n", describeRule(&r))
	}
	b.WriteString("\nTry:\n")
	for _, line := range tryLines(g, filter) {
		b.WriteString("  " + line + "\n")
	}
	b.WriteString("\nPress Ctrl-C to stop everything.\n")
	return b.String()
}

// headerNames names the rate-limit headers a response carries in mode m, " and ..." or "".
func headerNames(m config.HeaderMode) string {
	var h []string
	if m.Draft() {
		h = append(h, "RateLimit", "RateLimit-Policy")
	}
	if m.Legacy() {
		h = append(h, "X-RateLimit-Limit", "-Remaining", "-Reset")
	}
	if len(h) == 0 {
		return " (no rate-limit headers)"
	}
	return ", " + strings.Join(h, ", ")
}

// headerPatterns are grep patterns for the headers a refusal carries in mode m.
func headerPatterns(m config.HeaderMode) string {
	p := "-e '^HTTP' -e '^retry-after'"
	if m.Draft() {
		p += " -e '^ratelimit'"
	}
	if m.Legacy() {
		p += " -e '^x-ratelimit'"
	}
	return p
}

// describeRule is one line for a rule: name, scope, key and limit, and what a request without
// one of its header key parts shares.
func describeRule(r *config.Rule) string {
	scope := "every path"
	if p := r.Match.PathPrefix; p != "" {
		scope = p + "*"
	}
	if len(r.Match.Methods) > 0 {
		scope += " " + strings.Join(r.Match.Methods, ",")
	}
	if len(r.Match.Hosts) > 0 {
		scope += " on " + strings.Join(r.Match.Hosts, ",")
	}
	var keys []string
	var headers []string
	for _, k := range r.Key {
		keys = append(keys, k.String())
		if k.Kind == config.KeyHeader {
			headers = append(headers, k.Header)
		}
	}
	var limit string
	if r.Global != nil {
		limit = fmt.Sprintf("global: %d per %s, decided by the rate limit service", r.Global.RequestsPerUnit, r.Global.Unit)
	} else {
		limit = fmt.Sprintf("burst %d, then %d every %s", r.Capacity/r.Cost, r.Refill, r.Interval)
		if r.Cost > 1 {
			limit += fmt.Sprintf(" (tokens; a request costs %d)", r.Cost)
		}
	}
	line := fmt.Sprintf("%-14s %-12s per %-24s %s", r.Name, scope, strings.Join(keys, "+"), limit)
	if r.Shadow {
		line += "  [shadow: counts, never refuses]"
	}
	if len(headers) > 0 {
		line += fmt.Sprintf("  (requests without %s share one bucket)", strings.Join(headers, "/"))
	}
	return line
}

// tryLines are commands that show the spec's behaviour: a burst into its first refusing local
// rule, another client's own budget, round robin, the counters and a failover to watch.
func tryLines(g *harness.Gateway, filter *config.Config) []string {
	l := g.Listen
	var out []string
	demo := demoRule(filter)
	// Other clients come from other loopback addresses.
	iface := func(n int) string { return "--interface 127.0.0." + strconv.Itoa(n) + " " }
	out = append(out, "# --interface 127.0.0.N sends from another client IP: every 127.x.y.z is local on Linux;",
		"# elsewhere add the address first (macOS: sudo ifconfig lo0 alias 127.0.0.N)")
	if demo != nil {
		path := strings.TrimSuffix(demo.Match.PathPrefix, "/") + "/burst"
		hdr := ""
		for _, k := range demo.Key {
			if k.Kind == config.KeyHeader {
				hdr += "-H '" + k.Header + ": demo' "
			}
		}
		n := demo.Capacity / demo.Cost
		out = append(out,
			fmt.Sprintf("# %s: a burst of %d, then %d with Retry-After%s", demo.Name, n, filter.Status, headerNames(filter.Headers)),
			fmt.Sprintf("for i in $(seq %d); do curl -s -o /dev/null -w '%%{http_code}\\n' %shttp://%s%s; done", n+2, hdr, l, path),
			fmt.Sprintf("curl -si %shttp://%s%s | grep -i %s", hdr, l, path, headerPatterns(filter.Headers)))
		if slices.ContainsFunc(demo.Key, func(k config.KeyPart) bool { return k.Kind == config.KeyRemoteAddress }) {
			out = append(out,
				fmt.Sprintf("# another client IP has its own %s budget", demo.Name),
				fmt.Sprintf("curl -s -o /dev/null -w '%%{http_code}\\n' %s%shttp://%s%s", iface(2), hdr, l, strings.TrimSuffix(path, "burst")+"other"))
		}
	} else {
		out = append(out, "# no local rule refuses requests (shadow or global rules only)")
	}
	if len(g.Order) > 0 {
		b1 := g.Order[0]
		path := strings.TrimSuffix(routePrefix(g, b1), "/")
		out = append(out,
			"# round robin: three requests on one connection, one per backend (see x-served-by)",
			fmt.Sprintf("curl -s -D- -o /dev/null %s'http://%s%s/rr/[1-3]' | grep -i -e '^HTTP' -e '^x-served-by'", iface(3), l, path),
			"# counters: decisions per rule, upstream requests, healthy backends",
			fmt.Sprintf("curl -s http://%s/stats | grep -e tokengate -e upstream_rq_total -e membership_healthy", g.Admin),
			fmt.Sprintf("# failover: fail %s's health check, watch traffic leave it, restore it, watch it come back", g.Names[b1]),
			fmt.Sprintf("curl -s -X POST 'http://%s/admin/health?fail=1'", harness.Dialable(b1)),
			fmt.Sprintf("for i in $(seq 6); do curl -s -D- -o /dev/null %shttp://%s%s/watch | grep -i '^x-served-by'; sleep 2; done", iface(4), l, path),
			fmt.Sprintf("curl -s -X POST 'http://%s/admin/health?fail=0'", harness.Dialable(b1)),
			fmt.Sprintf("for i in $(seq 6); do curl -s -D- -o /dev/null %shttp://%s%s/watch | grep -i '^x-served-by'; sleep 2; done", iface(4), l, path))
	}
	return out
}

// demoRule is the first local rule that refuses, nil when there is none.
func demoRule(filter *config.Config) *config.Rule {
	for i := range filter.Rules {
		if r := &filter.Rules[i]; !r.Shadow && r.Global == nil {
			return r
		}
	}
	return nil
}

// routePrefix is the prefix of the first route that has backend addr.
func routePrefix(g *harness.Gateway, addr string) string {
	for _, r := range g.Spec.Routes {
		for _, b := range r.Backends {
			if b.Address().String() == addr {
				return r.Prefix
			}
		}
	}
	return "/"
}
