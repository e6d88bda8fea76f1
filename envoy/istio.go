package envoy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	extensionsv1alpha1 "istio.io/api/extensions/v1alpha1"
	typev1beta1 "istio.io/api/type/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/tokengate/tokengate/internal/config"
)

// Plugin is what an Istio WasmPlugin needs of tokengate's configuration:
// the filter's plugin configuration and the failure policy. Nothing else of a
// gateway spec (listener, admin, routes, wasm path) is used: Istio owns those.
type Plugin struct {
	Config        []byte        // the plugin configuration as compact JSON; config.Parse accepts it
	FailurePolicy FailurePolicy // becomes failStrategy
}

// PluginFromConfig returns the Plugin for a plugin configuration (the JSON
// the filter receives), checked by the filter's own parser. failurePolicy ""
// means DefaultFailurePolicy.
func PluginFromConfig(data []byte, failurePolicy FailurePolicy) (*Plugin, error) {
	if failurePolicy == "" {
		failurePolicy = DefaultFailurePolicy
	}
	ps := &problems{}
	checkFailurePolicy(ps, failurePolicy)
	if len(ps.Problems()) > 0 {
		return nil, ps.err()
	}
	if _, err := config.Parse(data); err != nil {
		return nil, err
	}
	compact, err := canonicalJSON(data)
	if err != nil {
		return nil, fmt.Errorf("envoy: plugin configuration: %w", err)
	}
	return &Plugin{Config: compact, FailurePolicy: failurePolicy}, nil
}

