package envoy_test

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tokengate/tokengate/envoy"
)

// TestWasmPluginGolden compares generated WasmPlugins with the stored ones.
func TestWasmPluginGolden(t *testing.T) {
	priority := int32(10)
	cases := []struct {
		name string
		spec string
		opts envoy.IstioOptions
	}{
		{"single-route", "testdata/golden/single-route.spec.yaml", envoy.IstioOptions{
			URL:       "oci://ghcr.io/tokengate/tokengate:v0.1.0",
			Namespace: "istio-ingress",
			Selector:  map[string]string{"istio": "ingressgateway", "app.kubernetes.io/part-of": "edge"},
			Priority:  &priority,
		}},
		{"defaults", "testdata/golden/several-routes.spec.yaml", envoy.IstioOptions{
			URL:    "file:///opt/filters/tokengate.wasm",
			SHA256: strings.Repeat("ab", 32),
			Name:   "rate-limit",
			Phase:  "AUTHN",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := envoy.WasmPlugin(parseFile(t, c.spec), c.opts)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, "testdata/golden/"+c.name+".istio.yaml", got)
		})
	}
}

// TestWasmPluginFields: failStrategy spelling, pluginConfig as an object
// equal to the filter block, and the fixed fields.
func TestWasmPluginFields(t *testing.T) {
	for policy, strategy := range map[envoy.FailurePolicy]string{
		envoy.FailClosed: "FAIL_CLOSE", envoy.FailOpen: "FAIL_OPEN", envoy.FailReload: "FAIL_RELOAD",
	} {
		s := parseFile(t, "testdata/golden/json.spec.json")
		s.FailurePolicy = policy
		out, err := envoy.WasmPlugin(s, envoy.IstioOptions{URL: "oci://r/t:1"})
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			APIVersion string `json:"apiVersion"`
			Kind       string
			Metadata   map[string]string
			Spec       struct {
				URL          string
				PluginName   string
				FailStrategy string
				Phase        string
				Type         string
				PluginConfig map[string]any
				Priority     *int32
				Selector     any
			}
		}
		if err := yaml.UnmarshalStrict(out, &doc); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		sp := doc.Spec
		if doc.APIVersion != "extensions.istio.io/v1alpha1" || doc.Kind != "WasmPlugin" ||
			doc.Metadata["name"] != "tokengate" || len(doc.Metadata) != 1 {
			t.Errorf("header: %+v", doc)
		}
		if sp.FailStrategy != strategy || sp.PluginName != "tokengate" || sp.Phase != "AUTHZ" || sp.Type != "HTTP" ||
			sp.URL != "oci://r/t:1" || sp.Priority != nil || sp.Selector != nil {
			t.Errorf("%s: spec %+v", policy, sp)
		}
		if sp.PluginConfig["body"] != "<slow down & retry>" || sp.PluginConfig["status"] != float64(429) {
			t.Errorf("pluginConfig %v", sp.PluginConfig)
		}
	}
}

func TestWasmPluginOptionErrors(t *testing.T) {
	s := parseFile(t, "testdata/golden/single-route.spec.yaml")
	_, err := envoy.WasmPlugin(s, envoy.IstioOptions{
		URL: "ftp://x/t.wasm", SHA256: "ABC", Name: "Rate_Limit", Namespace: "a.b",
		Selector: map[string]string{"bad key": "v", "app": "-x"}, Phase: "LATE",
	})
	want := `invalid Istio options: url "ftp://x/t.wasm": scheme must be oci, http, https or file; ` +
		`sha256 "ABC" must be 64 lower-case hex digits; ` +
		`name "Rate_Limit" must be a DNS subdomain: lower-case letters, digits, '-' and '.'; ` +
		`namespace "a.b" must be a DNS label: lower-case letters, digits and '-', at most 63; ` +
		`selector value "-x" (of app) is not a Kubernetes label value; ` +
		`selector key "bad key" is not a Kubernetes label key; ` +
		`phase "LATE" is not one of AUTHN, AUTHZ, STATS, UNSPECIFIED_PHASE`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	if _, err := envoy.WasmPlugin(s, envoy.IstioOptions{}); err == nil || !strings.Contains(err.Error(), "url is required") {
		t.Errorf("no URL: %v", err)
	}
}

func TestParseSelector(t *testing.T) {
	got, err := envoy.ParseSelector("istio=ingressgateway, app=gw,empty=")
	if err != nil || len(got) != 3 || got["istio"] != "ingressgateway" || got["app"] != "gw" || got["empty"] != "" {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range []string{"a", "=b", "a=1,a=2"} {
		if _, err := envoy.ParseSelector(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if got, err := envoy.ParseSelector(""); err != nil || len(got) != 0 {
		t.Errorf("empty: %v, %v", got, err)
	}
}
