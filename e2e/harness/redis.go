package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// RedisInstallHint says how to get redis-server when it is missing.
const RedisInstallHint = "install Debian's redis-server (apt-get install redis-server) or set REDIS_SERVER_BIN"

// FindRedis returns the redis-server executable: REDIS_SERVER_BIN when set, else
// redis-server on PATH, else /usr/bin/redis-server (Debian's, which PATH may lack).
func FindRedis() (string, error) {
	if bin := os.Getenv("REDIS_SERVER_BIN"); bin != "" {
		if _, err := exec.LookPath(bin); err != nil {
			return "", fmt.Errorf("harness: REDIS_SERVER_BIN=%s: %w: %s", bin, err, RedisInstallHint)
		}
		return bin, nil
	}
	if bin, err := exec.LookPath("redis-server"); err == nil {
		return bin, nil
	}
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server", nil
	}
	return "", errors.New("harness: redis-server not found: " + RedisInstallHint)
}

// Redis is a redis-server started by the harness on a loopback port, in the
// foreground, without persistence: nothing is written to disk and a restart
// starts empty. Not safe for concurrent Start/Stop.
type Redis struct {
	Bin  string
	Addr string // 127.0.0.1:port; kept across Stop and Start
	Proc *Process
	tee  io.Writer
}

// StartRedis starts bin on a free loopback port and waits until it answers PING.
func StartRedis(ctx context.Context, bin string, tee io.Writer) (*Redis, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	r := &Redis{Bin: bin, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), tee: tee}
	return r, r.Start(ctx)
}

// Start (re)starts the server on r.Addr and waits until it answers PING.
func (r *Redis) Start(ctx context.Context) error {
	_, port, _ := net.SplitHostPort(r.Addr)
	p, err := Start("redis", r.tee, r.Bin,
		"--bind", "127.0.0.1", "--port", port, "--protected-mode", "yes",
		"--daemonize", "no", "--save", "", "--appendonly", "no",
		"--loglevel", "warning", "--logfile", "")
	if err != nil {
		return err
	}
	r.Proc = p
	return waitFor(ctx, p, "redis-server on "+r.Addr+" answering PING", func() bool { return redisPing(r.Addr) == nil })
}

// Stop stops the server (see Process.Stop).
func (r *Redis) Stop() {
	if r.Proc != nil {
		r.Proc.Stop()
	}
}

// redisPing sends an inline PING and expects +PONG.
func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("harness: redis PING answered %q", line)
	}
	return nil
}
