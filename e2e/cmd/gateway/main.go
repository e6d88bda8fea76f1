// Command gateway is `make run`: it builds the sample backend and envoysim, writes the Envoy
// bootstrap of a gateway spec, starts the spec's backends and a data plane (Envoy when
// installed, else envoysim, a test and development stand-in), prints what it started and
// commands to try (derived from the spec's rules), and runs until interrupted, then stops
// every process it started.
//
//	gateway -spec envoy/examples/gateway.yaml [-host 127.0.0.1] [-port 10080]
//	        [-admin-port 9911] [-backend-port 8181] [-out build/gateway]
//
// Every port can be moved: -port (listener), -admin-port, -backend-port (the first backend;
// the others follow in spec order). The ports are checked before anything starts. Readiness
// checks that the admin answering is the data plane this run started.
//
// E2E_DATAPLANE=envoy|sim forces the data plane, as in the e2e tests. Exit status: 0 after
// an interrupt, 1 on any failure (an invalid spec or a busy port is reported before anything
// starts), 2 on bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/tokengate/tokengate/e2e/harness"
	"github.com/tokengate/tokengate/envoy"
	"github.com/tokengate/tokengate/internal/config"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// overrides are the addresses the command line moves.
type overrides struct {
	host                         string
	port, adminPort, backendPort int
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	specPath := fs.String("spec", "envoy/examples/gateway.yaml", "gateway spec")
	var o overrides
	fs.StringVar(&o.host, "host", "", "listener IP (\"\": the spec's; 0.0.0.0 listens on every interface)")
	fs.IntVar(&o.port, "port", 0, "listener port (0: the spec's)")
	fs.IntVar(&o.adminPort, "admin-port", 0, "admin port (0: the spec's)")
	fs.IntVar(&o.backendPort, "backend-port", 0, "port of the first backend, the others following in spec order (0: the spec's)")
	out := fs.String("out", "build/gateway", "directory for the bootstrap, the tools and the logs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "gateway: "+format+"\n", a...)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	spec, err := envoy.ParseSpecFile(*specPath)
	if err != nil {
		return fail("invalid spec, nothing started:\n%v", err)
	}
	if err := o.apply(spec); err != nil {
		return fail("nothing started: %v", err)
	}
	filter, err := config.Parse(spec.Filter)
	if err != nil {
		return fail("invalid filter block, nothing started:\n%v", err)
	}
	if err := harness.PortsInUse(spec, true); err != nil {
		return fail("nothing started: %v\nmove them with PORT=, ADMIN_PORT= and BACKEND_PORT= (make run), or -port, -admin-port and -backend-port", err)
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		return fail("%v", err)
	}
	fmt.Fprintln(stdout, "gateway: building the sample backend and envoysim ...")
	w, err := harness.OpenWorkdir(ctx, root, *out, "gateway.log")
	if err != nil {
		return fail("%v", err)
	}
	defer func() {
		if err := w.Close(); err != nil {
			fmt.Fprintf(stderr, "gateway: %v\n", err)
		}
	}()
	fmt.Fprintf(stdout, "gateway: starting %d backends and %s ...\n", len(harness.BackendAddrs(spec)), w.Dataplane.Kind)
	g, err := harness.StartGateway(ctx, spec, w.Options)
	if err != nil {
		return fail("%v", err)
	}
	defer func() {
		fmt.Fprintln(stdout, "gateway: stopping the data plane and the backends ...")
		g.Stop()
		fmt.Fprintln(stdout, "gateway: stopped")
	}()
	fmt.Fprint(stdout, banner(g, filter, *specPath, w.LogPath))
	if err := g.Wait(ctx); err != nil {
		fmt.Fprintf(stderr, "gateway: %v\n--- logs ---\n%s", err, g.Logs())
		return 1
	}
	return 0
}

// apply moves the spec's addresses as the command line says, and validates the result.
func (o overrides) apply(spec *envoy.Spec) error {
	var errs []error
	port := func(flag string, p int) {
		if p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("-%s %d: out of range", flag, p))
		}
	}
	port("port", o.port)
	port("admin-port", o.adminPort)
	port("backend-port", o.backendPort)
	if o.host != "" && net.ParseIP(o.host) == nil {
		errs = append(errs, fmt.Errorf("-host %q: not an IP address", o.host))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if o.host != "" {
		spec.Listen.Host = o.host
	}
	if o.port != 0 {
		spec.Listen.Port = uint32(o.port)
	}
	if o.adminPort != 0 {
		spec.Admin.Port = uint32(o.adminPort)
	}
	if o.backendPort != 0 {
		moved := map[string]uint32{}
		for i, a := range harness.BackendAddrs(spec) {
			moved[a] = uint32(o.backendPort + i)
			if o.backendPort+i > 65535 {
				return fmt.Errorf("-backend-port %d: backend b%d would be on port %d", o.backendPort, i+1, o.backendPort+i)
			}
		}
		for ri := range spec.Routes {
			for bi := range spec.Routes[ri].Backends {
				b := &spec.Routes[ri].Backends[bi]
				b.Port = moved[b.Address().String()]
			}
		}
	}
	return spec.Validate()
}
