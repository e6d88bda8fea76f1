package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/tokengate/tokengate/envoy"
)

// Options say how to start a Gateway.
type Options struct {
	Dir           string    // the bootstrap is written here
	Dataplane     Dataplane // from FindDataplane
	Tools         Tools
	StartBackends bool          // start a sample backend on every backend address of the spec
	Log           io.Writer     // every process's output is also written here; nil: kept in memory only
	ReadyTimeout  time.Duration // 0: 30 s
}

// Gateway is a running data plane with its sample backends.
type Gateway struct {
	Spec      *envoy.Spec
	Bootstrap string // path of the generated bootstrap
	Dataplane Dataplane
	Proxy     *Process
	Listen    string // where to send requests (host:port; 0.0.0.0 becomes 127.0.0.1)
	Admin     string
	// Backends are the sample backends by address, with their names (b1, b2, ... in spec
	// order).
	Backends map[string]*Process
	Names    map[string]string
	Order    []string // backend addresses in spec order

	opts Options
}

// WriteBootstrap generates the Envoy bootstrap of spec into dir/envoy.yaml.
func WriteBootstrap(spec *envoy.Spec, dir string) (string, error) {
	y, err := envoy.BootstrapYAML(spec)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "envoy.yaml")
	return path, os.WriteFile(path, y, 0o644)
}

// Dialable turns a listening address (host:port) into one to connect to: 0.0.0.0 (or ::)
// becomes 127.0.0.1.
func Dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// StartGateway writes the bootstrap, starts the backends and the data plane, and waits until
// the data plane is ready. On error everything it started is stopped again, and the error
// carries the data plane's log.
func StartGateway(ctx context.Context, spec *envoy.Spec, o Options) (*Gateway, error) {
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	wasm, err := spec.WasmPath()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(wasm); err != nil {
		return nil, fmt.Errorf("the filter module is missing (run `make wasm`): %w", err)
	}
	if err := PortsInUse(spec, o.StartBackends); err != nil {
		return nil, err
	}
	path, err := WriteBootstrap(spec, o.Dir)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		Spec: spec, Bootstrap: path, Dataplane: o.Dataplane, opts: o,
		Listen: Dialable(spec.Listen.String()), Admin: Dialable(spec.Admin.String()),
		Backends: map[string]*Process{}, Order: BackendAddrs(spec), Names: map[string]string{},
	}
	for i, addr := range g.Order {
		g.Names[addr] = "b" + strconv.Itoa(i+1)
	}
	if o.StartBackends {
		for _, addr := range g.Order {
			if err := g.StartBackend(ctx, addr); err != nil {
				g.Stop()
				return nil, err
			}
		}
	}
	g.Proxy, err = StartDataplane(o.Dataplane, path, spec.Concurrency, o.Log)
	if err != nil {
		g.Stop()
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	if err := WaitReady(rctx, g.Admin, g.Proxy); err != nil {
		log := g.Proxy.Log()
		g.Stop()
		return nil, fmt.Errorf("%w\n--- %s log ---\n%s", err, g.Proxy.Name, log)
	}
	return g, nil
}

// BackendAddrs returns the backend addresses of spec, each once, in spec order: b1, b2, ...
func BackendAddrs(spec *envoy.Spec) []string {
	var out []string
	for _, r := range spec.Routes {
		for _, b := range r.Backends {
			if addr := b.Address().String(); !slices.Contains(out, addr) {
				out = append(out, addr)
			}
		}
	}
	return out
}

// PortsInUse reports, in one error, each address of spec that cannot be bound now: the
// listener, the admin and, when backends is true, the sample backends' (b1, b2, ...). It
// binds each one for a moment and leaves nothing bound.
func PortsInUse(spec *envoy.Spec, backends bool) error {
	type named struct{ name, addr string }
	addrs := []named{{"listener", spec.Listen.String()}, {"admin", spec.Admin.String()}}
	if backends {
		for i, a := range BackendAddrs(spec) {
			addrs = append(addrs, named{"backend b" + strconv.Itoa(i+1), a})
		}
	}
	var busy []error
	for _, a := range addrs {
		l, err := net.Listen("tcp", a.addr)
		if err != nil {
			busy = append(busy, fmt.Errorf("%s %s: %w", a.name, a.addr, err))
			continue
		}
		if err := l.Close(); err != nil {
			busy = append(busy, fmt.Errorf("%s %s: %w", a.name, a.addr, err))
		}
	}
	if len(busy) > 0 {
		return fmt.Errorf("ports not free (another gateway running?):\n%w", errors.Join(busy...))
	}
	return nil
}

// StartBackend (re)starts the sample backend at addr.
func (g *Gateway) StartBackend(ctx context.Context, addr string) error {
	name, ok := g.Names[addr]
	if !ok {
		return fmt.Errorf("%s is not a backend of the spec", addr)
	}
	if p := g.Backends[addr]; p != nil {
		select {
		case <-p.Done():
		default:
			return fmt.Errorf("backend %s is already running", name)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := StartBackend(sctx, g.opts.Tools, addr, name, g.opts.Log)
	if err != nil {
		return err
	}
	g.Backends[addr] = p
	return nil
}

// Stop stops the data plane, then the backends.
func (g *Gateway) Stop() {
	if g.Proxy != nil {
		g.Proxy.Stop()
	}
	for _, p := range g.Backends {
		p.Stop()
	}
}

// Logs returns the output of every process, data plane first.
func (g *Gateway) Logs() string {
	var s string
	if g.Proxy != nil {
		s += "--- " + g.Proxy.Name + " ---\n" + g.Proxy.Log()
	}
	for _, addr := range g.Order {
		if p := g.Backends[addr]; p != nil {
			s += "--- " + p.Name + " ---\n" + p.Log()
		}
	}
	return s
}

// Wait blocks until ctx ends or a process the gateway started exits by itself, which it
// reports as an error.
func (g *Gateway) Wait(ctx context.Context) error { return waitAny(ctx, g.procs()) }

// procs are the processes the gateway started: the data plane, then the backends.
func (g *Gateway) procs() []*Process {
	procs := []*Process{g.Proxy}
	for _, p := range g.Backends {
		procs = append(procs, p)
	}
	return procs
}

// waitAny blocks until ctx ends (nil) or one of procs exits by itself (an error naming it).
func waitAny(ctx context.Context, procs []*Process) error {
	exited := make(chan *Process, len(procs))
	for _, p := range procs {
		go func() {
			select {
			case <-p.Done():
				exited <- p
			case <-ctx.Done():
			}
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case p := <-exited:
		return fmt.Errorf("%s exited: %v", p.Name, p.ExitErr())
	}
}
