package envoysim

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tokengate/tokengate/internal/wasmhost"
)

// Config is the part of an Envoy bootstrap that envoysim runs, checked and with Envoy's
// defaults filled in. Durations are wall-clock durations; zero means "none" only where a field
// says so.
type Config struct {
	Listen     string // "host:port" of the listener
	Admin      string // "host:port" of the admin listener, "" for none
	StatPrefix string // the HTTP connection manager's stat_prefix
	HTTP2      bool   // accept HTTP/2 prior knowledge (codec AUTO or HTTP2)
	HTTP1      bool   // accept HTTP/1.1 (codec AUTO or HTTP1)
	// UseRemoteAddress appends the peer address to x-forwarded-for.
	UseRemoteAddress bool
	Wasm             *WasmConfig // the wasm filter, nil when the chain is only the router
	VirtualHosts     []VirtualHost
	Clusters         []ClusterConfig
}

// WasmConfig is the envoy.filters.http.wasm filter's plugin configuration.
type WasmConfig struct {
	Name, RootID, VMID string
	Runtime            string
	Code               []byte // the module, read from code.local
	CodePath           string // where Code came from, "" when inline
	Configuration      []byte // the plugin configuration (StringValue or BytesValue)
	VMConfiguration    []byte
	Env                map[string]string
	FailurePolicy      wasmv3.FailurePolicy // FAIL_CLOSED, FAIL_OPEN or FAIL_RELOAD
	ReloadBackoff      time.Duration        // 0: the host's default
	// Grpc carries the filter's gRPC calls to the bootstrap's clusters; the Server sets it.
	Grpc wasmhost.GrpcTransport
}

// VirtualHost is a set of routes for some domains.
type VirtualHost struct {
	Name    string
	Domains []string
	Routes  []Route
}

// Route sends requests that match Prefix (or exactly Path) to Cluster.
type Route struct {
	Name          string
	Prefix        string // matched against the start of :path
	Path          string // matched against :path without its query, when Exact
	Exact         bool
	Cluster       string
	PrefixRewrite string
	HasRewrite    bool
	Timeout       time.Duration // 0: none; Envoy's default is 15s
	Retry         *RetryPolicy  // nil: no retries
}

// RetryPolicy is a route's retry_policy.
type RetryPolicy struct {
	On                    map[string]bool // retry_on conditions
	NumRetries            int
	PerTryTimeout         time.Duration // 0: none
	PreviousHosts         bool
	HostSelectionAttempts int // host_selection_retry_max_attempts (Envoy's default is 1)
	StatusCodes           map[int]bool
	BackoffBase           time.Duration
	BackoffMax            time.Duration
}

// ClusterConfig is one upstream cluster.
type ClusterConfig struct {
	Name           string
	DNS            bool // STRICT_DNS: endpoints are host names, resolved every DNSRefresh
	DNSFamily      clusterv3.Cluster_DnsLookupFamily
	DNSRefresh     time.Duration
	Endpoints      []Endpoint
	ConnectTimeout time.Duration
	HealthCheck    *HealthCheckConfig // nil: no active health checking
	Outlier        *OutlierConfig     // nil: no outlier detection
	PanicThreshold float64            // percent, 0 disables panic mode
	MaxRequests    int
	MaxRetries     int
}

// Endpoint is a configured upstream address.
type Endpoint struct {
	Host string
	Port int
}

// HealthCheckConfig is an active HTTP health check.
type HealthCheckConfig struct {
	Timeout, Interval        time.Duration
	Jitter                   time.Duration
	JitterPercent            int
	UnhealthyThreshold       int
	HealthyThreshold         int
	NoTrafficInterval        time.Duration
	NoTrafficHealthyInterval time.Duration
	UnhealthyInterval        time.Duration
	UnhealthyEdgeInterval    time.Duration
	HealthyEdgeInterval      time.Duration
	Path, Host               string
	// Expected are [start, end) status ranges; default [200, 201).
	Expected [][2]int
}

