// Command fleet is `make run-global`: tokengate's two tiers on one machine. It
// starts Redis (Debian's redis-server) and envoyproxy/ratelimit loaded with the
// configuration the generator writes from the spec's global rules, then two
// data-plane replicas of the spec in front of its sample backends, both asking
// that one service, prints what it started and a few curl commands, and runs
// until interrupted, then stops every process it started.
//
//	fleet -spec envoy/examples/global.yaml [-replicas 2] [-port 10000] [-out build/fleet]
//
// When redis-server or the ratelimit executable is missing it says what to
// install and exits 1 before starting anything. Everything listens on 127.0.0.1.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tokengate/tokengate/e2e/harness"
	"github.com/tokengate/tokengate/envoy"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	specPath := fs.String("spec", "envoy/examples/global.yaml", "gateway spec with global rules")
	replicas := fs.Int("replicas", 2, "data-plane replicas; replica i listens on the first port + i-1")
	port := fs.Int("port", 0, "the first replica's listener port (0: the spec's)")
	out := fs.String("out", "build/fleet", "directory for the bootstraps, the service's configuration, the tools and the log")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "fleet: "+format+"\n", a...)
		return 1
	}
	if *replicas < 1 || *replicas > 16 {
		return fail("-replicas %d: want 1..16", *replicas)
	}
	spec, err := envoy.ParseSpecFile(*specPath)
	if err != nil {
		return fail("invalid spec, nothing started:\n%v", err)
	}
	if spec.RateLimitService == nil {
		return fail("%s has no global rule: use make run for a spec with local rules only", *specPath)
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		return fail("%v", err)
	}
	parts, err := harness.FindGlobalParts(root)
	if err != nil {
		return fail("%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintln(stdout, "fleet: building the sample backend and envoysim ...")
	w, err := harness.OpenWorkdir(ctx, root, *out, "fleet.log")
	if err != nil {
		return fail("%v", err)
	}
	defer w.Close()
	fmt.Fprintln(stdout, "fleet: "+w.Dataplane.Describe())
	first := int(spec.Listen.Port)
	if *port != 0 {
		first = *port
	}
	if first < 1 || first+*replicas-1 > 65535 {
		return fail("-port %d: out of range for %d replicas", first, *replicas)
	}
	ports := make([]int, *replicas)
	for i := range ports {
		ports[i] = first + i
	}
	f, err := harness.StartFleet(ctx, spec, harness.FleetOptions{
		Options:  w.Options,
		Replicas: *replicas, Parts: parts, ListenPorts: ports, Out: stdout,
	})
	if err != nil {
		return fail("%v", err)
	}
	defer func() {
		fmt.Fprintln(stdout, "fleet: stopping the replicas, the backends, the rate limit service and Redis ...")
		f.Stop()
		fmt.Fprintln(stdout, "fleet: stopped")
	}()
	r1, r2 := f.Replicas[0], f.Replicas[len(f.Replicas)-1]
	fmt.Fprintf(stdout, `
tokengate's two tiers are running: %d replicas, one rate limit service (log: %s)
  service configuration  %s

Try:
  # 12 requests with one API key, alternating between the replicas: 10 pass in this
  # calendar minute across the fleet, then 429 from whichever replica is asked
  for i in $(seq 6); do for r in %s %s; do curl -s -o /dev/null -w "$r %%{http_code}\n" -H 'x-api-key: demo' http://$r/api/x; done; done
  # the global rule's counters on one replica (RLS answers, denial cache, failure mode)
  curl -s http://%s/stats | grep tokengate
  # ask the service directly (the descriptor the filter sends)
  curl -s -d '{"domain":"tokengate","descriptors":[{"entries":[{"key":"rule","value":"fleet-per-key"},{"key":"header:x-api-key","value":"demo"}]}]}' http://%s/json

Press Ctrl-C to stop everything.
`, len(f.Replicas), w.LogPath, f.RLS.ConfigPath(), r1.Listen, r2.Listen, r1.Admin, f.RLS.HTTP)
	if err := f.Wait(ctx); err != nil {
		fmt.Fprintf(stderr, "fleet: %v\n--- logs ---\n%s", err, f.Logs())
		return 1
	}
	return 0
}
