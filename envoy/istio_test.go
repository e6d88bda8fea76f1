package envoy_test

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	extensionsv1alpha1 "istio.io/api/extensions/v1alpha1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/tokengate/tokengate/envoy"
	"github.com/tokengate/tokengate/internal/config"
)

var digest = strings.Repeat("0123456789abcdef", 4)

func pluginFromSpecFile(t *testing.T, path string) *envoy.Plugin {
	t.Helper()
	p, err := envoy.ParsePlugin(readFile(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWasmPluginGolden compares generated WasmPlugins with the stored ones.
func TestWasmPluginGolden(t *testing.T) {
	priority := int32(10)
	cases := []struct {
		name   string
		plugin *envoy.Plugin
		opts   envoy.IstioOptions
		warn   []string // what the warnings say, in order
	}{
		{"single-route", pluginFromSpecFile(t, "testdata/golden/single-route.spec.yaml"), envoy.IstioOptions{
			URL:          "oci://registry.example.com/tokengate@sha256:" + digest,
			ModuleSHA256: strings.Repeat("ab", 32),
			Namespace:    "istio-ingress",
			Selector:     map[string]string{"istio": "ingressgateway", "app.kubernetes.io/part-of": "edge"},
			Priority:     &priority,
			PullPolicy:   "IfNotPresent",
			PullSecret:   "registry-credentials",
		}, nil},
		{"defaults", pluginFromSpecFile(t, "testdata/golden/several-routes.spec.yaml"), envoy.IstioOptions{
			URL:    "https://filters.example.com/tokengate.wasm",
			SHA256: strings.Repeat("ab", 32),
			Name:   "rate-limit",
			Phase:  "AUTHN",
		}, []string{"failStrategy FAIL_RELOAD needs Istio 1.27 or later"}}, // the spec's failure_policy
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, warnings, err := envoy.WasmPlugin(c.plugin, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(warnings) != len(c.warn) {
				t.Fatalf("warnings %q, want %q", warnings, c.warn)
			}
			for i, w := range c.warn {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %d: %q lacks %q", i, warnings[i], w)
				}
			}
			checkGolden(t, "testdata/golden/"+c.name+".istio.yaml", got)
		})
	}
}

// TestWasmPluginRoundTrip reads a generated manifest back with istio.io/api's
// types and compares it field by field with the message it should be.
func TestWasmPluginRoundTrip(t *testing.T) {
	for policy, strategy := range map[envoy.FailurePolicy]extensionsv1alpha1.FailStrategy{
		envoy.FailClosed: extensionsv1alpha1.FailStrategy_FAIL_CLOSE,
		envoy.FailOpen:   extensionsv1alpha1.FailStrategy_FAIL_OPEN,
		envoy.FailReload: extensionsv1alpha1.FailStrategy_FAIL_RELOAD,
	} {
		p := pluginFromSpecFile(t, "testdata/golden/json.spec.json")
		p.FailurePolicy = policy
		priority := int32(-3)
		out, _, err := envoy.WasmPlugin(p, envoy.IstioOptions{
			URL: "oci://r.example/t@sha256:" + digest, Namespace: "edge", Selector: map[string]string{"app": "gw"},
			Priority: &priority, Phase: "STATS", PullPolicy: "Always", PullSecret: "creds", Traffic: "SERVER",
		})
		if err != nil {
			t.Fatal(err)
		}
		plugins, err := envoy.ReadWasmPlugins(out)
		if err != nil || len(plugins) != 1 {
			t.Fatalf("%v, %d plugins\n%s", err, len(plugins), out)
		}
		m := plugins[0]
		if m.ID() != "edge/tokengate" {
			t.Errorf("id %q", m.ID())
		}
		wantConfig := &structpb.Struct{}
		if err := wantConfig.UnmarshalJSON(p.Config); err != nil {
			t.Fatal(err)
		}
		want := &extensionsv1alpha1.WasmPlugin{
			Url:             "oci://r.example/t@sha256:" + digest,
			PluginName:      "tokengate",
			PluginConfig:    wantConfig,
			Phase:           extensionsv1alpha1.PluginPhase_STATS,
			Priority:        wrapperspb.Int32(-3),
			FailStrategy:    strategy,
			Type:            extensionsv1alpha1.PluginType_HTTP,
			ImagePullPolicy: extensionsv1alpha1.PullPolicy_Always,
			ImagePullSecret: "creds",
			Selector:        &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "gw"}},
			Match:           []*extensionsv1alpha1.WasmPlugin_TrafficSelector{{Mode: typev1beta1.WorkloadMode_SERVER}},
		}
		if !proto.Equal(m.Spec, want) {
			t.Errorf("%s: read back\n%v\nwant\n%v", policy, m.Spec, want)
		}
		// What the filter receives from Istio parses to what the plugin
		// configuration says.
		got, err := config.Parse(m.Config)
		if err != nil {
			t.Fatal(err)
		}
		orig, _ := config.Parse(p.Config)
		if got.Body != "<slow down & retry>" || got.Body != orig.Body || got.Rules[0].Capacity != orig.Rules[0].Capacity {
			t.Errorf("config through Istio: %+v", got)
		}
	}
}

