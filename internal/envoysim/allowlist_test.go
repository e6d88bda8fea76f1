package envoysim

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// TestAllowListIsGenerated holds the allow-list to what the generator writes: every allowed
// field of every allowed message is set in some bootstrap the generator wrote (golden files,
// examples). A field no generated bootstrap uses is a field envoysim would
// implement for nobody; remove it, or add the golden file that needs it.
func TestAllowListIsGenerated(t *testing.T) {
	seen := map[protoreflect.FullName]map[string]bool{}
	// proto3 cannot tell a zero written in the file from an absent field: the goldens write
	// healthy_panic_threshold's value 0, which the text shows.
	zeroPanic := regexp.MustCompile(`healthy_panic_threshold:\s*\n\s*value: 0\n`)
	for name, data := range generatedBootstraps(t) {
		if zeroPanic.Match(data) {
			seen["envoy.type.v3.Percent"] = map[string]bool{"value": true}
		}
		js, err := yaml.YAMLToJSON(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b := &bootstrapv3.Bootstrap{}
		if err := protojson.Unmarshal(js, b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		collectSet(t, b.ProtoReflect(), seen)
	}
	var unused []string
	for msg, fields := range allowed {
		if seen[msg] == nil {
			unused = append(unused, string(msg))
			continue
		}
		for f := range fields {
			if !seen[msg][f] {
				unused = append(unused, string(msg)+"."+f)
			}
		}
	}
	slices.Sort(unused)
	if len(unused) > 0 {
		t.Fatalf("allowed but in no generated bootstrap:\n%s", strings.Join(unused, "\n"))
	}
}

// collectSet records, per message type, the fields set in m and in the messages it holds.
func collectSet(t *testing.T, m protoreflect.Message, seen map[protoreflect.FullName]map[string]bool) {
	t.Helper()
	full := m.Descriptor().FullName()
	if full == "google.protobuf.Any" {
		a := &anypb.Any{TypeUrl: m.Get(m.Descriptor().Fields().ByName("type_url")).String(),
			Value: m.Get(m.Descriptor().Fields().ByName("value")).Bytes()}
		inner, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		collectSet(t, inner.ProtoReflect(), seen)
		return
	}
	if strings.HasPrefix(string(full), "google.protobuf.") {
		return
	}
	if seen[full] == nil {
		seen[full] = map[string]bool{}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		seen[full][string(fd.Name())] = true
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			for i := 0; i < v.List().Len(); i++ {
				collectSet(t, v.List().Get(i).Message(), seen)
			}
		case fd.IsMap() && fd.MapValue().Kind() == protoreflect.MessageKind:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				collectSet(t, mv.Message(), seen)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Kind() == protoreflect.MessageKind:
			collectSet(t, v.Message(), seen)
		}
		return true
	})
}
