package envoy_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protopath"
	"google.golang.org/protobuf/reflect/protorange"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// The types behind the bootstrap's typed_config fields, registered so
	// that protojson can read them back. The test imports them itself, as
	// Envoy links them itself, rather than relying on package envoy's imports.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tokengate/tokengate/envoy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenDir is where a relative wasm path of a golden spec is resolved, so
// the output does not depend on the machine.
const goldenDir = "/srv/gateway"

// TestGolden generates the bootstrap of every spec in testdata/golden and
// compares it with the stored output; -update rewrites the stored files.
// Every output must also survive the trip back into a validated Bootstrap.
func TestGolden(t *testing.T) {
	specs, err := filepath.Glob("testdata/golden/*.spec.*")
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) == 0 {
		t.Fatal("no golden specs")
	}
	for _, specPath := range specs {
		name := strings.SplitN(filepath.Base(specPath), ".", 2)[0]
		t.Run(name, func(t *testing.T) {
			s := parseFile(t, specPath)
			got, err := envoy.BootstrapYAML(s)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("testdata/golden", name+".envoy.yaml"), got)
			if s.RateLimitService != nil {
				rls, err := envoy.RateLimitConfig(s.Filter)
				if err != nil {
					t.Fatal(err)
				}
				checkGolden(t, filepath.Join("testdata/golden", name+".ratelimit.yaml"), rls)
			}
			want, err := envoy.Bootstrap(s)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, got, want)
		})
	}
}

