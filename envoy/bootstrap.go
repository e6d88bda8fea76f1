package envoy

import (
	"fmt"
	"net"
	"sort"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Names that appear in the generated configuration (and so in Envoy's stat
// names and in the filter's plugin_name / plugin_root_id / plugin_vm_id
// properties).
const (
	PluginName   = "tokengate" // wasm config.name and root_id
	VMID         = "tokengate" // wasm vm_config.vm_id: the shared-data namespace
	ListenerName = "gateway"
	StatPrefix   = "gateway" // http.gateway.* stats
	RouteConfig  = "gateway" // route_config.name
	VirtualHost  = "gateway" // the one virtual host, domains ["*"]
	WasmRuntime  = "envoy.wasm.runtime.v8"
)

// Fixed knobs of the generated clusters and routes. DESIGN.md explains each.
const (
	connectTimeout = 2 * time.Second
	// retryOn: a response the backend did not give (reset, refused
	// connection, refused stream) or a 5xx it did give.
	retryOn = "5xx,reset,connect-failure,refused-stream"
	// hostSelectionAttempts: how often Envoy may re-pick a host when the
	// previous_hosts predicate rejects one it already tried.
	hostSelectionAttempts = 5
	outlierConsecutive5xx = 3
	outlierInterval       = 10 * time.Second
	outlierBaseEjection   = 30 * time.Second
	outlierMaxEjection    = 300 * time.Second
)

// Bootstrap returns the Envoy bootstrap for s: the admin address, one
// listener whose HTTP connection manager runs the tokengate wasm filter and
// then the router, one route and one cluster per spec route. s is validated
// first (see Spec.Validate), and the result, typed_config payloads included,
// has passed ValidateAll.
//
// Routes are ordered by prefix length, longest first (ties keep spec order),
// because Envoy takes the first route that matches: "/api/users" must come
// before "/api". Clusters keep spec order.
func Bootstrap(s *Spec) (*bootstrapv3.Bootstrap, error) {
	ps := &problems{}
	cfg := s.check(ps) // Validate, keeping the parsed filter block
	if err := ps.err(); err != nil {
		return nil, err
	}
	wasmPath, err := s.WasmPath()
	if err != nil {
		return nil, err
	}
	listener, err := makeListener(s, wasmPath)
	if err != nil {
		return nil, err
	}
	clusters := make([]*clusterv3.Cluster, 0, len(s.Routes))
	for i := range s.Routes {
		clusters = append(clusters, makeCluster(&s.Routes[i]))
	}
	if s.RateLimitService != nil {
		// Validate required the filter's global rules with this block.
		c, err := makeRateLimitCluster(cfg.RateLimitService.Cluster, s.RateLimitService.Backends)
		if err != nil {
			return nil, err
		}
		clusters = append(clusters, c)
	}
	b := &bootstrapv3.Bootstrap{
		Admin: &bootstrapv3.Admin{Address: socketAddress(s.Admin)},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Listeners: []*listenerv3.Listener{listener},
			Clusters:  clusters,
		},
	}
	if err := validateDeep(b); err != nil {
		return nil, fmt.Errorf("generated bootstrap is invalid (a bug in package envoy): %w", err)
	}
	return b, nil
}

// makeListener returns the gateway listener: one filter chain with the HTTP
// connection manager.
func makeListener(s *Spec, wasmPath string) (*listenerv3.Listener, error) {
	hcm, err := makeHTTPConnectionManager(s, wasmPath)
	if err != nil {
		return nil, err
	}
	hcmAny, err := anypb.New(hcm)
	if err != nil {
		return nil, fmt.Errorf("pack http_connection_manager: %w", err)
	}
	return &listenerv3.Listener{
		Name:    ListenerName,
		Address: socketAddress(s.Listen),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcmAny},
			}},
		}},
	}, nil
}

// makeHTTPConnectionManager returns the HCM: codec AUTO (HTTP/1.1 and h2c),
// the client address taken from the connection (use_remote_address), the
// path normalized before any filter or route sees it, the
// wasm filter, then the router.
func makeHTTPConnectionManager(s *Spec, wasmPath string) (*hcmv3.HttpConnectionManager, error) {
	wasm, err := makeWasmFilter(s, wasmPath)
	if err != nil {
		return nil, err
	}
	routes, err := makeRouteConfig(s.Routes)
	if err != nil {
		return nil, err
	}
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, fmt.Errorf("pack router: %w", err)
	}
	return &hcmv3.HttpConnectionManager{
		StatPrefix:       StatPrefix,
		CodecType:        hcmv3.HttpConnectionManager_AUTO,
		UseRemoteAddress: wrapperspb.Bool(true),
		// The filter's path_prefix rules, the route prefixes and the backend
		// must all see one path: without these, //api/x, /./api/x or
		// /x/../api/x reach a backend that normalizes while no /api/ rule
		// matched. envoy/DESIGN.md explains each of the three.
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_REJECT_REQUEST,
		RouteSpecifier:               &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: routes},
		HttpFilters: []*hcmv3.HttpFilter{
			wasm,
			{
				Name:       "envoy.filters.http.router",
				ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
			},
		},
	}, nil
}

