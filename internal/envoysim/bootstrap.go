package envoysim

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// The typed_config types a bootstrap may carry; importing them registers them, so that
	// protojson can resolve their Any type URLs.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	_ "google.golang.org/protobuf/types/known/wrapperspb"
)

// ParseConfig reads an Envoy v3 bootstrap in YAML or JSON and returns its Config, reading the
// wasm module from disk. It fails on anything Envoy would refuse (unknown fields, unknown
// typed_config types, validation rules) and, with every offending field named, on any field or
// value that envoysim does not implement.
func ParseConfig(data []byte) (*Config, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := checkImplemented(b); err != nil {
		return nil, err
	}
	return newConfig(b)
}

// checkImplemented walks every set field of m and reports, all at once, those that are not in
// the allow-list.
func checkImplemented(m proto.Message) error {
	var errs []error
	walkFields(m.ProtoReflect(), "", &errs)
	return errors.Join(errs...)
}

func walkFields(m protoreflect.Message, path string, errs *[]error) {
	desc := m.Descriptor()
	full := desc.FullName()
	if strings.HasPrefix(string(full), "google.protobuf.") && full != "google.protobuf.Any" {
		return // durations, wrappers, structs: plain values
	}
	if full == "google.protobuf.Any" {
		anyMsg := &anypb.Any{}
		anyMsg.TypeUrl = m.Get(desc.Fields().ByName("type_url")).String()
		anyMsg.Value = m.Get(desc.Fields().ByName("value")).Bytes()
		inner, err := anyMsg.UnmarshalNew()
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %w", path, err))
			return
		}
		name := inner.ProtoReflect().Descriptor().FullName()
		if _, ok := allowed[name]; !ok && !strings.HasPrefix(string(name), "google.protobuf.") {
			*errs = append(*errs, fmt.Errorf("%s: type %s is not implemented by envoysim", path, name))
			return
		}
		walkFields(inner.ProtoReflect(), path, errs)
		return
	}
	fields, ok := allowed[full]
	if !ok {
		*errs = append(*errs, fmt.Errorf("%s: message %s is not implemented by envoysim", path, full))
		return
	}
	type setField struct {
		fd protoreflect.FieldDescriptor
		v  protoreflect.Value
	}
	var set []setField
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		set = append(set, setField{fd, v})
		return true
	})
	sort.Slice(set, func(i, j int) bool { return set[i].fd.Number() < set[j].fd.Number() })
	for _, f := range set {
		name := string(f.fd.Name())
		p := name
		if path != "" {
			p = path + "." + name
		}
		if !fields[name] {
			*errs = append(*errs, fmt.Errorf("%s: field %s.%s is not implemented by envoysim", p, full, name))
			continue
		}
		switch {
		case f.fd.IsList() && f.fd.Kind() == protoreflect.MessageKind:
			l := f.v.List()
			for i := 0; i < l.Len(); i++ {
				walkFields(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), errs)
			}
		case f.fd.IsMap() && f.fd.MapValue().Kind() == protoreflect.MessageKind:
			f.v.Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				walkFields(v.Message(), fmt.Sprintf("%s[%s]", p, k.String()), errs)
				return true
			})
		case !f.fd.IsList() && !f.fd.IsMap() && f.fd.Kind() == protoreflect.MessageKind:
			walkFields(f.v.Message(), p, errs)
		}
	}
}

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// allowed lists, per message, the fields envoysim implements: exactly the fields the
// generator in package envoy writes (TestAllowListIsGenerated holds it to the golden files), so
// that everything allowed is exercised. Values that are allowed as a field but not implemented
// (an enum value, a retry_on condition) are refused when the bootstrap becomes a Config.
var allowed = map[protoreflect.FullName]map[string]bool{
	"envoy.config.bootstrap.v3.Bootstrap":                 set("static_resources", "admin"),
	"envoy.config.bootstrap.v3.Admin":                     set("address"),
	"envoy.config.bootstrap.v3.Bootstrap.StaticResources": set("listeners", "clusters"),
	"envoy.config.core.v3.Address":                        set("socket_address"),
	"envoy.config.core.v3.SocketAddress":                  set("address", "port_value"),
	"envoy.config.listener.v3.Listener":                   set("name", "address", "filter_chains"),
	"envoy.config.listener.v3.FilterChain":                set("filters"),
	"envoy.config.listener.v3.Filter":                     set("name", "typed_config"),
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager": set(
		"stat_prefix", "route_config", "http_filters", "use_remote_address", "normalize_path",
		"merge_slashes", "path_with_escaped_slashes_action"),
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter": set("name", "typed_config"),
	"envoy.extensions.filters.http.router.v3.Router":                         set(),
	"envoy.extensions.filters.http.wasm.v3.Wasm":                             set("config"),
	"envoy.extensions.wasm.v3.PluginConfig": set(
		"name", "root_id", "vm_config", "configuration", "failure_policy"),
	"envoy.extensions.wasm.v3.VmConfig":                                    set("vm_id", "runtime", "code"),
	"envoy.config.core.v3.AsyncDataSource":                                 set("local"),
	"envoy.config.core.v3.DataSource":                                      set("filename"),
	"envoy.config.route.v3.RouteConfiguration":                             set("name", "virtual_hosts"),
	"envoy.config.route.v3.VirtualHost":                                    set("name", "domains", "routes"),
	"envoy.config.route.v3.Route":                                          set("name", "match", "route"),
	"envoy.config.route.v3.RouteMatch":                                     set("prefix"),
	"envoy.config.route.v3.RouteAction":                                    set("cluster", "prefix_rewrite", "timeout", "retry_policy"),
	"envoy.config.route.v3.RetryPolicy":                                    set("retry_on", "num_retries", "retry_host_predicate", "host_selection_retry_max_attempts"),
	"envoy.config.route.v3.RetryPolicy.RetryHostPredicate":                 set("name", "typed_config"),
	"envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate": set(),
	"envoy.config.cluster.v3.Cluster": set(
		"name", "type", "connect_timeout", "load_assignment", "health_checks", "outlier_detection",
		"common_lb_config", "dns_lookup_family", "typed_extension_protocol_options"),
	// HTTP/2 to a cluster (the rate limit service's gRPC): explicit http2, no options.
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions":                    set("explicit_http_config"),
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig": set("http2_protocol_options"),
	"envoy.config.core.v3.Http2ProtocolOptions":                                 set(),
	"envoy.config.cluster.v3.Cluster.CommonLbConfig":                            set("healthy_panic_threshold"),
	"envoy.type.v3.Percent":                                                     set("value"),
	"envoy.config.endpoint.v3.ClusterLoadAssignment":                            set("cluster_name", "endpoints"),
	"envoy.config.endpoint.v3.LocalityLbEndpoints":                              set("lb_endpoints"),
	"envoy.config.endpoint.v3.LbEndpoint":                                       set("endpoint"),
	"envoy.config.endpoint.v3.Endpoint":                                         set("address"),
	"envoy.config.core.v3.HealthCheck": set(
		"timeout", "interval", "unhealthy_threshold", "healthy_threshold", "http_health_check",
		"no_traffic_interval"),
	"envoy.config.core.v3.HealthCheck.HttpHealthCheck": set("path"),
	"envoy.config.cluster.v3.OutlierDetection": set(
		"consecutive_5xx", "interval", "base_ejection_time", "max_ejection_percent",
		"enforcing_consecutive_5xx", "enforcing_success_rate", "max_ejection_time"),
}
