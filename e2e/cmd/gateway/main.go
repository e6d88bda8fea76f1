// Command gateway is `make run`: it builds the sample backend and envoysim, writes the Envoy
// bootstrap of a gateway spec, starts the spec's backends and a data plane (Envoy when
// installed, else envoysim, a test and development stand-in), prints what it started and a
// few curl commands, and runs until interrupted, then stops every process it started.
//
//	gateway -spec envoy/examples/gateway.yaml [-port 10080] [-out build/gateway]
//
// E2E_DATAPLANE=envoy|sim forces the data plane, as in the e2e tests. Exit status: 0 after
// an interrupt, 1 on any failure (an invalid spec is reported before anything starts).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tokengate/tokengate/e2e/harness"
	"github.com/tokengate/tokengate/envoy"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	specPath := fs.String("spec", "envoy/examples/gateway.yaml", "gateway spec")
	port := fs.Int("port", 0, "listener port (0: the spec's)")
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
	if *port != 0 {
		if *port < 1 || *port > 65535 {
			return fail("-port %d: out of range", *port)
		}
		spec.Listen.Port = uint32(*port)
		if err := spec.Validate(); err != nil {
			return fail("-port %d: %v", *port, err)
		}
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		return fail("%v", err)
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		return fail("%v", err)
	}
	fmt.Fprintln(stdout, "gateway: building the sample backend and envoysim ...")
	tools, err := harness.BuildTools(ctx, root, filepath.Join(dir, "bin"))
	if err != nil {
		return fail("%v", err)
	}
	dp, err := harness.FindDataplane(tools.Envoysim)
	if err != nil {
		return fail("%v", err)
	}
	fmt.Fprintln(stdout, "gateway: "+dp.Describe())
	logPath := filepath.Join(dir, "gateway.log")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail("%v", err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return fail("%v", err)
	}
	defer logFile.Close()
	g, err := harness.StartGateway(ctx, spec, harness.Options{
		Dir: dir, Dataplane: dp, Tools: tools, StartBackends: true, Log: logFile,
	})
	if err != nil {
		return fail("%v", err)
	}
	defer func() {
		fmt.Fprintln(stdout, "gateway: stopping the data plane and the backends ...")
		g.Stop()
		fmt.Fprintln(stdout, "gateway: stopped")
	}()
	printSummary(stdout, g, logPath)
	if err := g.Wait(ctx); err != nil {
		fmt.Fprintf(stderr, "gateway: %v\n--- logs ---\n%s", err, g.Logs())
		return 1
	}
	return 0
}

func printSummary(w io.Writer, g *harness.Gateway, logPath string) {
	var bs []string
	for _, a := range g.Order {
		bs = append(bs, g.Names[a]+" "+a)
	}
	l, a := g.Listen, g.Admin
	fmt.Fprintf(w, `
tokengate is running (%s)
  listener   http://%s   (spec: %s, %d workers)
  admin      http://%s   (/ready, /stats, /stats/prometheus)
  backends   %s
  bootstrap  %s
  log        %s

Try:
  # round robin: three requests on one connection, one per backend (see x-served-by)
  curl -s -D- -o /dev/null --interface 127.0.0.2 'http://%s/api/rr/[1-3]' | grep -i -e '^HTTP' -e '^x-served-by'
  # per-ip limit: the burst is admitted, then 429 with Retry-After and RateLimit headers
  for i in $(seq 7); do curl -s -o /dev/null -w '%%{http_code}\n' http://%s/api/burst; done
  curl -si http://%s/api/burst | grep -i -e '^HTTP' -e '^retry-after' -e '^ratelimit'
  # another client IP has its own budget
  curl -s -o /dev/null -w '%%{http_code}\n' --interface 127.0.0.3 http://%s/api/other
  # counters: allowed and limited per rule, upstream requests, healthy backends
  curl -s http://%s/stats | grep -e tokengate -e upstream_rq_total -e membership_healthy
  # fail %s's health check, watch traffic leave it, then bring it back
  curl -s -X POST 'http://%s/admin/health?fail=1'; curl -s -X POST 'http://%s/admin/health?fail=0'

Press Ctrl-C to stop everything.
`, g.Dataplane.Describe(), l, g.Spec.Listen, g.Spec.Concurrency, a, strings.Join(bs, ", "), g.Bootstrap, logPath,
		l, l, l, l, a, g.Names[g.Order[0]], g.Order[0], g.Order[0])
}
