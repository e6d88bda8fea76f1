package config

import (
	"math"
	"time"

	"github.com/tidwall/gjson"
)

// globalRule reads a rule that has a "global" field: the RLS decides it, so
// the bucket fields are errors, and cost (the hits_addend) is bounded by the
// window's budget.
func (p *parser) globalRule(obj *object, g gjson.Result, path string) Rule {
	r := p.ruleCommon(obj, path)
	for _, f := range []string{"capacity", "refill", "interval"} {
		if obj.has(f) {
			p.addf(join(path, f), "must not be set on a global rule (the rate limit service decides it: see global)")
		}
	}
	// Set even when the block is bad, so the rule still counts as global
	// for the rate_limit_service check.
	glob := &Global{}
	r.Global = glob
	gobj := p.object(g, join(path, "global"), "requests_per_unit", "unit")
	if gobj == nil {
		return r
	}
	perUnitOK := false
	if n, ok := gobj.requiredInt("requests_per_unit", 1, math.MaxUint32); ok {
		glob.RequestsPerUnit, perUnitOK = n, true
	}
	if gobj.required("unit").present {
		if v, ok := gobj.enum("unit", "second", "minute", "hour", "day"); ok {
			glob.Unit = Unit(v + 1)
		}
	}
	hi := int64(math.MaxUint32)
	if perUnitOK {
		hi = glob.RequestsPerUnit
	}
	if n, ok := obj.int("cost", 1, hi); ok {
		r.Cost = n
	}
	return r
}

// rateLimitService reads the rate_limit_service block, which must be given
// exactly when some rule is global.
func (p *parser) rateLimitService(obj *object, rules []Rule) *RateLimitService {
	global := -1
	for i := range rules {
		if rules[i].Global != nil {
			global = i
			break
		}
	}
	v, given := obj.fields["rate_limit_service"]
	switch {
	case !given && global >= 0:
		p.addf("rate_limit_service", "is required: rule %q is global", rules[global].Name)
		return nil
	case !given:
		return nil
	case global < 0:
		p.addf("rate_limit_service", "is set but no rule is global (add \"global\" to a rule or remove this block)")
	}
	const path = "rate_limit_service"
	o := p.object(v, path, "cluster", "authority", "domain", "timeout", "failure_mode", "cache_slots")
	if o == nil {
		return nil
	}
	rls := &RateLimitService{Timeout: DefaultRLSTimeout, CacheSlots: DefaultSlots}
	if s, ok := o.required("cluster").str(); ok {
		if !validCluster(s) {
			p.addf(join(path, "cluster"), "must be 1 to %d printable characters without spaces, got %q", MaxClusterLen, s)
		}
		rls.Cluster = s
	}
	rls.Authority = rls.Cluster
	if s, ok := o.str("authority"); ok && s != "" {
		if !validCluster(s) {
			p.addf(join(path, "authority"), "must be a host name or host:port without spaces, got %q", s)
		}
		rls.Authority = s
	}
	if s, ok := o.required("domain").str(); ok {
		if !validCluster(s) {
			p.addf(join(path, "domain"), "must be 1 to %d printable characters without spaces, got %q", MaxClusterLen, s)
		}
		rls.Domain = s
	}
	if s, ok := o.str("timeout"); ok {
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			p.addf(join(path, "timeout"), "%q is not a duration like \"100ms\"", s)
		case d < MinRLSTimeout || d > MaxRLSTimeout:
			p.addf(join(path, "timeout"), "must be between %v and %v, got %v", MinRLSTimeout, MaxRLSTimeout, d)
		}
		rls.Timeout = d
	}
	if v, ok := o.enum("failure_mode", "allow", "deny"); ok {
		rls.FailureMode = FailureMode(v)
	}
	if v, ok := o.int("cache_slots", MinSlots, MaxSlots); ok {
		rls.CacheSlots = int(v)
	}
	return rls
}

// validCluster reports whether s can name an Envoy cluster, an RLS domain
// or an authority: printable ASCII without spaces, at most MaxClusterLen
// bytes. Istio's cluster names ("outbound|8081||ratelimit.ns.svc.cluster.local")
// pass.
func validCluster(s string) bool {
	if s == "" || len(s) > MaxClusterLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