// TestDeterministic: the same spec gives the same bytes, however the Spec
// was reached (YAML or JSON, fresh parse or reuse).
func TestDeterministic(t *testing.T) {
	a := parseFile(t, "testdata/golden/several-routes.spec.yaml")
	first, err := envoy.BootstrapYAML(a)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		again, err := envoy.BootstrapYAML(parseFile(t, "testdata/golden/several-routes.spec.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, again) {
			t.Fatalf("run %d differs from the first", i)
		}
	}
	asJSON, err := yaml.YAMLToJSON(readFile(t, "testdata/golden/single-route.spec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	fromJSON := parse(t, asJSON)
	fromYAML := parseFile(t, "testdata/golden/single-route.spec.yaml")
	j, err := envoy.BootstrapYAML(fromJSON)
	if err != nil {
		t.Fatal(err)
	}
	y, err := envoy.BootstrapYAML(fromYAML)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(j, y) {
		t.Error("the JSON and YAML forms of one spec give different bootstraps")
	}
}

// TestSpecErrors parses every fixture in testdata/invalid and compares the
// problems, one per line, with the .want file next to it.
func TestSpecErrors(t *testing.T) {
	fixtures, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(fixtures) == 0 {
		t.Fatal("no fixtures")
	}
	for _, fixture := range fixtures {
		name := strings.TrimSuffix(filepath.Base(fixture), ".yaml")
		t.Run(name, func(t *testing.T) {
			s, err := envoy.ParseSpec(readFile(t, fixture))
			if err == nil {
				t.Fatalf("parsed without error: %+v", s)
			}
			var se *envoy.Error
			if !errors.As(err, &se) || len(se.Problems) == 0 {
				t.Fatalf("error %T is not a *envoy.Error with problems: %v", err, err)
			}
			// One problem per line, so the fixtures read well; the
			// message format itself is TestValidateEditedSpec's.
			var want bytes.Buffer
			for _, p := range se.Problems {
				want.WriteString(p.String() + "\n")
			}
			checkGolden(t, strings.TrimSuffix(fixture, ".yaml")+".want", want.Bytes())
		})
	}
}

// TestValidateEditedSpec: a Spec changed in code is checked again by
// Bootstrap, with the same paths ParseSpec uses.
func TestValidateEditedSpec(t *testing.T) {
	s := parseFile(t, "testdata/golden/single-route.spec.yaml")
	s.Routes[0].Backends = append(s.Routes[0].Backends, envoy.Backend{Host: "127.0.0.1", Port: 0})
	s.Routes = append(s.Routes, s.Routes[0])
	s.FailurePolicy = ""
	_, err := envoy.Bootstrap(s)
	want := `invalid gateway spec: failure_policy: "" is not one of FAIL_CLOSED, FAIL_OPEN, FAIL_RELOAD; ` +
		`routes[0].backends[2]: port must be between 1 and 65535, got 0; ` +
		`routes[1].backends[2]: port must be between 1 and 65535, got 0; ` +
		`routes[1].name: "users" is already the name of routes[0]; ` +
		`routes[1].prefix: "/api/users" is already the prefix of routes[0]`
	if err == nil || err.Error() != want {
		t.Errorf("got error\n%v\nwant\n%s", err, want)
	}
}

// TestRouteOrder: longer prefixes come first, whatever the spec order;
// equal lengths keep spec order.
func TestRouteOrder(t *testing.T) {
	s := parseFile(t, "testdata/golden/several-routes.spec.yaml")
	s.Routes = append(s.Routes, envoy.Route{
		Name: "apx", Prefix: "/apx", Backends: []envoy.Backend{{Host: "10.0.0.9", Port: 80}},
		HealthCheck: envoy.DefaultHealthCheck(), Timeout: envoy.DefaultTimeout,
	})
	b, err := envoy.Bootstrap(s)
	if err != nil {
		t.Fatal(err)
	}
	var hcm hcmv3.HttpConnectionManager
	if err := b.StaticResources.Listeners[0].FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range hcm.GetRouteConfig().VirtualHosts[0].Routes {
		got = append(got, r.GetMatch().GetPrefix())
	}
	want := []string{"/api/orders/", "/api/users", "/api", "/apx"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("route order %q, want %q", got, want)
	}
}

// TestWasmPath: ParseSpecFile resolves a relative wasm path against the
// spec's directory, ParseSpec against the working directory; an absolute
// path stays.
func TestWasmPath(t *testing.T) {
	dir := t.TempDir()
	spec := bytes.Replace(readFile(t, "testdata/golden/single-route.spec.yaml"),
		[]byte("/opt/tokengate/tokengate.wasm"), []byte("../build/tokengate.wasm"), 1)
	sub := filepath.Join(dir, "conf")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	specPath := filepath.Join(sub, "gateway.yaml")
	if err := os.WriteFile(specPath, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := envoy.ParseSpecFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s.WasmPath(); err != nil || p != filepath.Join(dir, "build", "tokengate.wasm") {
		t.Errorf("from a file: WasmPath() = %q, %v", p, err)
	}
	if s, err = envoy.ParseSpec(spec); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s.WasmPath(); err != nil || p != filepath.Join(filepath.Dir(wd), "build", "tokengate.wasm") {
		t.Errorf("from bytes: WasmPath() = %q, %v", p, err)
	}
	s.Wasm = "/x/../y/t.wasm"
	if p, err := s.WasmPath(); err != nil || p != "/y/t.wasm" {
		t.Errorf("absolute: WasmPath() = %q, %v", p, err)
	}
}

// TestFilterBlock: the filter block reaches Envoy as compact JSON, keys
// sorted, numbers and strings exactly as written (no HTML escaping).
func TestFilterBlock(t *testing.T) {
	s := parseFile(t, "testdata/golden/json.spec.json")
	want := `{"body":"<slow down & retry>","rules":[{"capacity":100,"interval":"1m","key":["remote_address"],` +
		`"name":"per-client","refill":100}],"status":429}`
	if string(s.Filter) != want {
		t.Errorf("Filter = %s\nwant    %s", s.Filter, want)
	}
}

// TestExampleSpec keeps envoy/examples/gateway.yaml valid, with its three
// backends, two rules and a refill a person can watch, on loopback, with a
// route prefix that does not catch neighbours (/api/, not /api: /apix).
func TestExampleSpec(t *testing.T) {
	s, err := envoy.ParseSpecFile("examples/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Listen.String() != "127.0.0.1:10000" || s.Admin.String() != "127.0.0.1:9901" {
		t.Errorf("listen %s, admin %s", s.Listen, s.Admin)
	}
	if len(s.Routes) != 1 || len(s.Routes[0].Backends) != 3 || s.Routes[0].Prefix != "/api/" {
		t.Errorf("routes: %+v", s.Routes)
	}
	y, err := envoy.BootstrapYAML(s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := envoy.Bootstrap(s)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, y, b)
}

// roundTrip reads generated YAML back the way Envoy does (YAML to JSON to
// proto, unknown fields refused), checks that nothing was lost, and
// validates the result, unpacking every Any.
func roundTrip(t *testing.T, y []byte, want *bootstrapv3.Bootstrap) {
	t.Helper()
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatalf("YAML to JSON: %v", err)
	}
	var got bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(j, &got); err != nil {
		t.Fatalf("protojson.Unmarshal: %v", err)
	}
	if !proto.Equal(&got, want) {
		t.Errorf("the YAML does not read back as the bootstrap it came from")
	}
	validateAll(t, &got)
}

// validateAll runs ValidateAll on m and on the content of every Any in it.
func validateAll(t *testing.T, m proto.Message) {
	t.Helper()
	type validator interface{ ValidateAll() error }
	anys := 0
	err := protorange.Range(m.ProtoReflect(), func(p protopath.Values) error {
		v, ok := p.Index(-1).Value.Interface().(interface {
			Interface() proto.Message
		})
		if !ok {
			return nil
		}
		msg := v.Interface()
		if a, isAny := msg.(*anypb.Any); isAny {
			anys++
			inner, err := a.UnmarshalNew()
			if err != nil {
				return err
			}
			validateAll(t, inner)
			return nil
		}
		if p.Len() == 1 { // the root
			if val, ok := msg.(validator); ok {
				return val.ValidateAll()
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("%s: %v", m.ProtoReflect().Descriptor().FullName(), err)
	}
	if _, isBootstrap := m.(*bootstrapv3.Bootstrap); isBootstrap && anys < 3 {
		t.Errorf("found %d Any fields in the bootstrap, want at least 3 (hcm, wasm, router)", anys)
	}
}

func parseFile(t *testing.T, path string) *envoy.Spec {
	t.Helper()
	return parse(t, readFile(t, path))
}

func parse(t *testing.T, data []byte) *envoy.Spec {
	t.Helper()
	s, err := envoy.ParseSpec(data)
	if err != nil {
		t.Fatal(err)
	}
	s.Dir = goldenDir
	return s
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	return readFileF(t, path)
}

func readFileF(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// checkGolden compares got with the file at path, or writes it with -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./envoy/... -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./envoy/... -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