// OutlierConfig is a cluster's outlier_detection (consecutive 5xx and gateway failures).
type OutlierConfig struct {
	Consecutive5xx           int // 0 disables
	Enforcing5xx             int // percent
	ConsecutiveGateway       int
	EnforcingGateway         int
	Interval                 time.Duration
	BaseEjectionTime         time.Duration
	MaxEjectionTime          time.Duration
	MaxEjectionPercent       int
	AlwaysEjectOneHost       bool
	UnejectOnActiveHCSuccess bool
}

// Envoy's defaults.
const (
	defaultRouteTimeout      = 15 * time.Second
	defaultConnectTimeout    = 5 * time.Second
	defaultNoTrafficInterval = 60 * time.Second
	defaultDNSRefresh        = 5 * time.Second
	defaultRetryBase         = 25 * time.Millisecond
	defaultMaxRequests       = 1024
	defaultMaxRetries        = 3
)

// NewConfig checks a parsed bootstrap and turns it into a Config, reading the wasm module from
// disk. Every problem is reported, each with its field path.
func NewConfig(b *bootstrapv3.Bootstrap) (*Config, error) {
	if err := checkImplemented(b); err != nil {
		return nil, err
	}
	c := &Config{}
	var errs []error
	fail := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if a := b.GetAdmin().GetAddress(); a != nil {
		addr, err := socketAddress(a)
		if err != nil {
			fail("admin.address", "%v", err)
		}
		c.Admin = addr
	}
	sr := b.GetStaticResources()
	if n := len(sr.GetListeners()); n != 1 {
		fail("static_resources.listeners", "envoysim runs exactly one listener, got %d", n)
	} else {
		c.parseListener(b, fail)
	}
	names := map[string]bool{}
	for i, cl := range sr.GetClusters() {
		path := fmt.Sprintf("static_resources.clusters[%d]", i)
		cc, cerrs := parseCluster(cl, path)
		errs = append(errs, cerrs...)
		if names[cc.Name] {
			fail(path+".name", "duplicate cluster %q", cc.Name)
		}
		names[cc.Name] = true
		c.Clusters = append(c.Clusters, cc)
	}
	for vi, vh := range c.VirtualHosts {
		for ri, r := range vh.Routes {
			if !names[r.Cluster] {
				fail(fmt.Sprintf("route_config.virtual_hosts[%d].routes[%d].route.cluster", vi, ri), "unknown cluster %q", r.Cluster)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

func socketAddress(a *corev3.Address) (string, error) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return "", errors.New("only socket_address is implemented")
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return "", errors.New("only TCP is implemented")
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), nil
}

func dur(d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.AsDuration()
}

func u32(v *wrapperspb.UInt32Value, def int) int {
	if v == nil {
		return def
	}
	return int(v.GetValue())
}

func (c *Config) parseListener(b *bootstrapv3.Bootstrap, fail func(path, format string, args ...any)) {
	l := b.GetStaticResources().GetListeners()[0]
	lp := "static_resources.listeners[0]"
	addr, err := socketAddress(l.GetAddress())
	if err != nil {
		fail(lp+".address", "%v", err)
	}
	c.Listen = addr
	if len(l.GetFilterChains()) != 1 || len(l.GetFilterChains()[0].GetFilters()) != 1 {
		fail(lp+".filter_chains", "envoysim runs exactly one filter chain with one filter (the HTTP connection manager)")
		return
	}
	fp := lp + ".filter_chains[0].filters[0]"
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		fail(fp+".typed_config", "%v", err)
		return
	}
	hp := fp + ".typed_config"
	c.StatPrefix = hcm.GetStatPrefix()
	switch hcm.GetCodecType() {
	case hcmv3.HttpConnectionManager_AUTO:
		c.HTTP1, c.HTTP2 = true, true
	case hcmv3.HttpConnectionManager_HTTP1:
		c.HTTP1 = true
	case hcmv3.HttpConnectionManager_HTTP2:
		c.HTTP2 = true
	default:
		fail(hp+".codec_type", "%s is not implemented by envoysim", hcm.GetCodecType())
	}
	c.UseRemoteAddress = hcm.GetUseRemoteAddress().GetValue()
	filters := hcm.GetHttpFilters()
	for i, f := range filters {
		p := fmt.Sprintf("%s.http_filters[%d]", hp, i)
		msg, err := f.GetTypedConfig().UnmarshalNew()
		if err != nil {
			fail(p+".typed_config", "%v", err)
			continue
		}
		switch m := msg.(type) {
		case *wasmfilterv3.Wasm:
			if c.Wasm != nil {
				fail(p, "envoysim runs at most one wasm filter")
				continue
			}
			w, err := parseWasm(m.GetConfig())
			if err != nil {
				fail(p+".typed_config.config", "%v", err)
				continue
			}
			c.Wasm = w
		default:
			if !strings.HasSuffix(f.GetTypedConfig().GetTypeUrl(), "envoy.extensions.filters.http.router.v3.Router") {
				fail(p, "filter %s is not implemented by envoysim", f.GetTypedConfig().GetTypeUrl())
			} else if i != len(filters)-1 {
				fail(p, "the router must be the last HTTP filter")
			}
		}
	}
	if len(filters) == 0 || !strings.HasSuffix(filters[len(filters)-1].GetTypedConfig().GetTypeUrl(), "Router") {
		fail(hp+".http_filters", "the last HTTP filter must be envoy.filters.http.router")
	}
	rc := hcm.GetRouteConfig()
	if rc == nil {
		fail(hp+".route_config", "a static route_config is required")
		return
	}
	for vi, vh := range rc.GetVirtualHosts() {
		v := VirtualHost{Name: vh.GetName(), Domains: vh.GetDomains()}
		for ri, r := range vh.GetRoutes() {
			p := fmt.Sprintf("%s.route_config.virtual_hosts[%d].routes[%d]", hp, vi, ri)
			rt, err := parseRoute(r)
			if err != nil {
				fail(p, "%v", err)
				continue
			}
			v.Routes = append(v.Routes, rt)
		}
		c.VirtualHosts = append(c.VirtualHosts, v)
	}
}

func parseWasm(pc *wasmv3.PluginConfig) (*WasmConfig, error) {
	w := &WasmConfig{Name: pc.GetName(), RootID: pc.GetRootId(), Env: map[string]string{}}
	var errs []error
	switch pc.GetFailurePolicy() {
	case wasmv3.FailurePolicy_UNSPECIFIED:
		w.FailurePolicy = wasmv3.FailurePolicy_FAIL_CLOSED
		if pc.GetFailOpen() {
			w.FailurePolicy = wasmv3.FailurePolicy_FAIL_OPEN
		}
	default:
		w.FailurePolicy = pc.GetFailurePolicy()
	}
	w.ReloadBackoff = dur(pc.GetReloadConfig().GetBackoff().GetBaseInterval(), 0)
	cfg, err := anyBytes(pc.GetConfiguration())
	if err != nil {
		errs = append(errs, fmt.Errorf("configuration: %w", err))
	}
	w.Configuration = cfg
	vm := pc.GetVmConfig()
	if vm == nil {
		errs = append(errs, errors.New("vm_config: required"))
		return nil, errors.Join(errs...)
	}
	w.VMID, w.Runtime = vm.GetVmId(), vm.GetRuntime()
	switch w.Runtime {
	case "envoy.wasm.runtime.v8", "envoy.wasm.runtime.wamr", "envoy.wasm.runtime.wasmtime", "envoy.wasm.runtime.null":
		if w.Runtime == "envoy.wasm.runtime.null" {
			errs = append(errs, errors.New("vm_config.runtime: the null runtime is not implemented by envoysim"))
		}
	default:
		errs = append(errs, fmt.Errorf("vm_config.runtime: unknown runtime %q", w.Runtime))
	}
	if w.VMConfiguration, err = anyBytes(vm.GetConfiguration()); err != nil {
		errs = append(errs, fmt.Errorf("vm_config.configuration: %w", err))
	}
	for _, k := range vm.GetEnvironmentVariables().GetHostEnvKeys() {
		if v, ok := os.LookupEnv(k); ok {
			w.Env[k] = v
		}
	}
	for k, v := range vm.GetEnvironmentVariables().GetKeyValues() {
		w.Env[k] = v
	}
	local := vm.GetCode().GetLocal()
	switch {
	case local == nil:
		errs = append(errs, errors.New("vm_config.code.local: required"))
	case local.GetFilename() != "":
		w.CodePath = local.GetFilename()
		if w.Code, err = os.ReadFile(w.CodePath); err != nil {
			errs = append(errs, fmt.Errorf("vm_config.code.local.filename: %w", err))
		}
	case local.GetInlineBytes() != nil:
		w.Code = local.GetInlineBytes()
	default:
		w.Code = []byte(local.GetInlineString())
	}
	return w, errors.Join(errs...)
}

// anyBytes returns the payload of a StringValue or BytesValue configuration, nil for none.
func anyBytes(a *anypb.Any) ([]byte, error) {
	if a == nil {
		return nil, nil
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, err
	}
	switch v := m.(type) {
	case *wrapperspb.StringValue:
		return []byte(v.GetValue()), nil
	case *wrapperspb.BytesValue:
		return v.GetValue(), nil
	}
	return nil, fmt.Errorf("type %s is not implemented by envoysim (use google.protobuf.StringValue)", a.GetTypeUrl())
}

func parseRoute(r *routev3.Route) (Route, error) {
	rt := Route{Name: r.GetName(), Timeout: defaultRouteTimeout}
	var errs []error
	switch m := r.GetMatch(); m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		rt.Prefix = m.GetPrefix()
	case *routev3.RouteMatch_Path:
		rt.Path, rt.Exact = m.GetPath(), true
	default:
		errs = append(errs, errors.New("match: prefix or path is required"))
	}
	a := r.GetRoute()
	if a == nil {
		return rt, errors.Join(append(errs, errors.New("route: required (only route actions are implemented)"))...)
	}
	rt.Cluster = a.GetCluster()
	if rt.Cluster == "" {
		errs = append(errs, errors.New("route.cluster: required"))
	}
	if a.GetPrefixRewrite() != "" {
		rt.PrefixRewrite, rt.HasRewrite = a.GetPrefixRewrite(), true
	}
	rt.Timeout = dur(a.GetTimeout(), defaultRouteTimeout)
	if rp := a.GetRetryPolicy(); rp != nil {
		p, err := parseRetry(rp)
		if err != nil {
			errs = append(errs, fmt.Errorf("route.retry_policy.%w", err))
		}
		rt.Retry = p
	}
	return rt, errors.Join(errs...)
}

