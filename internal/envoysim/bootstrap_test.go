package envoysim

import (
	"os"
	"strings"
	"testing"
	"time"

	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
)

func TestLoadFixture(t *testing.T) {
	c, err := LoadConfig("testdata/bootstrap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:10000" || c.Admin != "127.0.0.1:9901" || c.StatPrefix != "gateway" || !c.UseRemoteAddress ||
		!c.NormalizePath || !c.MergeSlashes || !c.RejectEscapedSlashes {
		t.Errorf("listener: %+v", c)
	}
	w := c.Wasm
	if w == nil || w.Name != "tokengate" || w.RootID != "tokengate" || w.VMID != "tokengate" ||
		w.FailurePolicy != wasmv3.FailurePolicy_FAIL_CLOSED || !strings.Contains(string(w.Configuration), `"per-ip"`) || len(w.Code) != 8 {
		t.Errorf("wasm: %+v", w)
	}
	users := c.route("users")
	if users.Prefix != "/api/users" || users.Cluster != "users" || users.PrefixRewrite != "/v1/users" || users.Timeout != 2*time.Second {
		t.Errorf("route users: %+v", users)
	}
	rp := users.Retry
	if rp == nil || rp.NumRetries != 2 || !rp.PreviousHosts || rp.HostSelectionAttempts != 5 || !rp.On["5xx"] || !rp.On["connect-failure"] || rp.BackoffBase != 25*time.Millisecond {
		t.Errorf("retry: %+v", rp)
	}
	if api := c.route("api"); api.Retry != nil || api.HasRewrite {
		t.Errorf("route api: %+v", api)
	}
	uc := c.cluster("users")
	hc := uc.HealthCheck
	if len(uc.Endpoints) != 2 || uc.PanicThreshold != 0 || hc == nil || hc.Interval != 2*time.Second || hc.NoTrafficInterval != 2*time.Second ||
		hc.UnhealthyThreshold != 2 || hc.HealthyThreshold != 1 || hc.Path != "/healthz" || hc.UnhealthyInterval != 2*time.Second {
		t.Errorf("cluster users: %+v %+v", uc, hc)
	}
	if o := uc.Outlier; o == nil || o.Consecutive5xx != 3 || o.MaxEjectionPercent != 100 || o.BaseEjectionTime != 30*time.Second || o.EnforcingGateway != 0 {
		t.Errorf("outlier: %+v", uc.Outlier)
	}
	if ac := c.cluster("api"); !ac.DNS || ac.HealthCheck != nil || ac.PanicThreshold != 50 || ac.MaxRetries != 3 || ac.Endpoints[0].Host != "localhost" {
		t.Errorf("cluster api: %+v", ac)
	}
}

// TestRejects pins that what envoysim does not implement is an error naming the field, and
// that what Envoy itself would refuse is refused too.
func TestRejects(t *testing.T) {
	base, err := os.ReadFile("testdata/bootstrap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, old, new, want string
	}{
		{"unknown field", "connect_timeout: 2s", "connect_timeout: 2s\n    conect_timeout: 1s", `unknown field "conect_timeout"`},
		{"lb policy", "connect_timeout: 1s", "lb_policy: LEAST_REQUEST\n    connect_timeout: 1s",
			"static_resources.clusters[0].lb_policy: field envoy.config.cluster.v3.Cluster.lb_policy is not implemented"},
		{"exact path", "match: { prefix: /api }", "match: { path: /api }", "routes[1].match.path: field envoy.config.route.v3.RouteMatch.path is not implemented"},
		{"domains", "domains: ['*']", "domains: ['*.example.com']", `virtual_hosts[0].domains: only ["*"] is implemented by envoysim`},
		{"node", "admin:", "node: { id: n1 }\nadmin:", "node: field envoy.config.bootstrap.v3.Bootstrap.node is not implemented"},
		{"per-try timeout", "num_retries: 2", "num_retries: 2\n                    per_try_timeout: 1s", "retry_policy.per_try_timeout: field"},
		{"unimplemented cluster field", "connect_timeout: 2s", "connect_timeout: 2s\n    per_connection_buffer_limit_bytes: 1024",
			"static_resources.clusters[1].per_connection_buffer_limit_bytes: field envoy.config.cluster.v3.Cluster.per_connection_buffer_limit_bytes is not implemented by envoysim"},
		{"unimplemented hcm field", "stat_prefix: gateway", "stat_prefix: gateway\n          server_name: edge",
			"typed_config.server_name: field envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.server_name is not implemented"},
		{"unimplemented route field", "prefix_rewrite: /v1/users", "prefix_rewrite: /v1/users\n                  host_rewrite_literal: x",
			"routes[0].route.host_rewrite_literal: field"},
		{"escaped slashes action", "path_with_escaped_slashes_action: REJECT_REQUEST", "path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT",
			"typed_config.path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT is not implemented by envoysim"},
		{"unknown retry_on", "retry_on: 5xx,reset", "retry_on: 5xx,envoy-ratelimited,reset", `retry_on: "envoy-ratelimited" is not implemented`},
		{"cluster type", "type: STRICT_DNS", "type: LOGICAL_DNS", "clusters[1].type: LOGICAL_DNS is not implemented"},
		{"success rate", "enforcing_success_rate: 0", "enforcing_success_rate: 100", "outlier_detection.enforcing_success_rate: success-rate ejection is not implemented"},
		{"unknown cluster", "cluster: api\n", "cluster: nope\n", `routes[1].route.cluster: unknown cluster "nope"`},
		{"missing wasm", "testdata/empty.wasm", "testdata/missing.wasm", "vm_config.code.local.filename: open testdata/missing.wasm"},
		{"validation", "interval: 2s\n      no_traffic", "interval: 0s\n      no_traffic", "Interval"},
		{"unknown filter", "- name: envoy.filters.http.router\n            typed_config:\n              '@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
			"- name: envoy.filters.http.buffer\n            typed_config:\n              '@type': type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer\n              max_request_bytes: 10",
			"unable to resolve"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(string(base), tc.old, tc.new, 1)
			if doc == string(base) {
				t.Fatalf("fixture has no %q", tc.old)
			}
			_, err := ParseConfig([]byte(doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v\nwant one containing %q", err, tc.want)
			}
		})
	}
}

// TestRejectsAll reports every unimplemented field at once.
func TestRejectsAll(t *testing.T) {
	base, err := os.ReadFile("testdata/bootstrap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(base), "connect_timeout: 2s", "connect_timeout: 2s\n    per_connection_buffer_limit_bytes: 1024\n    ignore_health_on_host_removal: true", 1)
	_, err = ParseConfig([]byte(doc))
	if err == nil || !strings.Contains(err.Error(), "per_connection_buffer_limit_bytes") || !strings.Contains(err.Error(), "ignore_health_on_host_removal") {
		t.Fatalf("got %v", err)
	}
}