// makeWasmFilter returns the tokengate filter: the module from a local file,
// the filter block as its plugin configuration (a StringValue of JSON).
func makeWasmFilter(s *Spec, wasmPath string) (*hcmv3.HttpFilter, error) {
	configuration, err := anypb.New(wrapperspb.String(string(s.Filter)))
	if err != nil {
		return nil, fmt.Errorf("pack wasm configuration: %w", err)
	}
	policy, ok := wasmv3.FailurePolicy_value[string(s.FailurePolicy)]
	if !ok {
		return nil, fmt.Errorf("failure_policy %q is unknown to go-control-plane", s.FailurePolicy)
	}
	wasm, err := anypb.New(&wasmfilterv3.Wasm{
		Config: &wasmv3.PluginConfig{
			Name:          PluginName,
			RootId:        PluginName,
			FailurePolicy: wasmv3.FailurePolicy(policy),
			Configuration: configuration,
			Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{
				VmId:    VMID,
				Runtime: WasmRuntime,
				Code: &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Local{
					Local: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: wasmPath}},
				}},
			}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("pack wasm filter: %w", err)
	}
	return &hcmv3.HttpFilter{
		Name:       "envoy.filters.http.wasm",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: wasm},
	}, nil
}

// makeRouteConfig returns the route table: one virtual host for every
// domain, routes longest prefix first.
func makeRouteConfig(routes []Route) (*routev3.RouteConfiguration, error) {
	ordered := make([]*Route, len(routes))
	for i := range routes {
		ordered[i] = &routes[i]
	}
	sort.SliceStable(ordered, func(i, j int) bool { return len(ordered[i].Prefix) > len(ordered[j].Prefix) })
	rs := make([]*routev3.Route, 0, len(ordered))
	for _, r := range ordered {
		route, err := makeRoute(r)
		if err != nil {
			return nil, err
		}
		rs = append(rs, route)
	}
	return &routev3.RouteConfiguration{
		Name: RouteConfig,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    VirtualHost,
			Domains: []string{"*"},
			Routes:  rs,
		}},
	}, nil
}

// makeRoute returns the route of r: prefix match, the backends' path as
// prefix_rewrite, the timeout and the retry policy.
func makeRoute(r *Route) (*routev3.Route, error) {
	retry, err := makeRetryPolicy(r.Retries)
	if err != nil {
		return nil, fmt.Errorf("route %q: %w", r.Name, err)
	}
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: r.Name},
		Timeout:          durationpb.New(r.Timeout),
		RetryPolicy:      retry,
	}
	if p := r.Backends[0].Path; p != "" && p != r.Prefix {
		action.PrefixRewrite = p
	}
	return &routev3.Route{
		Name:   r.Name,
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: r.Prefix}},
		Action: &routev3.Route_Route{Route: action},
	}, nil
}

// makeRetryPolicy returns a policy that sends each retry to a backend not yet
// tried for this request (previous_hosts), or nil for retries == 0.
func makeRetryPolicy(retries int) (*routev3.RetryPolicy, error) {
	if retries == 0 {
		return nil, nil
	}
	predicate, err := anypb.New(&previoushostsv3.PreviousHostsPredicate{})
	if err != nil {
		return nil, fmt.Errorf("pack previous_hosts predicate: %w", err)
	}
	return &routev3.RetryPolicy{
		RetryOn:    retryOn,
		NumRetries: wrapperspb.UInt32(uint32(retries)),
		RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{
			Name: "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{
				TypedConfig: predicate,
			},
		}},
		HostSelectionRetryMaxAttempts: hostSelectionAttempts,
	}, nil
}