// retryOn are the retry_on conditions envoysim implements.
var retryOn = set("5xx", "gateway-error", "connect-failure", "reset", "refused-stream", "retriable-4xx", "retriable-status-codes")

func parseRetry(rp *routev3.RetryPolicy) (*RetryPolicy, error) {
	p := &RetryPolicy{
		On:                    map[string]bool{},
		NumRetries:            u32(rp.GetNumRetries(), 1),
		PerTryTimeout:         dur(rp.GetPerTryTimeout(), 0),
		HostSelectionAttempts: int(rp.GetHostSelectionRetryMaxAttempts()),
		StatusCodes:           map[int]bool{},
		BackoffBase:           dur(rp.GetRetryBackOff().GetBaseInterval(), defaultRetryBase),
	}
	var errs []error
	for _, on := range strings.Split(rp.GetRetryOn(), ",") {
		on = strings.TrimSpace(on)
		if on == "" {
			continue
		}
		if !retryOn[on] {
			errs = append(errs, fmt.Errorf("retry_on: %q is not implemented by envoysim", on))
		}
		p.On[on] = true
	}
	if p.HostSelectionAttempts == 0 {
		p.HostSelectionAttempts = 1
	}
	p.BackoffMax = dur(rp.GetRetryBackOff().GetMaxInterval(), 10*p.BackoffBase)
	for _, c := range rp.GetRetriableStatusCodes() {
		p.StatusCodes[int(c)] = true
	}
	for i, hp := range rp.GetRetryHostPredicate() {
		if strings.HasSuffix(hp.GetTypedConfig().GetTypeUrl(), "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate") ||
			hp.GetTypedConfig() == nil && hp.GetName() == "envoy.retry_host_predicates.previous_hosts" {
			p.PreviousHosts = true
			continue
		}
		errs = append(errs, fmt.Errorf("retry_host_predicate[%d]: %s is not implemented by envoysim", i, hp.GetName()))
	}
	return p, errors.Join(errs...)
}

