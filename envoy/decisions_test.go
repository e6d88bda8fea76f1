package envoy_test

import (
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tokengate/tokengate/envoy"
)

// TestDecisions pins the choices DESIGN.md explains, so that a careless
// -update of the golden files cannot undo one unnoticed.
func TestDecisions(t *testing.T) {
	b, err := envoy.Bootstrap(parseFile(t, "testdata/golden/dns-backends.spec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]clusterv3.Cluster_DiscoveryType{}
	for _, c := range b.StaticResources.Clusters {
		types[c.Name] = c.GetType()
		if got := c.GetCommonLbConfig().GetHealthyPanicThreshold(); got == nil || got.Value != 0 {
			t.Errorf("%s: healthy_panic_threshold %v, want an explicit 0", c.Name, got)
		}
		od := c.GetOutlierDetection()
		if od.GetMaxEjectionPercent().GetValue() != 100 || od.GetConsecutive_5Xx().GetValue() != 3 ||
			od.GetEnforcingConsecutive_5Xx().GetValue() != 100 || od.GetEnforcingSuccessRate() == nil ||
			od.GetEnforcingSuccessRate().GetValue() != 0 || od.GetBaseEjectionTime().AsDuration() != 30*time.Second {
			t.Errorf("%s: outlier_detection %v", c.Name, od)
		}
		hc := c.GetHealthChecks()[0]
		if hc.GetNoTrafficInterval().AsDuration() != hc.GetInterval().AsDuration() || hc.GetInterval().AsDuration() != 5*time.Second {
			t.Errorf("%s: health check intervals %v / %v", c.Name, hc.GetInterval(), hc.GetNoTrafficInterval())
		}
		if c.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN {
			t.Errorf("%s: lb_policy %v", c.Name, c.GetLbPolicy())
		}
	}
	want := map[string]clusterv3.Cluster_DiscoveryType{
		"users": clusterv3.Cluster_STRICT_DNS, "mixed": clusterv3.Cluster_STRICT_DNS, "static": clusterv3.Cluster_STATIC,
	}
	for name, typ := range want {
		if types[name] != typ {
			t.Errorf("cluster %s is %v, want %v", name, types[name], typ)
		}
	}

	var hcm hcmv3.HttpConnectionManager
	if err := b.StaticResources.Listeners[0].FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	if !hcm.GetUseRemoteAddress().GetValue() || hcm.GetCodecType() != hcmv3.HttpConnectionManager_AUTO {
		t.Errorf("hcm: use_remote_address %v, codec %v", hcm.GetUseRemoteAddress(), hcm.GetCodecType())
	}
	// Rules and routes compare the normalized path, the one the backend gets (DESIGN.md).
	if !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() ||
		hcm.GetPathWithEscapedSlashesAction() != hcmv3.HttpConnectionManager_REJECT_REQUEST {
		t.Errorf("hcm: normalize_path %v, merge_slashes %v, path_with_escaped_slashes_action %v",
			hcm.GetNormalizePath(), hcm.GetMergeSlashes(), hcm.GetPathWithEscapedSlashesAction())
	}
	filters := hcm.GetHttpFilters()
	if len(filters) != 2 || filters[0].Name != "envoy.filters.http.wasm" || filters[1].Name != "envoy.filters.http.router" {
		t.Fatalf("http_filters %v", filters)
	}
	var wasm wasmfilterv3.Wasm
	if err := filters[0].GetTypedConfig().UnmarshalTo(&wasm); err != nil {
		t.Fatal(err)
	}
	var conf wrapperspb.StringValue
	if err := wasm.GetConfig().GetConfiguration().UnmarshalTo(&conf); err != nil {
		t.Fatal(err)
	}
	vm := wasm.GetConfig().GetVmConfig()
	if wasm.GetConfig().GetRootId() != "tokengate" || vm.GetVmId() != "tokengate" ||
		vm.GetRuntime() != "envoy.wasm.runtime.v8" || vm.GetCode().GetLocal().GetFilename() != "/opt/tokengate/tokengate.wasm" ||
		wasm.GetConfig().GetFailurePolicy().String() != "FAIL_CLOSED" || conf.Value[0] != '{' {
		t.Errorf("wasm config %v", wasm.GetConfig())
	}
	for _, r := range hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		rp := r.GetRoute().GetRetryPolicy()
		checkRetry(t, r.Name, rp)
	}
}

func checkRetry(t *testing.T, route string, rp *routev3.RetryPolicy) {
	t.Helper()
	if rp.GetNumRetries().GetValue() != 1 || rp.GetRetryOn() != "5xx,reset,connect-failure,refused-stream" ||
		len(rp.GetRetryHostPredicate()) != 1 ||
		rp.GetRetryHostPredicate()[0].Name != "envoy.retry_host_predicates.previous_hosts" ||
		rp.GetHostSelectionRetryMaxAttempts() != 5 {
		t.Errorf("route %s: retry policy %v", route, rp)
	}
}
