package envoy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// ParseSpec parses a gateway spec, YAML or JSON, and returns it validated,
// with every default filled in. On any problem it returns a *Error listing
// all of them, each with its path. A relative wasm path is resolved against
// the working directory (ParseSpecFile resolves it against the file's
// directory).
func ParseSpec(data []byte) (*Spec, error) {
	ps := &problems{}
	s := decodeSpec(data, ps)
	if s != nil {
		s.check(ps)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return s, nil
}

// The fields each place of the spec allows, in documentation order.
var (
	specFields   = []string{"listen", "admin", "concurrency", "wasm", "failure_policy", "filter", "routes"}
	routeFields  = []string{"name", "prefix", "backends", "health_check", "retries", "timeout"}
	healthFields = []string{"path", "interval", "timeout", "unhealthy_threshold", "healthy_threshold"}
)

// decodeSpec turns the document into a Spec, reporting wrong types, unknown
// fields and unparsable values. Range and consistency checks are left to
// Spec.check, which also runs on Specs built in code.
func decodeSpec(data []byte, ps *problems) *Spec {
	if len(bytes.TrimSpace(data)) == 0 {
		ps.addf("", "spec is empty")
		return nil
	}
	// Strict: a key given twice is an error, not "last one wins".
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
		ps.addf("", "not valid YAML or JSON: %s", strings.Join(strings.Fields(msg), " "))
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber() // keep integers exact, in the filter block too
	var doc any
	if err := dec.Decode(&doc); err != nil {
		ps.addf("", "not valid YAML or JSON: %v", err)
		return nil
	}
	o := ps.object("", doc, specFields...)
	if o == nil {
		return nil
	}
	s := &Spec{FailurePolicy: DefaultFailurePolicy}
	s.Listen, _ = o.address("listen")
	s.Admin, _ = o.address("admin")
	if n, ok := o.int("concurrency"); ok {
		if n < 1 || n > 1024 {
			ps.addf("concurrency", "must be between 1 and 1024, got %d (leave it out for Envoy's default)", n)
		}
		s.Concurrency = int(n)
	}
	s.Wasm, _ = o.str("wasm")
	if f, ok := o.str("failure_policy"); ok {
		s.FailurePolicy = FailurePolicy(f)
	}
	if v, ok := o.get("filter"); ok {
		s.Filter = ps.filterJSON(v)
	}
	if v, ok := o.get("routes"); ok {
		items, isList := v.([]any)
		if !isList {
			ps.addf("routes", "must be an array of routes, got %s", kind(v))
		}
		for i, item := range items {
			s.Routes = append(s.Routes, ps.route(fmt.Sprintf("routes[%d]", i), item))
		}
	}
	return s
}

// filterJSON re-encodes the filter block as compact JSON with sorted keys.
func (ps *problems) filterJSON(v any) []byte {
	if _, ok := v.(map[string]any); !ok {
		ps.addf("filter", "must be an object (the filter configuration), got %s", kind(v))
		return nil
	}
	b, err := compactJSON(v)
	if err != nil {
		ps.addf("filter", "cannot be encoded as JSON: %v", err)
		return nil
	}
	return b
}

// compactJSON encodes v without HTML escaping and without a final newline.
func compactJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// route decodes one element of routes. A route that is not an object still
// yields a zero Route, so the indexes of the others stay right.
func (ps *problems) route(path string, v any) Route {
	r := Route{HealthCheck: DefaultHealthCheck(), Retries: DefaultRetries, Timeout: DefaultTimeout}
	o := ps.object(path, v, routeFields...)
	if o == nil {
		return r
	}
	r.Name, _ = o.str("name")
	r.Prefix, _ = o.str("prefix")
	if v, ok := o.get("backends"); ok {
		items, isList := v.([]any)
		if !isList {
			ps.addf(path+".backends", "must be an array of backends (host:port or http:// URLs), got %s", kind(v))
		}
		for i, item := range items {
			bpath := fmt.Sprintf("%s.backends[%d]", path, i)
			var b Backend
			if s, isString := item.(string); !isString {
				ps.addf(bpath, "must be a string (host:port or an http:// URL), got %s", kind(item))
			} else if parsed, err := parseBackend(s); err != nil {
				ps.addf(bpath, "%v", err)
			} else {
				b = parsed
			}
			r.Backends = append(r.Backends, b)
		}
	}
	if v, ok := o.get("health_check"); ok {
		r.HealthCheck = ps.healthCheck(path+".health_check", v)
	}
	if n, ok := o.int("retries"); ok {
		r.Retries = clampInt(n)
	}
	if d, ok := o.duration("timeout"); ok {
		r.Timeout = d
	}
	return r
}

// healthCheck decodes a health_check block; absent fields keep their defaults.
func (ps *problems) healthCheck(path string, v any) HealthCheck {
	hc := DefaultHealthCheck()
	o := ps.object(path, v, healthFields...)
	if o == nil {
		return hc
	}
	if s, ok := o.str("path"); ok {
		hc.Path = s
	}
	if d, ok := o.duration("interval"); ok {
		hc.Interval = d
	}
	if d, ok := o.duration("timeout"); ok {
		hc.Timeout = d
	}
	if n, ok := o.int("unhealthy_threshold"); ok {
		hc.UnhealthyThreshold = clampInt(n)
	}
	if n, ok := o.int("healthy_threshold"); ok {
		hc.HealthyThreshold = clampInt(n)
	}
	return hc
}

// clampInt narrows n to an int that still fails the range checks when n is
// out of range.
func clampInt(n int64) int {
	const lim = 1 << 30
	switch {
	case n > lim:
		return lim
	case n < -lim:
		return -lim
	}
	return int(n)
}

// parseAddress splits "host:port" (IPv6 hosts in brackets). Whether the host
// must be an IP and the port's range are checked by Spec.check.
func parseAddress(s string) (Address, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Address{}, fmt.Errorf("%q is not host:port", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return Address{}, fmt.Errorf("%q: port %q is not a number between 1 and 65535", s, port)
	}
	return Address{Host: host, Port: uint32(p)}, nil
}

// parseBackend parses "host:port" or "http://host[:port][/path]".
func parseBackend(s string) (Backend, error) {
	if !strings.Contains(s, "://") {
		a, err := parseAddress(s)
		if err != nil {
			return Backend{}, fmt.Errorf("%w: want host:port or an http:// URL", err)
		}
		return Backend{Host: a.Host, Port: a.Port}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return Backend{}, fmt.Errorf("%q is not a URL: %v", s, err)
	}
	switch {
	case u.Scheme == "https":
		return Backend{}, fmt.Errorf("%q: https backends are not supported: the generated clusters speak plain HTTP "+
			"(see DESIGN.md); use http://, or let Istio's mTLS protect the hop", s)
	case u.Scheme != "http":
		return Backend{}, fmt.Errorf("%q: scheme %q is not supported: use host:port or http://host:port/path", s, u.Scheme)
	case u.User != nil:
		return Backend{}, fmt.Errorf("%q: a backend URL may not hold user information", s)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return Backend{}, fmt.Errorf("%q: a backend URL may not hold a query or fragment", s)
	case u.Hostname() == "":
		return Backend{}, fmt.Errorf("%q: the URL has no host", s)
	}
	port := uint64(80)
	if p := u.Port(); p != "" {
		if port, err = strconv.ParseUint(p, 10, 16); err != nil {
			return Backend{}, fmt.Errorf("%q: port %q is not a number between 1 and 65535", s, p)
		}
	}
	return Backend{Host: u.Hostname(), Port: uint32(port), Path: u.EscapedPath()}, nil
}

// problems collects the problems of one document.
type problems struct {
	what string // the document, for the error message; "" means "gateway spec"
	list []Problem
}

func (ps *problems) addf(path, format string, args ...any) {
	ps.list = append(ps.list, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// checkf adds a problem unless path or one of its ancestors already has one:
// a value that failed to decode is not reported a second time as missing or
// out of range.
func (ps *problems) checkf(path, format string, args ...any) {
	for _, p := range ps.list {
		if p.Path == path || p.Path == "" || isAncestor(p.Path, path) {
			return
		}
	}
	ps.addf(path, format, args...)
}

func isAncestor(a, b string) bool {
	return len(b) > len(a) && strings.HasPrefix(b, a) && (b[len(a)] == '.' || b[len(a)] == '[')
}

// err returns the problems, sorted by path, as a *Error, or nil.
func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	list := append([]Problem(nil), ps.list...)
	sort.SliceStable(list, func(i, j int) bool { return pathLess(list[i].Path, list[j].Path) })
	what := ps.what
	if what == "" {
		what = "gateway spec"
	}
	return &Error{What: what, Problems: list}
}

// pathLess orders field paths by name, and array indexes by number
// (routes[2] before routes[10]).
func pathLess(a, b string) bool {
	ta, tb := pathTokens(a), pathTokens(b)
	for i := 0; i < len(ta) && i < len(tb); i++ {
		if ta[i] == tb[i] {
			continue
		}
		na, errA := strconv.Atoi(ta[i])
		nb, errB := strconv.Atoi(tb[i])
		if errA == nil && errB == nil {
			return na < nb
		}
		return ta[i] < tb[i]
	}
	return len(ta) < len(tb)
}

func pathTokens(p string) []string {
	return strings.FieldsFunc(p, func(r rune) bool { return r == '.' || r == '[' || r == ']' })
}

// object is a decoded JSON object whose keys were checked against the ones a
// place of the spec allows. Its getters report wrong types themselves and
// return ok=false for absent (or null) and bad values.
type object struct {
	ps   *problems
	path string
	m    map[string]any
}

func (ps *problems) object(path string, v any, allowed ...string) *object {
	m, ok := v.(map[string]any)
	if !ok {
		if path == "" {
			ps.addf("", "spec must be an object (a YAML mapping), got %s", kind(v))
		} else {
			ps.addf(path, "must be an object, got %s", kind(v))
		}
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !contains(allowed, k) {
			ps.addf(join(path, k), "unknown field (allowed here: %s)", strings.Join(allowed, ", "))
			delete(m, k)
		}
	}
	return &object{ps: ps, path: path, m: m}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// get returns a field's value; null counts as absent.
func (o *object) get(name string) (any, bool) {
	v, ok := o.m[name]
	return v, ok && v != nil
}

func (o *object) str(name string) (string, bool) {
	v, ok := o.get(name)
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		o.ps.addf(join(o.path, name), "must be a string, got %s", kind(v))
	}
	return s, ok
}

func (o *object) int(name string) (int64, bool) {
	v, ok := o.get(name)
	if !ok {
		return 0, false
	}
	n, ok := v.(json.Number)
	if !ok {
		o.ps.addf(join(o.path, name), "must be an integer, got %s", kind(v))
		return 0, false
	}
	i, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		o.ps.addf(join(o.path, name), "must be an integer, got %s", n)
		return 0, false
	}
	return i, true
}

// duration reads a Go duration string ("2s", "1m30s"); numbers are refused,
// since their unit would be a guess.
func (o *object) duration(name string) (time.Duration, bool) {
	v, ok := o.get(name)
	if !ok {
		return 0, false
	}
	s, isString := v.(string)
	if !isString {
		o.ps.addf(join(o.path, name), "must be a duration string like \"2s\" or \"1m30s\", got %s", kind(v))
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		o.ps.addf(join(o.path, name), "%q is not a duration like \"2s\" or \"1m30s\"", s)
		return 0, false
	}
	return d, true
}

func (o *object) address(name string) (Address, bool) {
	s, ok := o.str(name)
	if !ok {
		return Address{}, false
	}
	a, err := parseAddress(s)
	if err != nil {
		o.ps.addf(join(o.path, name), "%v", err)
		return Address{}, false
	}
	return a, true
}

// kind names the JSON type of a decoded value, for messages.
func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
