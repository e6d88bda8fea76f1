package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// RateLimitInstallHint says how to get the rate limit service when it is missing.
const RateLimitInstallHint = "run `make ratelimit` (builds envoyproxy/ratelimit into build/bin/ratelimit) or set RATELIMIT_BIN"

// FindRateLimit returns the envoyproxy/ratelimit executable: RATELIMIT_BIN when
// set, else build/bin/ratelimit under root (what `make ratelimit` builds).
func FindRateLimit(root string) (string, error) {
	bin := os.Getenv("RATELIMIT_BIN")
	if bin == "" {
		bin = filepath.Join(root, "build", "bin", "ratelimit")
	}
	if _, err := exec.LookPath(bin); err != nil {
		return "", fmt.Errorf("harness: rate limit service %s: %w: %s", bin, err, RateLimitInstallHint)
	}
	return bin, nil
}

// RateLimit is an envoyproxy/ratelimit process started by the harness: gRPC,
// HTTP (/json, /healthcheck) and debug listeners all on free 127.0.0.1 ports,
// no statsd, its configuration read once from a file under Dir. Not safe for
// concurrent Start/Stop.
type RateLimit struct {
	Bin   string
	Dir   string // runtime root; the configuration is ConfigPath
	GRPC  string // 127.0.0.1:port of the gRPC service (ShouldRateLimit)
	HTTP  string // 127.0.0.1:port of /json and /healthcheck
	Debug string // 127.0.0.1:port of the debug listener
	Redis string // host:port of its Redis
	Proc  *Process
	tee   io.Writer
}

// StartRateLimit writes config (an envoyproxy/ratelimit configuration file) under
// dir, starts bin against the Redis at redisAddr with its gRPC service on
// grpcAddr ("" for a free 127.0.0.1 port) and waits until /healthcheck answers
// 200.
func StartRateLimit(ctx context.Context, bin, dir string, config []byte, redisAddr, grpcAddr string, tee io.Writer) (*RateLimit, error) {
	rl := &RateLimit{Bin: bin, Dir: dir, Redis: redisAddr, GRPC: grpcAddr, tee: tee}
	if err := os.MkdirAll(filepath.Dir(rl.ConfigPath()), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(rl.ConfigPath(), config, 0o644); err != nil {
		return nil, err
	}
	for _, a := range []*string{&rl.GRPC, &rl.HTTP, &rl.Debug} {
		if *a != "" {
			continue
		}
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		*a = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	return rl, rl.Start(ctx)
}

// ConfigPath is the service's configuration file: Dir/ratelimit/config/config.yaml, where
// Env's RUNTIME_ variables say to read it.
func (rl *RateLimit) ConfigPath() string {
	return filepath.Join(rl.Dir, "ratelimit", "config", "config.yaml")
}

// Env returns the environment the service runs with: every listener on
// 127.0.0.1, Redis over TCP, stats off, the file configuration loaded from Dir
// without watching it.
func (rl *RateLimit) Env() []string {
	hostPort := func(a string) (string, string) {
		h, p, _ := net.SplitHostPort(a)
		return h, p
	}
	gh, gp := hostPort(rl.GRPC)
	hh, hp := hostPort(rl.HTTP)
	dh, dp := hostPort(rl.Debug)
	return []string{
		"GRPC_HOST=" + gh, "GRPC_PORT=" + gp,
		"HOST=" + hh, "PORT=" + hp,
		"DEBUG_HOST=" + dh, "DEBUG_PORT=" + dp,
		"USE_STATSD=false", "USE_PROMETHEUS=false", "TRACING_ENABLED=false",
		"LOG_LEVEL=warn",
		"BACKEND_TYPE=redis", "REDIS_SOCKET_TYPE=tcp", "REDIS_TYPE=SINGLE", "REDIS_URL=" + rl.Redis,
		// A stopped Redis must turn into an error quickly, not a call that hangs
		// for the default 10s.
		"REDIS_TIMEOUT=500ms",
		"CONFIG_TYPE=FILE",
		"RUNTIME_ROOT=" + rl.Dir, "RUNTIME_SUBDIRECTORY=ratelimit",
		"RUNTIME_APPDIRECTORY=config", "RUNTIME_WATCH_ROOT=false", "RUNTIME_IGNOREDOTFILES=true",
	}
}

// Start (re)starts the service on its ports and waits until it is healthy.
func (rl *RateLimit) Start(ctx context.Context) error {
	p, err := startEnv("ratelimit", rl.tee, rl.Env(), rl.Bin)
	if err != nil {
		return err
	}
	rl.Proc = p
	c := &http.Client{Timeout: time.Second}
	return waitFor(ctx, p, "ratelimit healthy on http://"+rl.HTTP+"/healthcheck", func() bool {
		resp, err := c.Get("http://" + rl.HTTP + "/healthcheck")
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// Stop stops the service (see Process.Stop).
func (rl *RateLimit) Stop() {
	if rl.Proc != nil {
		rl.Proc.Stop()
	}
}

// Freeze stops the service's process without closing anything (SIGSTOP): the
// kernel still accepts connections and requests, nothing answers them, as
// with a hung service. It returns once the process has stopped (on Linux),
// so a request sent after it is never answered. Thaw (SIGCONT) lets it go on.
func (rl *RateLimit) Freeze() error {
	if err := syscall.Kill(rl.Proc.Pid(), syscall.SIGSTOP); err != nil {
		return err
	}
	return waitStopped(rl.Proc.Pid())
}

// Thaw resumes a frozen service.
func (rl *RateLimit) Thaw() error { return syscall.Kill(rl.Proc.Pid(), syscall.SIGCONT) }
