package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"

	"github.com/tokengate/tokengate/envoy"
)

// Fleet is tokengate's two tiers running on one machine: a Redis, the rate
// limit service (envoyproxy/ratelimit) loaded with the configuration the
// generator writes for the spec's filter, and several data-plane replicas of
// one gateway spec in front of one set of backends, each replica with its own
// listener, admin port and shared data, all asking the one service.
type Fleet struct {
	Redis     *Redis
	RLS       *RateLimit
	RLSConfig []byte     // the envoyproxy/ratelimit configuration file
	Replicas  []*Gateway // Replicas[0] also runs the backends
}

// FleetOptions say how to start a Fleet.
type FleetOptions struct {
	Options         // for every replica; Dir is the parent of one directory per replica
	Replicas    int // >= 1
	Parts       GlobalParts
	ListenPorts []int     // the replicas' listener ports; nil: the spec's for the first, free ports for the others
	Out         io.Writer // progress lines; nil for none
}

// GlobalParts are the executables of the global tier.
type GlobalParts struct {
	Redis     string // redis-server, from FindRedis
	RateLimit string // envoyproxy/ratelimit, from FindRateLimit
}

// FindGlobalParts finds redis-server and the ratelimit executable (root is
// the module root); the error says what to install.
func FindGlobalParts(root string) (GlobalParts, error) {
	redis, err := FindRedis()
	if err != nil {
		return GlobalParts{}, err
	}
	rls, err := FindRateLimit(root)
	if err != nil {
		return GlobalParts{}, err
	}
	return GlobalParts{Redis: redis, RateLimit: rls}, nil
}

// StartFleet starts Redis, the rate limit service and the replicas of spec,
// whose filter must have global rules. The service's gRPC listener is the
// spec's first rate_limit_service backend when that is a free loopback
// address, else a free port (the spec is then pointed at it). Each replica
// gets free admin ports and the listener ports of o.ListenPorts. On error
// everything started is stopped again.
func StartFleet(ctx context.Context, spec *envoy.Spec, o FleetOptions) (*Fleet, error) {
	if o.Replicas < 1 {
		return nil, errors.New("harness: a fleet needs at least one replica")
	}
	if spec.RateLimitService == nil {
		return nil, errors.New("harness: the spec has no rate_limit_service (the filter has no global rule)")
	}
	conf, err := envoy.RateLimitConfig(spec.Filter)
	if err != nil {
		return nil, err
	}
	f := &Fleet{RLSConfig: conf}
	progress := func(format string, a ...any) {
		if o.Out != nil {
			fmt.Fprintf(o.Out, format+"\n", a...)
		}
	}
	if f.Redis, err = StartRedis(ctx, o.Parts.Redis, o.Log); err != nil {
		return nil, err
	}
	progress("redis-server on %s (no persistence)", f.Redis.Addr)
	grpc := spec.RateLimitService.Backends[0]
	if !net.ParseIP(grpc.Host).IsLoopback() || !portFree(grpc.String()) {
		port, err := FreePort()
		if err != nil {
			f.Stop()
			return nil, err
		}
		grpc = envoy.Address{Host: "127.0.0.1", Port: uint32(port)}
	}
	if f.RLS, err = StartRateLimit(ctx, o.Parts.RateLimit, filepath.Join(o.Dir, "ratelimit"), conf, f.Redis.Addr, grpc.String(), o.Log); err != nil {
		f.Stop()
		return nil, err
	}
	progress("ratelimit gRPC on %s, /json and /healthcheck on http://%s", f.RLS.GRPC, f.RLS.HTTP)
	for i := 0; i < o.Replicas; i++ {
		rs := *spec
		rs.RateLimitService = &envoy.RateLimitService{Backends: []envoy.Address{grpc}}
		if i < len(o.ListenPorts) {
			rs.Listen.Port = uint32(o.ListenPorts[i])
		} else if i > 0 || len(o.ListenPorts) > 0 {
			free, err := FreePort()
			if err != nil {
				f.Stop()
				return nil, err
			}
			rs.Listen.Port = uint32(free)
		}
		admin, err := FreePort()
		if err != nil {
			f.Stop()
			return nil, err
		}
		rs.Admin = envoy.Address{Host: "127.0.0.1", Port: uint32(admin)}
		ro := o.Options
		ro.Dir = filepath.Join(o.Dir, "replica"+strconv.Itoa(i+1))
		ro.StartBackends = o.StartBackends && i == 0
		g, err := StartGateway(ctx, &rs, ro)
		if err != nil {
			f.Stop()
			return nil, fmt.Errorf("replica %d: %w", i+1, err)
		}
		f.Replicas = append(f.Replicas, g)
		progress("replica %d on http://%s (admin http://%s)", i+1, g.Listen, g.Admin)
	}
	return f, nil
}

// portFree reports whether addr can be listened on now.
func portFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// Stop stops the replicas (and so the backends), then the service, then Redis.
func (f *Fleet) Stop() {
	for i := len(f.Replicas) - 1; i >= 0; i-- {
		f.Replicas[i].Stop()
	}
	if f.RLS != nil {
		f.RLS.Stop()
	}
	if f.Redis != nil {
		f.Redis.Stop()
	}
}

// Logs returns the output of every process.
func (f *Fleet) Logs() string {
	var s string
	for i, g := range f.Replicas {
		s += fmt.Sprintf("=== replica %d (bootstrap %s) ===\n%s", i+1, g.Bootstrap, g.Logs())
	}
	if f.RLS != nil && f.RLS.Proc != nil {
		s += "--- ratelimit ---\n" + f.RLS.Proc.Log()
	}
	if f.Redis != nil && f.Redis.Proc != nil {
		s += "--- redis ---\n" + f.Redis.Proc.Log()
	}
	return s
}

// Wait blocks until ctx ends or a process of the fleet exits by itself, which
// it reports as an error.
func (f *Fleet) Wait(ctx context.Context) error {
	procs := []*Process{f.RLS.Proc, f.Redis.Proc}
	for _, g := range f.Replicas {
		procs = append(procs, g.procs()...)
	}
	return waitAny(ctx, procs)
}