// makeCluster returns the cluster of r: round robin over its backends,
// active health checks, outlier detection, and no panic mode.
func makeCluster(r *Route) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:             r.Name,
		ConnectTimeout:   durationpb.New(connectTimeout),
		LbPolicy:         clusterv3.Cluster_ROUND_ROBIN,
		HealthChecks:     []*corev3.HealthCheck{makeHealthCheck(r.HealthCheck)},
		OutlierDetection: makeOutlierDetection(),
		CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{
			// 0 turns panic mode off. With the default 50%, once fewer than
			// half of the hosts are healthy (2 of 3 down) Envoy ignores
			// health and spreads requests over all hosts, the dead ones
			// included. A gateway that fails over wants the opposite: the
			// healthy hosts only, and a fast 503 ("no healthy upstream")
			// when there are none.
			HealthyPanicThreshold: &typev3.Percent{Value: 0},
		},
	}
	addrs := make([]Address, 0, len(r.Backends))
	for _, b := range r.Backends {
		addrs = append(addrs, b.Address())
	}
	setEndpoints(c, addrs)
	return c
}

// setEndpoints gives c one endpoint per address, found as written when
// every host is an IP literal (STATIC), else by DNS (STRICT_DNS): host names
// are resolved, and re-resolved, by Envoy; every address a name resolves to
// becomes an endpoint. V4_PREFERRED: "localhost" should reach a backend that
// listens on 127.0.0.1 only.
func setEndpoints(c *clusterv3.Cluster, addrs []Address) {
	c.LoadAssignment = loadAssignment(c.Name, addrs)
	c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	for _, a := range addrs {
		if net.ParseIP(a.Host) == nil {
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
			c.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
			return
		}
	}
}

// loadAssignment returns one locality with an endpoint per address.
func loadAssignment(cluster string, addrs []Address) *endpointv3.ClusterLoadAssignment {
	eps := make([]*endpointv3.LbEndpoint, 0, len(addrs))
	for _, a := range addrs {
		eps = append(eps, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
				Endpoint: &endpointv3.Endpoint{Address: socketAddress(a)},
			},
		})
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: cluster,
		Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}},
	}
}

// makeHealthCheck returns an active HTTP health check (GET, 200 passes).
// no_traffic_interval is set to the interval: until a cluster has routed its
// first request Envoy checks it only every no_traffic_interval, 60s by
// default, so a backend started after Envoy would stay "unhealthy" (and its
// route a 503) for up to a minute.
func makeHealthCheck(hc HealthCheck) *corev3.HealthCheck {
	return &corev3.HealthCheck{
		Timeout:            durationpb.New(hc.Timeout),
		Interval:           durationpb.New(hc.Interval),
		NoTrafficInterval:  durationpb.New(hc.Interval),
		UnhealthyThreshold: wrapperspb.UInt32(uint32(hc.UnhealthyThreshold)),
		HealthyThreshold:   wrapperspb.UInt32(uint32(hc.HealthyThreshold)),
		HealthChecker: &corev3.HealthCheck_HttpHealthCheck_{
			HttpHealthCheck: &corev3.HealthCheck_HttpHealthCheck{Path: hc.Path},
		},
	}
}

// makeOutlierDetection returns passive failure detection with every value
// that matters written out rather than left to Envoy's defaults.
func makeOutlierDetection() *clusterv3.OutlierDetection {
	return &clusterv3.OutlierDetection{
		// Eject a host after 3 consecutive 5xx. Locally originated errors
		// (refused or reset connections, timeouts) count as 5xx too, since
		// split_external_local_origin_errors stays false. Retries hide the
		// failures from clients, so ejecting early is cheap; an ejection
		// wrongly caused by application 5xx ends at the host's next passed
		// active health check.
		Consecutive_5Xx:          wrapperspb.UInt32(outlierConsecutive5xx),
		EnforcingConsecutive_5Xx: wrapperspb.UInt32(100),
		// Success-rate ejection needs at least 5 hosts with 100 requests
		// each per interval; off, so small and large routes behave alike.
		EnforcingSuccessRate: wrapperspb.UInt32(0),
		Interval:             durationpb.New(outlierInterval),
		BaseEjectionTime:     durationpb.New(outlierBaseEjection),
		MaxEjectionTime:      durationpb.New(outlierMaxEjection),
		// Envoy's default of 10% rounds down to zero hosts below 10 hosts:
		// with 2 or 3 backends nothing would ever be ejected, and failover
		// would rest on health checks alone. 100% lets every failing host
		// go; panic mode is off, so all ejected means a clean 503.
		MaxEjectionPercent: wrapperspb.UInt32(100),
	}
}

func socketAddress(a Address) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       a.Host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: a.Port},
	}}}
}