// ParsePlugin reads the filter part of a gateway spec (YAML or JSON): the
// filter block and failure_policy. The other fields of the spec may be left
// out; when given they are decoded, so a mistake in them is still reported.
func ParsePlugin(data []byte) (*Plugin, error) {
	ps := &problems{}
	s := decodeSpec(data, ps)
	if s != nil {
		checkFailurePolicy(ps, s.FailurePolicy)
		checkFilter(ps, s.Filter)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return &Plugin{Config: s.Filter, FailurePolicy: s.FailurePolicy}, nil
}

// IstioOptions says where the module is and which workloads load it. The zero
// value lacks only URL.
type IstioOptions struct {
	// URL of the module: oci://registry/repository:tag or, better,
	// oci://registry/repository@sha256:<manifest digest> (what `tokengate
	// image push` prints); https://host/path/tokengate.wasm; or
	// file:///path/tokengate.wasm on every node.
	URL string
	// SHA256 is written to spec.sha256, which Istio checks before it loads
	// the module: for an https:// URL, the module's sha256; for an oci://
	// URL, the image's manifest digest (without "sha256:"), which is what
	// Istio compares it with. For a file:// URL Istio checks nothing (a
	// warning says so). "" leaves it out (an oci:// URL by digest is checked
	// against its digest anyway).
	SHA256 string
	// ModuleSHA256, when known, is recorded in the annotation
	// ModuleSHA256Annotation, so the module in a cluster can be traced back
	// to a build whatever the URL scheme.
	ModuleSHA256 string
	Name         string            // metadata.name; "" gives "tokengate"
	Namespace    string            // metadata.namespace; "" leaves it to kubectl
	Selector     map[string]string // spec.selector.matchLabels; empty: every workload of the namespace
	Phase        string            // AUTHN, AUTHZ, STATS or UNSPECIFIED_PHASE; "" gives AUTHZ
	Priority     *int32            // order within the phase, higher first; nil leaves it out
	PullPolicy   string            // IfNotPresent or Always; "" leaves Istio's default (IfNotPresent, Always for :latest)
	// PullSecret names a Secret of type kubernetes.io/dockerconfigjson in
	// the plugin's namespace that holds the registry's credentials; "" for
	// a registry the nodes may read without.
	PullSecret string
	// RootNamespace is Istio's root namespace, where a WasmPlugin without a
	// selector applies to every workload of the mesh; "" means istio-system.
	RootNamespace string
	// Traffic selects the direction of the traffic the plugin runs on, as
	// spec.match's mode: SERVER (a sidecar's inbound requests only), CLIENT
	// (outbound; what a gateway's traffic is) or CLIENT_AND_SERVER. "" writes
	// no match, which Istio takes as CLIENT_AND_SERVER: on sidecars, a
	// request between two selected pods then passes the plugin twice.
	Traffic string
}

// trafficModes are the values of IstioOptions.Traffic.
var trafficModes = []string{"SERVER", "CLIENT", "CLIENT_AND_SERVER"}

// DefaultPhase is where the filter goes in an Istio proxy when no phase is
// given: after Istio's authentication filters (so a rule could key on an
// identity they checked) and before its authorization filters (so rejected
// floods cost no policy evaluation).
const DefaultPhase = "AUTHZ"

// DefaultRootNamespace is Istio's default root namespace.
const DefaultRootNamespace = "istio-system"

// ModuleSHA256Annotation is the metadata annotation holding the module's
// sha256 in a generated WasmPlugin.
const ModuleSHA256Annotation = "tokengate.io/module-sha256"

// failStrategies maps the failure policy to Istio's failStrategy, which
// spells FAIL_CLOSED as FAIL_CLOSE.
var failStrategies = map[FailurePolicy]extensionsv1alpha1.FailStrategy{
	FailClosed: extensionsv1alpha1.FailStrategy_FAIL_CLOSE,
	FailOpen:   extensionsv1alpha1.FailStrategy_FAIL_OPEN,
	FailReload: extensionsv1alpha1.FailStrategy_FAIL_RELOAD,
}

var phases = []string{"AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE"}

var pullPolicies = []string{"IfNotPresent", "Always"}

// WasmPlugin returns an Istio WasmPlugin (extensions.istio.io/v1alpha1),
// built from istio.io/api's types, as YAML: the plugin configuration goes to
// spec.pluginConfig (an object, not a string) and the failure policy to
// spec.failStrategy. It also returns warnings a user should read before
// applying it (a plugin that applies to the whole mesh). The output depends
// only on p and o.
//
// Istio hands pluginConfig to the filter as the protobuf Struct's JSON, where
// every number is a float64; a configuration that does not survive that
// conversion unchanged is refused here rather than in the proxy.
func WasmPlugin(p *Plugin, o IstioOptions) (yamlDoc []byte, warnings []string, err error) {
	if err := o.validate(); err != nil {
		return nil, nil, err
	}
	strategy, ok := failStrategies[p.FailurePolicy]
	if !ok {
		return nil, nil, fmt.Errorf("envoy: failure policy %q is not one of %s, %s, %s", p.FailurePolicy, FailClosed, FailOpen, FailReload)
	}
	pluginConfig, err := structForIstio(p.Config)
	if err != nil {
		return nil, nil, err
	}
	spec := &extensionsv1alpha1.WasmPlugin{
		Url:             o.URL,
		Sha256:          o.SHA256,
		PluginName:      PluginName,
		PluginConfig:    pluginConfig,
		Phase:           extensionsv1alpha1.PluginPhase(extensionsv1alpha1.PluginPhase_value[o.phase()]),
		FailStrategy:    strategy,
		Type:            extensionsv1alpha1.PluginType_HTTP,
		ImagePullSecret: o.PullSecret,
	}
	if o.PullPolicy != "" {
		spec.ImagePullPolicy = extensionsv1alpha1.PullPolicy(extensionsv1alpha1.PullPolicy_value[o.PullPolicy])
	}
	if len(o.Selector) > 0 {
		spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: o.Selector}
	}
	if o.Traffic != "" {
		spec.Match = []*extensionsv1alpha1.WasmPlugin_TrafficSelector{
			{Mode: typev1beta1.WorkloadMode(typev1beta1.WorkloadMode_value[o.Traffic])},
		}
	}
	if o.Priority != nil {
		spec.Priority = wrapperspb.Int32(*o.Priority)
	}
	specJSON, err := protojson.Marshal(spec)
	if err != nil {
		return nil, nil, fmt.Errorf("envoy: marshal WasmPlugin spec: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(specJSON))
	dec.UseNumber()
	var specDoc map[string]any
	if err := dec.Decode(&specDoc); err != nil {
		return nil, nil, fmt.Errorf("envoy: re-decode WasmPlugin spec: %w", err)
	}
	// FAIL_CLOSE is the enum's zero, which protojson leaves out: written
	// anyway, so a reader sees the decision.
	specDoc["failStrategy"] = strategy.String()
	metadata := map[string]any{"name": o.name()}
	if o.Namespace != "" {
		metadata["namespace"] = o.Namespace
	}
	if o.ModuleSHA256 != "" {
		metadata["annotations"] = map[string]string{ModuleSHA256Annotation: o.ModuleSHA256}
	}
	doc := map[string]any{
		"apiVersion": "extensions.istio.io/v1alpha1",
		"kind":       "WasmPlugin",
		"metadata":   metadata,
		"spec":       specDoc,
	}
	j, err := compactJSON(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("envoy: encode WasmPlugin: %w", err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		return nil, nil, fmt.Errorf("envoy: convert WasmPlugin to YAML: %w", err)
	}
	if strategy == extensionsv1alpha1.FailStrategy_FAIL_RELOAD {
		warnings = append(warnings, "failStrategy FAIL_RELOAD needs Istio 1.27 or later: "+
			"the WasmPlugin CRD of older releases accepts only FAIL_CLOSE and FAIL_OPEN, and kubectl apply is refused")
	}
	if o.SHA256 != "" && strings.HasPrefix(o.URL, "file://") {
		warnings = append(warnings, "Istio does not check spec.sha256 for a file:// URL: it loads the file as it is on the node")
	}
	if len(o.Selector) == 0 && o.Namespace == o.rootNamespace() {
		warnings = append(warnings, fmt.Sprintf("the WasmPlugin has no selector and is in Istio's root namespace %s: "+
			"it applies to every workload of the mesh (give a selector, or another namespace)", o.rootNamespace()))
	}
	return append([]byte("# Istio WasmPlugin generated by tokengate.\n"), y...), warnings, nil
}

// structForIstio converts the plugin configuration to the Struct of
// spec.pluginConfig and checks that the JSON Istio makes of it again (what
// the filter receives) parses to the same configuration.
func structForIstio(configJSON []byte) (*structpb.Struct, error) {
	want, err := config.Parse(configJSON)
	if err != nil {
		return nil, err
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(configJSON, s); err != nil {
		return nil, fmt.Errorf("envoy: plugin configuration as a protobuf Struct: %w", err)
	}
	again, err := istioConfigJSON(s)
	if err != nil {
		return nil, fmt.Errorf("envoy: plugin configuration from a protobuf Struct: %w", err)
	}
	got, err := config.Parse(again)
	if err != nil || !reflect.DeepEqual(got, want) {
		return nil, ErrInexactNumber
	}
	return s, nil
}

// ErrInexactNumber: a plugin configuration whose numbers Istio cannot pass
// on exactly.
var ErrInexactNumber = errors.New("envoy: the plugin configuration changes on its way through Istio, which turns every " +
	"number of pluginConfig into a float64: keep integers (capacity, refill, cost) at most 2^53")

func (o IstioOptions) name() string {
	if o.Name == "" {
		return PluginName
	}
	return o.Name
}

func (o IstioOptions) phase() string {
	if o.Phase == "" {
		return DefaultPhase
	}
	return o.Phase
}

func (o IstioOptions) rootNamespace() string {
	if o.RootNamespace == "" {
		return DefaultRootNamespace
	}
	return o.RootNamespace
}

var (
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	labelName        = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	sha256Hex        = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

// validate checks the options the way the Kubernetes API server, Istio's
// CRD schema and Istio's module fetcher would, and reports every problem at
// once.
func (o IstioOptions) validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if msg := checkModuleURL(o.URL, o.SHA256); msg != "" {
		bad("%s", msg)
	}
	if o.SHA256 != "" && !sha256Hex.MatchString(o.SHA256) {
		bad("sha256 %q must be 64 lower-case hex digits", o.SHA256)
	}
	if o.ModuleSHA256 != "" && !sha256Hex.MatchString(o.ModuleSHA256) {
		bad("module sha256 %q must be 64 lower-case hex digits", o.ModuleSHA256)
	}
	if n := o.name(); len(n) > 253 || !dns1123Subdomain.MatchString(n) {
		bad("name %q must be a DNS subdomain: lower-case letters, digits, '-' and '.'", n)
	}
	for what, ns := range map[string]string{"namespace": o.Namespace, "root namespace": o.RootNamespace} {
		if ns != "" && (len(ns) > 63 || !dns1123Label.MatchString(ns)) {
			bad("%s %q must be a DNS label: lower-case letters, digits and '-', at most 63", what, ns)
		}
	}
	keys := make([]string, 0, len(o.Selector))
	for k := range o.Selector {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !validLabelKey(k) {
			bad("selector key %q is not a Kubernetes label key", k)
		}
		if v := o.Selector[k]; v != "" && (len(v) > 63 || !labelName.MatchString(v)) {
			bad("selector value %q (of %s) is not a Kubernetes label value", v, k)
		}
	}
	if !slices.Contains(phases, o.phase()) {
		bad("phase %q is not one of %s", o.Phase, strings.Join(phases, ", "))
	}
	if o.PullSecret != "" && (len(o.PullSecret) > 253 || !dns1123Subdomain.MatchString(o.PullSecret)) {
		bad("image pull secret %q must be a Secret name: lower-case letters, digits, '-' and '.'", o.PullSecret)
	}
	if o.Traffic != "" && !slices.Contains(trafficModes, o.Traffic) {
		bad("traffic %q is not one of %s", o.Traffic, strings.Join(trafficModes, ", "))
	}
	if o.PullPolicy != "" && !slices.Contains(pullPolicies, o.PullPolicy) {
		bad("image pull policy %q is not one of %s", o.PullPolicy, strings.Join(pullPolicies, ", "))
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("envoy: invalid Istio options: %s", strings.Join(errs, "; "))
	}
	return nil
}

// checkModuleURL returns what is wrong with a module URL, or "". An oci://
// URL must hold an image reference; a digest in it must agree with sha256.
func checkModuleURL(u, sha string) string {
	const want = "oci://registry/repository@sha256:<digest> (or :tag), https://host/path/tokengate.wasm or file:///path/tokengate.wasm"
	scheme, rest, ok := strings.Cut(u, "://")
	switch {
	case u == "":
		return "url is required: " + want
	case !ok:
		return fmt.Sprintf("url %q has no scheme: want %s", u, want)
	case !slices.Contains([]string{"oci", "https", "file"}, scheme):
		return fmt.Sprintf("url %q: scheme %q is not oci, https or file", u, scheme)
	case rest == "":
		return fmt.Sprintf("url %q has nothing after the scheme: want %s", u, want)
	case hasControl(rest) || strings.ContainsAny(rest, "?#"):
		return fmt.Sprintf("url %q must not hold spaces, control characters, a query or a fragment", u)
	case scheme == "file" && !strings.HasPrefix(rest, "/"):
		return fmt.Sprintf("url %q: a file:// URL needs an absolute path (file:///path/tokengate.wasm)", u)
	case scheme == "https" && (strings.HasPrefix(rest, "/") || !strings.Contains(rest, "/")):
		return fmt.Sprintf("url %q: an https:// URL needs a host and a path", u)
	case scheme != "oci":
		return ""
	}
	ref, err := name.ParseReference(rest, name.StrictValidation)
	if err != nil {
		return fmt.Sprintf("url %q is not an image reference registry/repository:tag or registry/repository@sha256:digest "+
			"(the registry, a host with a dot or a port, is never implied): %v", u, err)
	}
	if d, isDigest := ref.(name.Digest); isDigest && sha != "" && "sha256:"+sha != d.DigestStr() {
		return fmt.Sprintf("url %q is pinned to %s, but sha256 says %s: Istio compares sha256 with the image's manifest digest",
			u, d.DigestStr(), sha)
	}
	return ""
}

// validLabelKey accepts [prefix/]name, prefix a DNS subdomain.
func validLabelKey(k string) bool {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name, prefix = prefix, ""
	} else if prefix == "" || len(prefix) > 253 || !dns1123Subdomain.MatchString(prefix) {
		return false
	}
	return len(name) <= 63 && labelName.MatchString(name)
}

// ParseSelector parses "key=value,key=value" into labels. An empty string
// gives none.
func ParseSelector(s string) (map[string]string, error) {
	labels := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return labels, nil
	}
	for _, pair := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("envoy: selector %q: %q is not key=value", s, pair)
		}
		if _, dup := labels[k]; dup {
			return nil, fmt.Errorf("envoy: selector %q: key %q appears twice", s, k)
		}
		labels[k] = v
	}
	return labels, nil
}
