package envoy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/golang/protobuf/jsonpb" //nolint:staticcheck // what Istio writes pluginConfig with
	"github.com/tidwall/gjson"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	extensionsv1alpha1 "istio.io/api/extensions/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/tokengate/tokengate/internal/config"
)

// WasmPluginManifest is one WasmPlugin read from a Kubernetes manifest.
type WasmPluginManifest struct {
	Name, Namespace string
	Spec            *extensionsv1alpha1.WasmPlugin
	// Config is the plugin configuration the filter receives from Istio:
	// the JSON of spec.pluginConfig as Istio writes it (with the deprecated
	// jsonpb marshaller, every number a float64), or nil when pluginConfig
	// is absent or empty (the filter then gets an empty configuration).
	Config []byte
	// Written is spec.pluginConfig as written in the manifest, numbers
	// exact; nil when absent.
	Written []byte
}

// CheckConfig validates the configuration the filter would receive with
// the filter's own parser and returns its *config.Error, or
// ErrInexactNumber when it parses but differs from what the manifest says
// (an integer above 2^53 rounded by Istio's float64), or nil.
func (m *WasmPluginManifest) CheckConfig() error {
	got, err := config.Parse(m.Config)
	if err != nil {
		return err
	}
	if written, err := config.Parse(m.Written); err == nil && !reflect.DeepEqual(got, written) {
		return ErrInexactNumber
	}
	return nil
}

// ID names the WasmPlugin as namespace/name, or name without a namespace.
func (m *WasmPluginManifest) ID() string {
	if m.Namespace == "" {
		return m.Name
	}
	return m.Namespace + "/" + m.Name
}

// ReadWasmPlugins returns the WasmPlugins of a Kubernetes manifest: YAML or
// JSON, one or more documents separated by "---" lines. Documents of other
// kinds are skipped; a manifest without any WasmPlugin is an error. Each
// WasmPlugin's spec is decoded with istio.io/api's type, strictly (an
// unknown field is an error).
func ReadWasmPlugins(data []byte) ([]WasmPluginManifest, error) {
	ps := &problems{what: "WasmPlugin manifest"}
	var out []WasmPluginManifest
	docs := splitYAMLDocuments(data)
	for i, doc := range docs {
		where := ""
		if len(docs) > 1 {
			where = fmt.Sprintf("documents[%d]", i)
		}
		if m, ok := readWasmPlugin(ps, where, doc); ok {
			out = append(out, m)
		}
	}
	if len(out) == 0 && len(ps.Problems()) == 0 {
		ps.addf("", "no WasmPlugin in the manifest (a plugin configuration is JSON; a gateway spec is checked by tokengate envoy -check)")
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return out, nil
}

// readWasmPlugin decodes one document; ok is false for a document of
// another kind or with problems (which it reports).
func readWasmPlugin(ps *problems, where string, doc []byte) (m WasmPluginManifest, ok bool) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
		ps.addf(where, "not valid YAML: %s", strings.Join(strings.Fields(msg), " "))
		return m, false
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
		return m, false // an empty document
	}
	if err := json.Unmarshal(j, &head); err != nil {
		ps.addf(where, "not a Kubernetes object: %v", err)
		return m, false
	}
	if head.Kind != "WasmPlugin" {
		return m, false
	}
	if head.APIVersion != "extensions.istio.io/v1alpha1" {
		ps.addf(join(where, "apiVersion"), "%q: want extensions.istio.io/v1alpha1 for a WasmPlugin", head.APIVersion)
	}
	if head.Metadata.Name == "" {
		ps.addf(join(where, "metadata.name"), "is required")
	}
	m = WasmPluginManifest{Name: head.Metadata.Name, Namespace: head.Metadata.Namespace,
		Spec: &extensionsv1alpha1.WasmPlugin{}}
	spec := gjson.GetBytes(j, "spec")
	if !spec.IsObject() {
		ps.addf(join(where, "spec"), "is required: an object")
		return m, false
	}
	if err := protojson.Unmarshal([]byte(spec.Raw), m.Spec); err != nil {
		ps.addf(join(where, "spec"), "not a WasmPlugin spec: %s", strings.Join(strings.Fields(err.Error()), " "))
		return m, false
	}
	if pc := gjson.Get(spec.Raw, "pluginConfig"); pc.Exists() {
		m.Written = []byte(pc.Raw)
	}
	if pc := m.Spec.GetPluginConfig(); len(pc.GetFields()) > 0 {
		if m.Config, err = istioConfigJSON(pc); err != nil {
			ps.addf(join(where, "spec.pluginConfig"), "cannot be written as JSON: %v", err)
			return m, false
		}
	}
	return m, true
}

// istioConfigJSON writes pluginConfig the way Istio does before it hands it
// to the filter: with github.com/golang/protobuf's jsonpb, so every number
// goes through a float64.
func istioConfigJSON(pc *structpb.Struct) ([]byte, error) {
	out, err := (&jsonpb.Marshaler{}).MarshalToString(pc)
	return []byte(out), err
}

// splitYAMLDocuments splits a YAML stream at its "---" lines.
func splitYAMLDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur []byte
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if t := bytes.TrimRight(line, " \t\r\n"); bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			docs = append(docs, cur)
			cur = nil
			continue
		}
		cur = append(cur, line...)
	}
	return append(docs, cur)
}
