package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/tokengate/tokengate/envoy"
	"github.com/tokengate/tokengate/internal/oci"
)

// runIstio: tokengate istio (-config FILE | -spec FILE) -url URL [...].
func runIstio(e *env, args []string) int {
	fs := newFlagSet(e, "istio", "(-config FILE | -spec FILE) -url URL [-selector k=v,...] [-namespace NS] [flags]")
	source := addPluginFlags(fs)
	failStrategy := fs.String("failure-policy", "", "with -config: FAIL_CLOSED (default), FAIL_OPEN or FAIL_RELOAD; becomes failStrategy")
	url := fs.String("url", "", "the module: oci://registry/repo@sha256:DIGEST (what `tokengate image push` prints), oci://registry/repo:tag, https://host/path.wasm or file:///path.wasm")
	sha := fs.String("sha256", "", "spec.sha256: with oci://, the image's manifest digest (Istio compares it with the manifest); with https://, the module's sha256 (Istio checks none for file://)")
	wasmPath := fs.String("wasm", "", "the module file: its sha256 goes to an annotation and, for an https:// URL, to spec.sha256")
	selector := fs.String("selector", "", "workload labels, key=value,... (none: every workload of the namespace)")
	namespace := fs.String("namespace", "", "metadata.namespace (none: kubectl's current namespace)")
	rootNamespace := fs.String("root-namespace", envoy.DefaultRootNamespace, "Istio's root namespace, to warn when the plugin applies mesh-wide")
	name := fs.String("name", "tokengate", "metadata.name")
	phase := fs.String("phase", envoy.DefaultPhase, "AUTHN, AUTHZ, STATS or UNSPECIFIED_PHASE")
	priority := fs.Int("priority", 0, "order within the phase, higher first (left out unless given)")
	pullPolicy := fs.String("pull-policy", "", "IfNotPresent or Always (none: Istio's default)")
	pullSecret := fs.String("pull-secret", "", "imagePullSecret: a docker-registry Secret in the plugin's namespace, for a private registry")
	traffic := fs.String("traffic", "", "match mode: SERVER (sidecars: inbound only), CLIENT (gateways) or CLIENT_AND_SERVER (none: no match, Istio's CLIENT_AND_SERVER)")
	outPath := fs.String("o", "", "output file (default: standard output)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	given := givenFlags(fs)
	switch {
	case fs.NArg() > 0:
		e.errorf("istio: unexpected argument %q", fs.Arg(0))
		return exitUsage
	case given["failure-policy"] && !given["config"]:
		e.errorf("istio: -failure-policy goes with -config (a spec has its own failure_policy)")
		return exitUsage
	}

	plugin, code := source.read(e, "istio", given, envoy.FailurePolicy(*failStrategy))
	if plugin == nil {
		return code
	}

	opts := envoy.IstioOptions{URL: *url, SHA256: *sha, Name: *name, Namespace: *namespace, Phase: *phase,
		PullPolicy: *pullPolicy, PullSecret: *pullSecret, RootNamespace: *rootNamespace, Traffic: *traffic}
	var err error
	if opts.Selector, err = envoy.ParseSelector(*selector); err != nil {
		e.errorf("istio: %v", err)
		return exitUsage
	}
	if given["priority"] {
		p := int32(*priority)
		if int(p) != *priority {
			e.errorf("istio: -priority %d does not fit in 32 bits", *priority)
			return exitUsage
		}
		opts.Priority = &p
	}
	if *wasmPath != "" {
		module, err := os.ReadFile(*wasmPath)
		if err != nil {
			e.errorf("istio: %v", err)
			return exitUsage
		}
		opts.ModuleSHA256 = oci.SHA256(module)
		// Istio checks spec.sha256 against the module only for https://
		// (oci:// against the manifest, file:// not at all).
		if strings.HasPrefix(opts.URL, "https://") {
			if opts.SHA256 != "" && opts.SHA256 != opts.ModuleSHA256 {
				e.errorf("istio: -sha256 %s is not the sha256 of %s (%s)", opts.SHA256, *wasmPath, opts.ModuleSHA256)
				return exitInvalid
			}
			opts.SHA256 = opts.ModuleSHA256
		}
	}
	out, warnings, err := envoy.WasmPlugin(plugin, opts)
	if err != nil {
		e.errorf("istio: %v", err)
		return exitInvalid
	}
	for _, w := range warnings {
		fmt.Fprintf(e.stderr, "tokengate: warning: %s\n", w)
	}
	return writeOutput(e, *outPath, out)
}
