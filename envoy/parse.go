package envoy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"sigs.k8s.io/yaml"

	"github.com/tokengate/tokengate/internal/config"
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
	specFields   = []string{"listen", "admin", "concurrency", "wasm", "failure_policy", "filter", "routes", "rate_limit_service"}
	rlsFields    = []string{"backends"}
	routeFields  = []string{"name", "prefix", "backends", "health_check", "retries", "timeout"}
	healthFields = []string{"path", "interval", "timeout", "unhealthy_threshold", "healthy_threshold"}
)

// decodeSpec turns the document into a Spec, reporting wrong types, unknown
// fields and unparsable values. It reads the JSON form of the document with
// the filter configuration's own strict reader (config.Reader), so both
// report the same problems with the same messages. Range and consistency
// checks are left to Spec.check, which also runs on Specs built in code.
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
	root := gjson.ParseBytes(j)
	if !root.IsObject() {
		ps.addf("", "spec must be an object (a YAML mapping), got %s", config.Kind(root))
		return nil
	}
	o := ps.Object(root, "", specFields...)
	s := &Spec{FailurePolicy: DefaultFailurePolicy}
	s.Listen, _ = ps.address(o, "listen")
	s.Admin, _ = ps.address(o, "admin")
	if n, ok := o.Int("concurrency", math.MinInt64, math.MaxInt64); ok {
		if n < 1 || n > 1024 {
			ps.addf("concurrency", "must be between 1 and 1024, got %d (leave it out for Envoy's default)", n)
		}
		s.Concurrency = int(n)
	}
	s.Wasm, _ = o.Str("wasm")
	if f, ok := o.Str("failure_policy"); ok {
		s.FailurePolicy = FailurePolicy(f)
	}
	if v, ok := o.Get("filter"); ok {
		s.Filter = ps.filterJSON(v)
	}
	if v, ok := o.Get("routes"); ok {
		if !v.IsArray() {
			ps.addf("routes", "must be an array of routes, got %s", config.Kind(v))
		}
		for i, item := range v.Array() {
			s.Routes = append(s.Routes, ps.route(fmt.Sprintf("routes[%d]", i), item))
		}
	}
	if v, ok := o.Get("rate_limit_service"); ok {
		s.RateLimitService = ps.rateLimitService("rate_limit_service", v)
	}
	return s
}

// rateLimitService decodes the rate_limit_service block: the host:port
// addresses of the service's gRPC listener.
func (ps *problems) rateLimitService(path string, v gjson.Result) *RateLimitService {
	rls := &RateLimitService{}
	o := ps.Object(v, path, rlsFields...)
	if o == nil {
		return rls
	}
	if v, ok := o.Get("backends"); ok {
		rls.Backends = stringList(ps, path+".backends", v, "host:port addresses (the service's gRPC port)", "host:port", parseAddress)
	}
	return rls
}

// stringList decodes an array of strings, each read by parse; list and item
// say what the array and an item hold, for the messages. An item that is
// not a string, or that parse refuses, still yields a zero T, so the indexes
// of the others stay right.
func stringList[T any](ps *problems, path string, v gjson.Result, list, item string, parse func(string) (T, error)) []T {
	if !v.IsArray() {
		ps.addf(path, "must be an array of %s, got %s", list, config.Kind(v))
	}
	var out []T
	for i, it := range v.Array() {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		var t T
		if it.Type != gjson.String {
			ps.addf(ipath, "must be a string (%s), got %s", item, config.Kind(it))
		} else if parsed, err := parse(it.Str); err != nil {
			ps.addf(ipath, "%v", err)
		} else {
			t = parsed
		}
		out = append(out, t)
	}
	return out
}

// filterJSON re-encodes the filter block as compact JSON with sorted keys,
// numbers exactly as written.
func (ps *problems) filterJSON(v gjson.Result) []byte {
	if !v.IsObject() {
		ps.addf("filter", "must be an object (the filter configuration), got %s", config.Kind(v))
		return nil
	}
	b, err := canonicalJSON([]byte(v.Raw))
	if err != nil {
		ps.addf("filter", "cannot be encoded as JSON: %v", err)
		return nil
	}
	return b
}

// canonicalJSON re-encodes a JSON value as compact JSON with sorted keys,
// numbers exactly as written: the form of Spec.Filter and Plugin.Config, so
// a plugin configuration given alone or as a spec's filter block gives the
// same bytes.
func canonicalJSON(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return compactJSON(v)
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
func (ps *problems) route(path string, v gjson.Result) Route {
	r := Route{HealthCheck: DefaultHealthCheck(), Retries: DefaultRetries, Timeout: DefaultTimeout}
	o := ps.Object(v, path, routeFields...)
	if o == nil {
		return r
	}
	r.Name, _ = o.Str("name")
	r.Prefix, _ = o.Str("prefix")
	if v, ok := o.Get("backends"); ok {
		r.Backends = stringList(ps, path+".backends", v, "backends (host:port or http:// URLs)", "host:port or an http:// URL", parseBackend)
	}
	if v, ok := o.Get("health_check"); ok {
		r.HealthCheck = ps.healthCheck(path+".health_check", v)
	}
	if n, ok := o.Int("retries", math.MinInt64, math.MaxInt64); ok {
		r.Retries = clampInt(n)
	}
	if d, ok := ps.duration(o, "timeout"); ok {
		r.Timeout = d
	}
	return r
}

// healthCheck decodes a health_check block; absent fields keep their defaults.
func (ps *problems) healthCheck(path string, v gjson.Result) HealthCheck {
	hc := DefaultHealthCheck()
	o := ps.Object(v, path, healthFields...)
	if o == nil {
		return hc
	}
	if s, ok := o.Str("path"); ok {
		hc.Path = s
	}
	if d, ok := ps.duration(o, "interval"); ok {
		hc.Interval = d
	}
	if d, ok := ps.duration(o, "timeout"); ok {
		hc.Timeout = d
	}
	if n, ok := o.Int("unhealthy_threshold", math.MinInt64, math.MaxInt64); ok {
		hc.UnhealthyThreshold = clampInt(n)
	}
	if n, ok := o.Int("healthy_threshold", math.MinInt64, math.MaxInt64); ok {
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

// problems collects the problems of one document, read with the filter
// configuration's strict reader.
type problems struct {
	config.Reader
	what string // the document, for the error message; "" means "gateway spec"
}

func (ps *problems) addf(path, format string, args ...any) {
	ps.Add(path, fmt.Sprintf(format, args...))
}

// checkf adds a problem unless path or one of its ancestors already has one:
// a value that failed to decode is not reported a second time as missing or
// out of range.
func (ps *problems) checkf(path, format string, args ...any) {
	for _, p := range ps.Problems() {
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
	if len(ps.Problems()) == 0 {
		return nil
	}
	list := append([]Problem(nil), ps.Problems()...)
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

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// duration reads a Go duration string ("2s", "1m30s"); numbers are refused,
// since their unit would be a guess.
func (ps *problems) duration(o *config.Object, name string) (time.Duration, bool) {
	s, ok := o.Str(name)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		ps.addf(o.Path(name), "%q is not a duration like \"2s\" or \"1m30s\"", s)
		return 0, false
	}
	return d, true
}

func (ps *problems) address(o *config.Object, name string) (Address, bool) {
	s, ok := o.Str(name)
	if !ok {
		return Address{}, false
	}
	a, err := parseAddress(s)
	if err != nil {
		ps.addf(o.Path(name), "%v", err)
		return Address{}, false
	}
	return a, true
}
