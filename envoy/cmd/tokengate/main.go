// Command tokengate is the one command a tokengate user needs besides make:
// it checks a plugin configuration the way the filter does, generates the
// Envoy bootstrap or the Istio WasmPlugin that runs the filter, and builds
// and pushes the module as a Wasm OCI image.
//
//	tokengate check plugin.json                    # or a WasmPlugin manifest (YAML)
//	tokengate envoy -spec envoy/examples/gateway.yaml -o build/envoy.yaml
//	tokengate istio -config plugin.json -url oci://registry/tokengate@sha256:...
//	tokengate ratelimit -spec envoy/examples/global.yaml -o build/ratelimit/config.yaml
//	tokengate ratelimit -config plugin.json -k8s -namespace default | kubectl apply -f -
//	tokengate image build -o build/image
//	tokengate image push registry.example.com/tokengate:v0.1.0
//
// Exit status, the same for every subcommand, so a CI pipeline can tell a
// bad configuration from a broken invocation:
//
//	0  done (the configuration is valid)
//	1  invalid configuration, spec or options: the problems are on stderr
//	2  bad usage, or a file, registry or other I/O error
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

// Exit statuses.
const (
	exitOK      = 0
	exitInvalid = 1
	exitUsage   = 2
)

// command is one subcommand. run gets the arguments after the subcommand's
// name and returns the exit status.
type command struct {
	summary string
	run     func(env *env, args []string) int
}

// commands lists the subcommands by name. A new output of the generator is
// one more entry here and one file beside this one.
var commands = map[string]command{
	"check":     {"validate a plugin configuration (JSON) or a WasmPlugin manifest as the filter does", runCheck},
	"envoy":     {"generate an Envoy bootstrap from a gateway spec (or only check the spec)", runEnvoy},
	"istio":     {"generate an Istio WasmPlugin from a plugin configuration or a gateway spec", runIstio},
	"ratelimit": {"generate the rate limit service's configuration (envoyproxy/ratelimit) or its Kubernetes manifests for the global rules", runRateLimit},
	"image":     {"build the module's Wasm OCI image (an image layout) or push it to a registry", runImage},
}

// env is what a subcommand may touch: its streams. Tests run commands with
// their own.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// errorf prints "tokengate: " and the message on stderr.
func (e *env) errorf(format string, args ...any) {
	fmt.Fprintf(e.stderr, "tokengate: "+format+"\n", args...)
}

func main() {
	os.Exit(run(os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}))
}

func run(args []string, e *env) int {
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		usage(e.stdout)
		return exitOK
	}
	c, ok := commands[name]
	if !ok {
		e.errorf("unknown command %q", name)
		usage(e.stderr)
		return exitUsage
	}
	return c.run(e, args[1:])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: tokengate COMMAND [flags] [args]   (tokengate COMMAND -h for its flags)")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nexit status: 0 done or valid, 1 invalid configuration, 2 bad usage or I/O error")
}

// parseFlags parses a subcommand's flags. It returns the exit status to
// stop with when parsing ends the command (-h, or a bad flag), and
// whether to go on.
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return exitOK, true
}

// newFlagSet returns a flag set for the subcommand name that writes to the
// env's stderr and prints usageLine before the flags.
func newFlagSet(e *env, name, usageLine string) *flag.FlagSet {
	fs := flag.NewFlagSet("tokengate "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: tokengate "+name+" "+usageLine)
		fs.PrintDefaults()
	}
	return fs
}