// TestPluginNeedsOnlyTheFilter: the filter block and failure_policy are
// enough; listen, admin, wasm and routes may be left out.
func TestPluginNeedsOnlyTheFilter(t *testing.T) {
	p, err := envoy.ParsePlugin([]byte("failure_policy: FAIL_OPEN\nfilter:\n  rules:\n  - {name: a, key: [path], capacity: 3, refill: 1, interval: 1s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.FailurePolicy != envoy.FailOpen || string(p.Config) != `{"rules":[{"capacity":3,"interval":"1s","key":["path"],"name":"a","refill":1}]}` {
		t.Errorf("%+v %s", p, p.Config)
	}
	_, err = envoy.ParsePlugin([]byte("listen: 1\nfilter:\n  rules: []\n"))
	want := `invalid gateway spec: filter.rules: must hold at least one rule; listen: must be a string, got a number`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	if _, err := envoy.ParsePlugin([]byte("routes: []\n")); err == nil || !strings.Contains(err.Error(), "filter: is required") {
		t.Errorf("no filter: %v", err)
	}
}

func TestPluginFromConfig(t *testing.T) {
	p, err := envoy.PluginFromConfig([]byte(`{"rules": [{"name": "a", "key": ["path"], "capacity": 3, "refill": 1, "interval": "1s"}]}`), "")
	if err != nil || p.FailurePolicy != envoy.FailClosed || !strings.HasPrefix(string(p.Config), `{"rules":[{"capacity":3,`) {
		t.Fatalf("%+v, %v", p, err)
	}
	_, err = envoy.PluginFromConfig([]byte(`{"rules": []}`), "FAIL_SOMETIMES")
	if err == nil || !strings.Contains(err.Error(), `failure_policy: "FAIL_SOMETIMES" is not one of`) {
		t.Errorf("bad policy: %v", err)
	}
	_, err = envoy.PluginFromConfig([]byte(`{"rules": [], "bogus": 1}`), "")
	if err == nil || !strings.HasPrefix(err.Error(), "invalid tokengate configuration: bogus: unknown field (allowed here: rules, ") ||
		!strings.HasSuffix(err.Error(), "; rules: must hold at least one rule") {
		t.Errorf("got %v", err)
	}
}

// TestWasmPluginInexactNumbers: Istio turns pluginConfig numbers into
// float64, so a capacity above 2^53 would reach the filter changed.
func TestWasmPluginInexactNumbers(t *testing.T) {
	p, err := envoy.PluginFromConfig([]byte(`{"rules": [{"name": "a", "key": ["path"], "capacity": 9007199254740993, "refill": 1, "interval": "1s"}]}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := envoy.WasmPlugin(p, envoy.IstioOptions{URL: "oci://r.example/t:1"}); !errors.Is(err, envoy.ErrInexactNumber) {
		t.Errorf("got %v", err)
	}
	p.Config = []byte(`{"rules": [{"name": "a", "key": ["path"], "capacity": 9007199254740992, "refill": 1, "interval": "1s"}]}`)
	if _, _, err := envoy.WasmPlugin(p, envoy.IstioOptions{URL: "oci://r.example/t:1"}); err != nil {
		t.Errorf("2^53: %v", err)
	}
}

func TestWasmPluginMeshWideWarning(t *testing.T) {
	p := pluginFromSpecFile(t, "testdata/golden/json.spec.json")
	cases := []struct {
		opts envoy.IstioOptions
		warn bool
	}{
		{envoy.IstioOptions{URL: "oci://r.example/t:1", Namespace: "istio-system"}, true},
		{envoy.IstioOptions{URL: "oci://r.example/t:1", Namespace: "istio-system", Selector: map[string]string{"istio": "ingressgateway"}}, false},
		{envoy.IstioOptions{URL: "oci://r.example/t:1", Namespace: "apps"}, false},
		{envoy.IstioOptions{URL: "oci://r.example/t:1", Namespace: "mesh-root", RootNamespace: "mesh-root"}, true},
	}
	for _, c := range cases {
		_, warnings, err := envoy.WasmPlugin(p, c.opts)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(warnings) == 1 && strings.Contains(warnings[0], "applies to every workload of the mesh"); got != c.warn {
			t.Errorf("%+v: warnings %q", c.opts, warnings)
		}
	}
}

// TestWasmPluginIstioWarnings: what Istio would do differently from what the
// manifest seems to ask is said: FAIL_RELOAD exists only from Istio 1.27, and a
// sha256 with a file:// URL is never checked.
func TestWasmPluginIstioWarnings(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	selector := map[string]string{"istio": "ingressgateway"}
	for _, c := range []struct {
		policy envoy.FailurePolicy
		url    string
		sha256 string
		want   string // "" for no warning
	}{
		{envoy.FailClosed, "oci://r.example/t:1", "", ""},
		{envoy.FailOpen, "https://h.example/t.wasm", sha, ""},
		{envoy.FailReload, "oci://r.example/t:1", "", "failStrategy FAIL_RELOAD needs Istio 1.27 or later"},
		{envoy.FailClosed, "file:///opt/t.wasm", "", ""},
		{envoy.FailClosed, "file:///opt/t.wasm", sha, "Istio does not check spec.sha256 for a file:// URL"},
	} {
		p := pluginFromSpecFile(t, "testdata/golden/json.spec.json")
		p.FailurePolicy = c.policy
		_, warnings, err := envoy.WasmPlugin(p, envoy.IstioOptions{URL: c.url, SHA256: c.sha256, Selector: selector})
		if err != nil {
			t.Fatal(err)
		}
		if ok := (c.want == "" && len(warnings) == 0) || (len(warnings) == 1 && strings.Contains(warnings[0], c.want)); !ok {
			t.Errorf("%s %s sha256=%q: warnings %q, want %q", c.policy, c.url, c.sha256, warnings, c.want)
		}
	}
}

func TestWasmPluginOptionErrors(t *testing.T) {
	p := pluginFromSpecFile(t, "testdata/golden/single-route.spec.yaml")
	_, _, err := envoy.WasmPlugin(p, envoy.IstioOptions{
		URL: "ftp://x/t.wasm", SHA256: "ABC", Name: "Rate_Limit", Namespace: "a.b",
		Selector: map[string]string{"bad key": "v", "app": "-x"}, Phase: "LATE", PullPolicy: "Never", PullSecret: "My_Secret",
		Traffic: "INBOUND",
	})
	want := `envoy: invalid Istio options: ` +
		`image pull policy "Never" is not one of IfNotPresent, Always; ` +
		`image pull secret "My_Secret" must be a Secret name: lower-case letters, digits, '-' and '.'; ` +
		`name "Rate_Limit" must be a DNS subdomain: lower-case letters, digits, '-' and '.'; ` +
		`namespace "a.b" must be a DNS label: lower-case letters, digits and '-', at most 63; ` +
		`phase "LATE" is not one of AUTHN, AUTHZ, STATS, UNSPECIFIED_PHASE; ` +
		`selector key "bad key" is not a Kubernetes label key; ` +
		`selector value "-x" (of app) is not a Kubernetes label value; ` +
		`sha256 "ABC" must be 64 lower-case hex digits; ` +
		`traffic "INBOUND" is not one of SERVER, CLIENT, CLIENT_AND_SERVER; ` +
		`url "ftp://x/t.wasm": scheme "ftp" is not oci, https or file`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

func TestWasmPluginURLs(t *testing.T) {
	p := pluginFromSpecFile(t, "testdata/golden/json.spec.json")
	cases := []struct {
		url, sha, wantErr string
	}{
		{"oci://registry.example.com/tokengate:v1", "", ""},
		{"oci://registry.example.com:5000/team/tokengate@sha256:" + digest, "", ""},
		{"oci://registry.example.com/tokengate@sha256:" + digest, digest, ""},
		{"https://downloads.example.com/tokengate.wasm", digest, ""},
		{"file:///opt/tokengate.wasm", "", ""},
		{"", "", "url is required"},
		{"registry.example.com/tokengate:v1", "", "has no scheme"},
		{"http://downloads.example.com/tokengate.wasm", "", `scheme "http" is not oci, https or file`},
		{"oci://", "", "nothing after the scheme"},
		{"https://", "", "nothing after the scheme"},
		{"file://", "", "nothing after the scheme"},
		{"file://opt/tokengate.wasm", "", "needs an absolute path"},
		{"https://tokengate.wasm", "", "needs a host and a path"},
		{"oci://Registry/UPPER:v1", "", "is not an image reference"},
		{"oci://r.example/t@sha256:" + digest, strings.Repeat("f", 64), "Istio compares sha256 with the image's manifest digest"},
		{"https://h.example/t.wasm?x=1", "", "a query or a fragment"},
	}
	for _, c := range cases {
		_, _, err := envoy.WasmPlugin(p, envoy.IstioOptions{URL: c.url, SHA256: c.sha})
		if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("url %q: got %v, want %q", c.url, err, c.wantErr)
		}
	}
}

func TestReadWasmPluginsErrors(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"no plugin", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "no WasmPlugin in the manifest"},
		{"bad yaml", "kind: [\n", "not valid YAML"},
		{"unknown field", "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: x}\nspec: {url: oci://r.example/t:1, plugin_cfg: {}}\n", `spec: not a WasmPlugin spec`},
		{"no spec", "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: x}\n", "spec: is required"},
		{"second document", "kind: Namespace\n---\napiVersion: extensions.istio.io/v1beta9\nkind: WasmPlugin\nspec: {}\n",
			`documents[1].apiVersion: "extensions.istio.io/v1beta9": want extensions.istio.io/v1alpha1 for a WasmPlugin; documents[1].metadata.name: is required`},
	}
	for _, c := range cases {
		_, err := envoy.ReadWasmPlugins([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "invalid WasmPlugin manifest: ") {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
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