func parseCluster(cl *clusterv3.Cluster, path string) (ClusterConfig, []error) {
	c := ClusterConfig{
		Name:           cl.GetName(),
		ConnectTimeout: dur(cl.GetConnectTimeout(), defaultConnectTimeout),
		DNSFamily:      cl.GetDnsLookupFamily(),
		DNSRefresh:     dur(cl.GetDnsRefreshRate(), defaultDNSRefresh),
		PanicThreshold: 50,
		MaxRequests:    defaultMaxRequests,
		MaxRetries:     defaultMaxRetries,
	}
	var errs []error
	fail := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	switch cl.GetType() {
	case clusterv3.Cluster_STATIC:
	case clusterv3.Cluster_STRICT_DNS:
		c.DNS = true
	default:
		fail("type", "%s is not implemented by envoysim (STATIC, STRICT_DNS)", cl.GetType())
	}
	if cl.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN {
		fail("lb_policy", "%s is not implemented by envoysim (ROUND_ROBIN)", cl.GetLbPolicy())
	}
	if t := cl.GetCommonLbConfig().GetHealthyPanicThreshold(); t != nil {
		c.PanicThreshold = t.GetValue()
	}
	for i, le := range cl.GetLoadAssignment().GetEndpoints() {
		for j, e := range le.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil || sa.GetProtocol() != corev3.SocketAddress_TCP {
				fail(fmt.Sprintf("load_assignment.endpoints[%d].lb_endpoints[%d].endpoint.address", i, j), "a TCP socket_address is required")
				continue
			}
			if !c.DNS && net.ParseIP(sa.GetAddress()) == nil {
				fail(fmt.Sprintf("load_assignment.endpoints[%d].lb_endpoints[%d].endpoint.address.socket_address.address", i, j),
					"%q is not an IP address (a STATIC cluster needs IPs; use STRICT_DNS for names)", sa.GetAddress())
			}
			c.Endpoints = append(c.Endpoints, Endpoint{Host: sa.GetAddress(), Port: int(sa.GetPortValue())})
		}
	}
	if len(c.Endpoints) == 0 {
		fail("load_assignment", "no endpoints")
	}
	switch n := len(cl.GetHealthChecks()); {
	case n > 1:
		fail("health_checks", "envoysim runs at most one health check per cluster")
	case n == 1:
		hc := cl.GetHealthChecks()[0]
		h := hc.GetHttpHealthCheck()
		if h == nil {
			fail("health_checks[0]", "only http_health_check is implemented by envoysim")
			break
		}
		interval := dur(hc.GetInterval(), 0)
		unhealthy := dur(hc.GetUnhealthyInterval(), interval)
		c.HealthCheck = &HealthCheckConfig{
			Timeout:               dur(hc.GetTimeout(), 0),
			Interval:              interval,
			Jitter:                dur(hc.GetIntervalJitter(), 0),
			JitterPercent:         int(hc.GetIntervalJitterPercent()),
			UnhealthyThreshold:    u32(hc.GetUnhealthyThreshold(), 0),
			HealthyThreshold:      u32(hc.GetHealthyThreshold(), 0),
			NoTrafficInterval:     dur(hc.GetNoTrafficInterval(), defaultNoTrafficInterval),
			UnhealthyInterval:     unhealthy,
			UnhealthyEdgeInterval: dur(hc.GetUnhealthyEdgeInterval(), unhealthy),
			HealthyEdgeInterval:   dur(hc.GetHealthyEdgeInterval(), interval),
			Path:                  h.GetPath(),
			Host:                  h.GetHost(),
		}
		c.HealthCheck.NoTrafficHealthyInterval = dur(hc.GetNoTrafficHealthyInterval(), c.HealthCheck.NoTrafficInterval)
		for _, r := range h.GetExpectedStatuses() {
			c.HealthCheck.Expected = append(c.HealthCheck.Expected, [2]int{int(r.GetStart()), int(r.GetEnd())})
		}
		if len(c.HealthCheck.Expected) == 0 {
			c.HealthCheck.Expected = [][2]int{{200, 201}}
		}
		if c.HealthCheck.Interval <= 0 || c.HealthCheck.Timeout <= 0 {
			fail("health_checks[0]", "interval and timeout must be > 0")
		}
	}
	if od := cl.GetOutlierDetection(); od != nil {
		o := &OutlierConfig{
			Consecutive5xx:           u32(od.GetConsecutive_5Xx(), 5),
			Enforcing5xx:             u32(od.GetEnforcingConsecutive_5Xx(), 100),
			ConsecutiveGateway:       u32(od.GetConsecutiveGatewayFailure(), 5),
			EnforcingGateway:         u32(od.GetEnforcingConsecutiveGatewayFailure(), 0),
			Interval:                 dur(od.GetInterval(), 10*time.Second),
			BaseEjectionTime:         dur(od.GetBaseEjectionTime(), 30*time.Second),
			MaxEjectionPercent:       u32(od.GetMaxEjectionPercent(), 10),
			AlwaysEjectOneHost:       od.GetAlwaysEjectOneHost().GetValue(),
			UnejectOnActiveHCSuccess: true,
		}
		o.MaxEjectionTime = dur(od.GetMaxEjectionTime(), 300*time.Second)
		if o.MaxEjectionTime < o.BaseEjectionTime {
			o.MaxEjectionTime = o.BaseEjectionTime
		}
		if v := od.GetSuccessfulActiveHealthCheckUnejectHost(); v != nil {
			o.UnejectOnActiveHCSuccess = v.GetValue()
		}
		// Success-rate ejection needs 5 hosts with 100 requests per interval by default;
		// envoysim implements neither it nor failure-percentage ejection, so only "off" or
		// the default (which cannot trigger below 5 hosts) is accepted.
		if v := od.GetEnforcingSuccessRate(); v != nil && v.GetValue() != 0 {
			fail("outlier_detection.enforcing_success_rate", "success-rate ejection is not implemented by envoysim (set 0)")
		}
		if v := od.GetEnforcingFailurePercentage(); v != nil && v.GetValue() != 0 {
			fail("outlier_detection.enforcing_failure_percentage", "failure-percentage ejection is not implemented by envoysim (set 0)")
		}
		c.Outlier = o
	}
	for i, t := range cl.GetCircuitBreakers().GetThresholds() {
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			fail(fmt.Sprintf("circuit_breakers.thresholds[%d].priority", i), "only DEFAULT is implemented by envoysim")
			continue
		}
		c.MaxRequests = u32(t.GetMaxRequests(), c.MaxRequests)
		c.MaxRetries = u32(t.GetMaxRetries(), c.MaxRetries)
	}
	return c, errs
}
