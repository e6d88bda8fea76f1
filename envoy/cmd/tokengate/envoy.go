package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tokengate/tokengate/envoy"
)

// runEnvoy: tokengate envoy [-spec FILE] [-o FILE] [-check].
func runEnvoy(e *env, args []string) int {
	fs := newFlagSet(e, "envoy", "[-spec FILE] [-o FILE] [-check]")
	specPath := fs.String("spec", "", "gateway spec, YAML or JSON (default: standard input)")
	outPath := fs.String("o", "", "output file (default: standard output)")
	check := fs.Bool("check", false, "only validate the spec; print nothing but warnings on success")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		e.errorf("envoy: unexpected argument %q (the spec is given with -spec)", fs.Arg(0))
		fs.Usage()
		return exitUsage
	}
	spec, code := readSpec(e, *specPath)
	if spec == nil {
		return code
	}
	warnMissingWasm(e, spec, *specPath)
	for _, w := range spec.Warnings() {
		fmt.Fprintf(e.stderr, "tokengate: warning: %s\n", w)
	}
	if *check {
		return exitOK
	}
	out, err := envoy.BootstrapYAML(spec)
	if err != nil {
		e.errorf("envoy: %v", err)
		return exitInvalid
	}
	return writeOutput(e, *outPath, out)
}

// readSpec parses the spec file, or standard input when path is "" or "-".
// A relative wasm path is resolved against the file's directory, or the
// working directory for standard input. On failure it reports the error and
// returns a nil Spec with the exit status.
func readSpec(e *env, path string) (*envoy.Spec, int) {
	var (
		s   *envoy.Spec
		err error
	)
	if path == "" || path == "-" {
		var data []byte
		if data, err = readInput(e, "-"); err != nil {
			e.errorf("%v", err)
			return nil, exitUsage
		}
		if s, err = envoy.ParseSpec(data); err != nil {
			err = fmt.Errorf("standard input: %w", err)
		}
	} else {
		s, err = envoy.ParseSpecFile(path)
	}
	if err != nil {
		e.errorf("%v", err)
		return nil, exitStatus(err)
	}
	return s, exitOK
}

// exitStatus is exitInvalid for an error that lists problems of the input,
// exitUsage for everything else (files, I/O).
func exitStatus(err error) int {
	var se *envoy.Error
	if errors.As(err, &se) {
		return exitInvalid
	}
	return exitUsage
}

// warnMissingWasm notes a module that is not built yet: the bootstrap is
// still written (it may be used on another machine), but Envoy refuses it
// until the file exists. The hint says where the path starts from and what
// builds the file.
func warnMissingWasm(e *env, s *envoy.Spec, specPath string) {
	p, err := s.WasmPath()
	if err != nil {
		return
	}
	if _, err := os.Stat(p); err == nil {
		return
	}
	fmt.Fprintf(e.stderr, "tokengate: warning: wasm module %s does not exist; %s\n", p, wasmHint(s, p, specPath))
}

// wasmHint says how to get a module to p.
func wasmHint(s *envoy.Spec, p, specPath string) string {
	var where string
	switch {
	case filepath.IsAbs(s.Wasm):
		where = "the spec gives an absolute path"
	case specPath == "" || specPath == "-":
		where = fmt.Sprintf("%q is relative, and a spec read from standard input resolves it against the working "+
			"directory: pass the spec with -spec FILE (paths then start from its directory) or write an absolute path", s.Wasm)
	default:
		where = fmt.Sprintf("%q is relative to the spec's directory %s", s.Wasm, filepath.Dir(specPath))
	}
	if root, ok := strings.CutSuffix(filepath.ToSlash(p), "/"+defaultWasm); ok {
		return where + "; to build it there, run make wasm in " + filepath.FromSlash(root)
	}
	return where + "; make wasm in a tokengate checkout builds " + defaultWasm
}

// writeOutput writes out to path, or to standard output when path is "".
func writeOutput(e *env, path string, out []byte) int {
	var err error
	if path == "" {
		_, err = e.stdout.Write(out)
	} else {
		err = os.WriteFile(path, out, 0o644)
	}
	if err != nil {
		e.errorf("%v", err)
		return exitUsage
	}
	return exitOK
}
