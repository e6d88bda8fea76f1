// Command tokengate-envoy turns a gateway spec into the configuration that
// runs tokengate: an Envoy bootstrap (the default) or, with -istio, an Istio
// WasmPlugin manifest. With -check it only validates the spec.
//
//	tokengate-envoy -spec envoy/examples/gateway.yaml -o build/envoy.yaml
//	tokengate-envoy -spec gateway.yaml -istio -url oci://registry/tokengate:v1 -selector istio=ingressgateway
//
// Without -spec the spec is read from standard input; without -o the output
// goes to standard output. Exit status: 0 done, 1 invalid spec or options,
// 2 bad usage.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tokengate/tokengate/envoy"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tokengate-envoy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	specPath := fs.String("spec", "", "gateway spec, YAML or JSON (default: standard input)")
	outPath := fs.String("o", "", "output file (default: standard output)")
	check := fs.Bool("check", false, "only validate the spec; print nothing on success")
	istio := fs.Bool("istio", false, "write an Istio WasmPlugin instead of an Envoy bootstrap")
	url := fs.String("url", "", "with -istio: the module, oci://image:tag, https://... or file:///...")
	sha := fs.String("sha256", "", "with -istio: optional sha256 of the module")
	selector := fs.String("selector", "", "with -istio: workload labels, key=value,...")
	namespace := fs.String("namespace", "", "with -istio: metadata.namespace")
	name := fs.String("name", "tokengate", "with -istio: metadata.name")
	phase := fs.String("phase", envoy.DefaultPhase, "with -istio: AUTHN, AUTHZ, STATS or UNSPECIFIED_PHASE")
	priority := fs.Int("priority", 0, "with -istio: order within the phase, higher first (left out unless given)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: tokengate-envoy [-spec FILE] [-o FILE] [-check] [-istio -url URL [-selector k=v,...] ...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tokengate-envoy: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if !*istio {
		for _, f := range []string{"url", "sha256", "selector", "namespace", "name", "phase", "priority"} {
			if given[f] {
				fmt.Fprintf(stderr, "tokengate-envoy: -%s needs -istio\n", f)
				return 2
			}
		}
	}

	spec, err := readSpec(*specPath, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "tokengate-envoy: %v\n", err)
		return 1
	}
	if *check {
		return 0
	}
	var out []byte
	if *istio {
		opts := envoy.IstioOptions{URL: *url, SHA256: *sha, Name: *name, Namespace: *namespace, Phase: *phase}
		if opts.Selector, err = envoy.ParseSelector(*selector); err != nil {
			fmt.Fprintf(stderr, "tokengate-envoy: %v\n", err)
			return 2
		}
		if given["priority"] {
			p := int32(*priority)
			if int(p) != *priority {
				fmt.Fprintf(stderr, "tokengate-envoy: -priority %d does not fit in 32 bits\n", *priority)
				return 2
			}
			opts.Priority = &p
		}
		out, err = envoy.WasmPlugin(spec, opts)
	} else {
		warnMissingWasm(spec, stderr)
		out, err = envoy.BootstrapYAML(spec)
	}
	if err != nil {
		fmt.Fprintf(stderr, "tokengate-envoy: %v\n", err)
		return 1
	}
	if *outPath == "" {
		_, err = stdout.Write(out)
	} else {
		err = os.WriteFile(*outPath, out, 0o644)
	}
	if err != nil {
		fmt.Fprintf(stderr, "tokengate-envoy: %v\n", err)
		return 1
	}
	return 0
}

// readSpec parses the spec file, or standard input when path is "" or "-".
// A relative wasm path is resolved against the file's directory, or the
// working directory for standard input.
func readSpec(path string, stdin io.Reader) (*envoy.Spec, error) {
	if path != "" && path != "-" {
		return envoy.ParseSpecFile(path)
	}
	data, err := io.ReadAll(stdin)
	if err != nil {
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	s, err := envoy.ParseSpec(data)
	if err != nil {
		return nil, fmt.Errorf("standard input: %w", err)
	}
	return s, nil
}

// warnMissingWasm notes a module that is not built yet: the bootstrap is
// still written, but Envoy will refuse it until the file exists.
func warnMissingWasm(s *envoy.Spec, stderr io.Writer) {
	p, err := s.WasmPath()
	if err != nil {
		return
	}
	if _, err := os.Stat(p); err != nil {
		fmt.Fprintf(stderr, "tokengate-envoy: warning: wasm module %s: %v (make wasm builds it)\n", p, err)
	}
}
