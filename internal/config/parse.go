package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// Parse validates a plugin configuration and returns it with every default
// filled in. On any problem it returns a *Error that lists all of them.
func Parse(data []byte) (*Config, error) {
	p := &parser{}
	cfg := p.parse(data)
	if len(p.problems) > 0 {
		return nil, &Error{Problems: p.problems}
	}
	return cfg, nil
}

type parser struct {
	problems []Problem
}

func (p *parser) addf(path, format string, args ...any) {
	p.problems = append(p.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (p *parser) parse(data []byte) *Config {
	if len(strings.TrimSpace(string(data))) == 0 {
		p.addf("", "configuration is empty: at least one rule is required")
		return nil
	}
	if !gjson.ValidBytes(data) {
		p.addf("", "configuration is not valid JSON")
		return nil
	}
	root := gjson.ParseBytes(data)
	obj := p.object(root, "", "rules", "trusted_hops", "status", "body", "content_type",
		"headers", "failure_mode", "slots", "rate_limit_service")
	if obj == nil {
		return nil
	}
	cfg := &Config{
		Status:      DefaultStatus,
		Body:        DefaultBody,
		ContentType: DefaultContentType,
		Slots:       DefaultSlots,
	}
	cfg.Rules = p.rules(obj)
	if v, ok := obj.int("trusted_hops", 0, MaxTrustedHops); ok {
		cfg.TrustedHops = int(v)
	}
	if v, ok := obj.int("status", 400, 599); ok {
		cfg.Status = int(v)
	}
	// An empty body means the default document, as in the documented
	// example configuration.
	if body, ok := obj.str("body"); ok && body != "" {
		if len(body) > MaxBodyBytes {
			p.addf("body", "must be at most %d bytes, got %d", MaxBodyBytes, len(body))
		}
		cfg.Body, cfg.ContentType = body, TextContentType
	}
	if ct, ok := obj.str("content_type"); ok {
		if ct == "" || !headerValueOK(ct) {
			p.addf("content_type", "must be a non-empty header value without control characters")
		}
		cfg.ContentType = ct
	}
	if v, ok := obj.enum("headers", "draft", "legacy", "both", "none"); ok {
		cfg.Headers = HeaderMode(v)
	}
	if v, ok := obj.enum("failure_mode", "allow", "deny"); ok {
		cfg.FailureMode = FailureMode(v)
	}
	if v, ok := obj.int("slots", MinSlots, MaxSlots); ok {
		cfg.Slots = int(v)
	}
	cfg.RateLimitService = p.rateLimitService(obj, cfg.Rules)
	return cfg
}

func (p *parser) rules(obj *object) []Rule {
	v, ok := obj.fields["rules"]
	if !ok {
		p.addf("rules", "is required: at least one rule")
		return nil
	}
	if !v.IsArray() {
		p.addf("rules", "must be an array of rules, got %s", kind(v))
		return nil
	}
	items := v.Array()
	switch {
	case len(items) == 0:
		p.addf("rules", "must hold at least one rule")
	case len(items) > MaxRules:
		p.addf("rules", "must hold at most %d rules, got %d", MaxRules, len(items))
	}
	rules := make([]Rule, 0, len(items))
	names := make(map[string]int, len(items))
	for i, item := range items {
		path := fmt.Sprintf("rules[%d]", i)
		r, ok := p.rule(item, path)
		if !ok {
			continue
		}
		if first, dup := names[r.Name]; dup && r.Name != "" {
			p.addf(path+".name", "%q is already the name of rules[%d]", r.Name, first)
		}
		names[r.Name] = i
		rules = append(rules, r)
	}
	return rules
}

func (p *parser) rule(v gjson.Result, path string) (Rule, bool) {
	obj := p.object(v, path, "name", "match", "key", "capacity", "refill", "interval", "cost", "shadow", "global")
	if obj == nil {
		return Rule{}, false
	}
	if g, ok := obj.fields["global"]; ok {
		return p.globalRule(obj, g, path), true
	}
	r := p.ruleCommon(obj, path)
	capOK := false
	if n, ok := obj.requiredInt("capacity", 1, math.MaxInt64); ok {
		r.Capacity, capOK = n, true
	}
	if n, ok := obj.requiredInt("refill", 1, math.MaxInt64); ok {
		r.Refill = n
	}
	if s, ok := obj.required("interval").str(); ok {
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			p.addf(join(path, "interval"), "%q is not a duration like \"1s\" or \"1m30s\"", s)
		case d < MinInterval:
			p.addf(join(path, "interval"), "must be at least %v, got %v", MinInterval, d)
		}
		r.Interval = d
	}
	if capOK {
		if n, ok := obj.int("cost", 1, r.Capacity); ok {
			r.Cost = n
		}
	} else if n, ok := obj.int("cost", 1, math.MaxInt64); ok {
		r.Cost = n
	}
	return r, true
}

// ruleCommon reads the fields local and global rules share: name, match,
// key and shadow. Cost is set to its default, 1.
func (p *parser) ruleCommon(obj *object, path string) Rule {
	r := Rule{Cost: 1}
	if name, ok := obj.required("name").str(); ok {
		if err := checkName(name); err != "" {
			p.addf(join(path, "name"), "%s", err)
		}
		r.Name = name
	}
	if m, ok := obj.fields["match"]; ok {
		r.Match = p.match(m, join(path, "match"))
	}
	r.Key = p.key(obj, path)
	if b, ok := obj.bool("shadow"); ok {
		r.Shadow = b
	}
	return r
}

func (p *parser) match(v gjson.Result, path string) Match {
	obj := p.object(v, path, "path_prefix", "methods", "hosts")
	if obj == nil {
		return Match{}
	}
	var m Match
	if s, ok := obj.str("path_prefix"); ok {
		if !strings.HasPrefix(s, "/") {
			p.addf(join(path, "path_prefix"), "must start with \"/\", got %q", s)
		}
		m.PathPrefix = s
	}
	for _, it := range obj.strings("methods", "must hold at least one method (leave it out to match any)") {
		if !isToken(it.s) {
			p.addf(it.path, "%q is not an HTTP method", it.s)
			continue
		}
		m.Methods = append(m.Methods, strings.ToUpper(it.s))
	}
	for _, it := range obj.strings("hosts", "must hold at least one host (leave it out to match any)") {
		h := strings.ToLower(it.s)
		if !validHost(h) {
			p.addf(it.path, "%q is not a host name (no port, no scheme; \"*.\" may start it)", it.s)
			continue
		}
		m.Hosts = append(m.Hosts, h)
	}
	return m
}

func (p *parser) key(obj *object, path string) []KeyPart {
	if !obj.has("key") {
		p.addf(join(path, "key"), "is required: one or more of remote_address, header:<name>, path, method, host")
		return nil
	}
	parts := obj.strings("key", "must hold at least one part")
	if len(parts) > MaxKeyParts {
		p.addf(join(path, "key"), "must hold at most %d parts, got %d", MaxKeyParts, len(parts))
	}
	var key []KeyPart
	seen := make(map[KeyPart]bool, len(parts))
	for _, it := range parts {
		kp, err := parseKeyPart(it.s)
		if err != "" {
			p.addf(it.path, "%s", err)
			continue
		}
		if seen[kp] {
			p.addf(it.path, "%q appears twice", it.s)
			continue
		}
		seen[kp] = true
		key = append(key, kp)
	}
	return key
}

func parseKeyPart(s string) (KeyPart, string) {
	switch s {
	case "remote_address":
		return KeyPart{Kind: KeyRemoteAddress}, ""
	case "path":
		return KeyPart{Kind: KeyPath}, ""
	case "method":
		return KeyPart{Kind: KeyMethod}, ""
	case "host":
		return KeyPart{Kind: KeyHost}, ""
	}
	if name, ok := strings.CutPrefix(s, "header:"); ok {
		if !isToken(name) {
			return KeyPart{}, fmt.Sprintf("%q: header name %q is not a valid HTTP header name", s, name)
		}
		return KeyPart{Kind: KeyHeader, Header: strings.ToLower(name)}, ""
	}
	return KeyPart{}, fmt.Sprintf("%q is not a key part: use remote_address, header:<name>, path, method or host", s)
}

func checkName(name string) string {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Sprintf("must be 1 to %d characters, got %d", MaxNameLen, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(isAlnum(c) || c == '-' || c == '_' || c == '.') {
			return fmt.Sprintf("%q may hold only letters, digits, '-', '_' and '.'", name)
		}
	}
	return ""
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isToken reports whether s is an RFC 9110 token (header names, methods).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

func validHost(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(isAlnum(c) || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func headerValueOK(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func kind(v gjson.Result) string {
	switch v.Type {
	case gjson.String:
		return "a string"
	case gjson.Number:
		return "a number"
	case gjson.True, gjson.False:
		return "a boolean"
	case gjson.Null:
		return "null"
	}
	if v.IsArray() {
		return "an array"
	}
	return "an object"
}

// object is a JSON object whose fields have been checked against the ones a
// place in the schema allows. Its typed getters report problems themselves
// and return ok=false for absent or bad fields.
type object struct {
	p      *parser
	path   string
	fields map[string]gjson.Result
}

func (p *parser) object(v gjson.Result, path string, allowed ...string) *object {
	if !v.IsObject() {
		if path == "" {
			p.addf(path, "configuration must be a JSON object, got %s", kind(v))
		} else {
			p.addf(path, "must be a JSON object, got %s", kind(v))
		}
		return nil
	}
	o := &object{p: p, path: path, fields: make(map[string]gjson.Result)}
	v.ForEach(func(k, val gjson.Result) bool {
		name := k.String()
		switch {
		case !contains(allowed, name):
			p.addf(join(path, name), "unknown field (allowed here: %s)", strings.Join(allowed, ", "))
		case o.has(name):
			p.addf(join(path, name), "appears more than once")
		default:
			o.fields[name] = val
		}
		return true
	})
	return o
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (o *object) has(name string) bool {
	_, ok := o.fields[name]
	return ok
}

// field is one named value of an object, for typed reads.
type field struct {
	o       *object
	name    string
	v       gjson.Result
	present bool
}

func (o *object) required(name string) field {
	v, ok := o.fields[name]
	if !ok {
		o.p.addf(join(o.path, name), "is required")
	}
	return field{o: o, name: name, v: v, present: ok}
}

func (o *object) optional(name string) field {
	v, ok := o.fields[name]
	return field{o: o, name: name, v: v, present: ok}
}

func (f field) path() string { return join(f.o.path, f.name) }

func (f field) str() (string, bool) {
	if !f.present {
		return "", false
	}
	if f.v.Type != gjson.String {
		f.o.p.addf(f.path(), "must be a string, got %s", kind(f.v))
		return "", false
	}
	return f.v.Str, true
}

func (f field) int(lo, hi int64) (int64, bool) {
	if !f.present {
		return 0, false
	}
	if f.v.Type != gjson.Number {
		f.o.p.addf(f.path(), "must be an integer, got %s", kind(f.v))
		return 0, false
	}
	n, err := strconv.ParseInt(f.v.Raw, 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			f.o.p.addf(f.path(), "must be at most %d, got %s", hi, f.v.Raw)
		} else {
			f.o.p.addf(f.path(), "must be an integer, got %s", f.v.Raw)
		}
		return 0, false
	}
	if n < lo && hi == math.MaxInt64 {
		f.o.p.addf(f.path(), "must be at least %d, got %d", lo, n)
		return 0, false
	}
	if n < lo || n > hi {
		f.o.p.addf(f.path(), "must be between %d and %d, got %d", lo, hi, n)
		return 0, false
	}
	return n, true
}

func (o *object) str(name string) (string, bool) { return o.optional(name).str() }

func (o *object) int(name string, lo, hi int64) (int64, bool) {
	return o.optional(name).int(lo, hi)
}

func (o *object) requiredInt(name string, lo, hi int64) (int64, bool) {
	return o.required(name).int(lo, hi)
}

func (f field) bool() (bool, bool) {
	if !f.present {
		return false, false
	}
	if f.v.Type != gjson.True && f.v.Type != gjson.False {
		f.o.p.addf(f.path(), "must be true or false, got %s", kind(f.v))
		return false, false
	}
	return f.v.Bool(), true
}

func (o *object) bool(name string) (bool, bool) { return o.optional(name).bool() }

// enum reads a string field that must be one of values and returns its index.
func (o *object) enum(name string, values ...string) (int, bool) {
	s, ok := o.str(name)
	if !ok {
		return 0, false
	}
	for i, v := range values {
		if s == v {
			return i, true
		}
	}
	o.p.addf(join(o.path, name), "%q is not one of %s", s, strings.Join(values, ", "))
	return 0, false
}

// item is one string of an array, with its own field path.
type item struct {
	path string
	s    string
}

// strings reads an optional array of strings. An empty array is reported
// with ifEmpty; elements that are not strings are reported and left out,
// and the others keep the path of their place in the array.
func (o *object) strings(name, ifEmpty string) []item {
	v, ok := o.fields[name]
	if !ok {
		return nil
	}
	path := join(o.path, name)
	if !v.IsArray() {
		o.p.addf(path, "must be an array of strings, got %s", kind(v))
		return nil
	}
	elems := v.Array()
	if len(elems) == 0 {
		o.p.addf(path, "%s", ifEmpty)
	}
	out := make([]item, 0, len(elems))
	for i, e := range elems {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		if e.Type != gjson.String {
			o.p.addf(ipath, "must be a string, got %s", kind(e))
			continue
		}
		out = append(out, item{path: ipath, s: e.Str})
	}
	return out
}
