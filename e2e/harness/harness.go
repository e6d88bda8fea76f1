// Package harness runs tokengate end to end: it builds the tools, generates the Envoy
// bootstrap from a gateway spec, starts sample backends and a data plane (real Envoy when one
// is installed, else envoysim, the project's stand-in) and stops every process it started.
// `make run` (e2e/cmd/gateway) and the e2e scenarios (`make e2e`) are built on it.
//
// envoysim is a test and development tool, never a production proxy; Describe says so
// whenever it is the data plane.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kinds of data plane.
const (
	KindEnvoy = "envoy" // a real Envoy binary
	KindSim   = "sim"   // envoysim, the stand-in
)

// Dataplane is the proxy a gateway runs on.
type Dataplane struct {
	Kind    string // KindEnvoy or KindSim
	Bin     string // the executable
	Version string // first line of `envoy --version`, for Envoy
}

// Describe is the one line that says which data plane runs.
func (d Dataplane) Describe() string {
	if d.Kind == KindEnvoy {
		return fmt.Sprintf("data plane: Envoy (%s) %s", d.Bin, d.Version)
	}
	return fmt.Sprintf("data plane: envoysim (%s), the project's stand-in for Envoy: a test and development tool, not a production proxy; install Envoy (ENVOY_BIN or envoy on PATH) to run on the real thing", d.Bin)
}

// FindDataplane chooses the data plane: E2E_DATAPLANE=envoy or sim forces one (forcing envoy
// without one installed is an error); otherwise Envoy when ENVOY_BIN is set or envoy is on
// PATH, else envoysim. simBin is the envoysim executable to use (see Tools).
func FindDataplane(simBin string) (Dataplane, error) {
	force := os.Getenv("E2E_DATAPLANE")
	envoyBin := os.Getenv("ENVOY_BIN")
	if envoyBin == "" {
		envoyBin, _ = exec.LookPath("envoy")
	} else if _, err := exec.LookPath(envoyBin); err != nil {
		return Dataplane{}, fmt.Errorf("ENVOY_BIN=%s: %w", envoyBin, err)
	}
	switch force {
	case KindEnvoy:
		if envoyBin == "" {
			return Dataplane{}, errors.New("E2E_DATAPLANE=envoy, but no Envoy is installed: set ENVOY_BIN or put envoy on PATH (for example with func-e)")
		}
	case KindSim:
		return Dataplane{Kind: KindSim, Bin: simBin}, nil
	case "":
		if envoyBin == "" {
			return Dataplane{Kind: KindSim, Bin: simBin}, nil
		}
	default:
		return Dataplane{}, fmt.Errorf("E2E_DATAPLANE=%q: want envoy or sim", force)
	}
	d := Dataplane{Kind: KindEnvoy, Bin: envoyBin}
	out, err := exec.Command(envoyBin, "--version").CombinedOutput()
	if err != nil {
		return Dataplane{}, fmt.Errorf("%s --version: %v: %s", envoyBin, err, out)
	}
	d.Version = strings.TrimSpace(strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0])
	return d, nil
}

// ModuleRoot returns the directory of tokengate's go.mod, searching up from the working
// directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/tokengate/tokengate\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the tokengate module")
		}
		dir = parent
	}
}

// Tools are the executables the harness starts.
type Tools struct {
	Backend  string // e2e/backend
	Envoysim string // internal/envoysim/cmd/envoysim
}

// BuildTools builds the backend and envoysim into dir with the go command.
func BuildTools(ctx context.Context, root, dir string) (Tools, error) {
	t := Tools{Backend: filepath.Join(dir, "backend"), Envoysim: filepath.Join(dir, "envoysim")}
	for bin, pkg := range map[string]string{t.Backend: "./e2e/backend", t.Envoysim: "./internal/envoysim/cmd/envoysim"} {
		if err := GoBuild(ctx, root, bin, pkg); err != nil {
			return Tools{}, err
		}
	}
	return t, nil
}

// GoBuild builds the package pkg of the module at root into the executable bin.
func GoBuild(ctx context.Context, root, bin, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return nil
}

// ToolsAndDataplane builds the tools into dir and chooses the data plane
// (BuildTools, then FindDataplane).
func ToolsAndDataplane(ctx context.Context, root, dir string) (Tools, Dataplane, error) {
	tools, err := BuildTools(ctx, root, dir)
	if err != nil {
		return Tools{}, Dataplane{}, err
	}
	dp, err := FindDataplane(tools.Envoysim)
	return tools, dp, err
}

// Workdir is the output directory of a command that starts gateways (e2e/cmd): the tools
// built into it, the data plane chosen and a log file every process also writes to.
type Workdir struct {
	Options        // Dir (absolute), Dataplane, Tools, Log; StartBackends set
	LogPath string // Log's path
	log     *os.File
}

// OpenWorkdir makes out absolute, builds the tools into out/bin, chooses the data plane
// (ToolsAndDataplane) and creates the log file out/logName. Close closes the log.
func OpenWorkdir(ctx context.Context, root, out, logName string) (*Workdir, error) {
	dir, err := filepath.Abs(out)
	if err != nil {
		return nil, err
	}
	tools, dp, err := ToolsAndDataplane(ctx, root, filepath.Join(dir, "bin"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	w := &Workdir{LogPath: filepath.Join(dir, logName)}
	if w.log, err = os.Create(w.LogPath); err != nil {
		return nil, err
	}
	w.Options = Options{Dir: dir, Dataplane: dp, Tools: tools, StartBackends: true, Log: w.log}
	return w, nil
}

// Close closes the log file.
func (w *Workdir) Close() error { return w.log.Close() }

// BuildWasm builds the filter into path, like `make wasm`.
func BuildWasm(ctx context.Context, root, path string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-buildmode=c-shared", "-trimpath", "-o", path, "./filter")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the filter: %v\n%s", err, out)
	}
	return nil
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// FreePorts returns n TCP ports that were free on 127.0.0.1 a moment ago (see FreePort).
func FreePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	return ports, nil
}

// Process is a child process with its output kept for when something fails.
type Process struct {
	Name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // set when done is closed
	// serviceNode is the data plane's --service-node, a token of this run: its admin
	// /server_info shows it, which proves that this process is the one answering.
	serviceNode string
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	tee io.Writer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tee != nil {
		_, _ = b.tee.Write(p) // the tee is a copy (a log file): the kept output is what counts
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Start starts bin with args; its output is kept (Log) and also written to tee when not nil.
// The process gets its own process group, so that stopping it stops its children too, and
// (on Linux) it is killed if the harness dies.
func Start(name string, tee io.Writer, bin string, args ...string) (*Process, error) {
	return startEnv(name, tee, nil, bin, args...)
}

// startEnv is Start with env added to the harness's own environment.
func startEnv(name string, tee io.Writer, env []string, bin string, args ...string) (*Process, error) {
	p := &Process{Name: name, out: &syncBuffer{tee: tee}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Log returns everything the process wrote so far.
func (p *Process) Log() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr is the process's exit error; valid once Done is closed.
func (p *Process) ExitErr() error { return p.err }

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop asks the process to stop (SIGTERM to its group), waits up to 5 s, then kills it.
// It is safe to call more than once.
func (p *Process) Stop() {
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(5 * time.Second):
	}
	p.Kill()
}

// Kill kills the process group at once (SIGKILL) and waits for the process to exit.
func (p *Process) Kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

func (p *Process) signal(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig) // fails only when the group is already gone
}

// StartBackend starts a sample backend on addr and waits until it says it is listening (a
// connection alone could reach another process on that port).
func StartBackend(ctx context.Context, t Tools, addr, name string, tee io.Writer) (*Process, error) {
	p, err := Start("backend "+name, tee, t.Backend, "-addr", addr, "-name", name)
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, p, "backend "+name+" listening on "+addr, func() bool {
		return strings.Contains(p.Log(), "listening on ")
	}); err != nil {
		return nil, err
	}
	return p, nil
}

// waitFor polls ready every 20ms until it holds. It fails when p exits
// first, or when ctx ends, killing p then; both errors carry p's output.
func waitFor(ctx context.Context, p *Process, what string, ready func() bool) error {
	for !ready() {
		select {
		case <-p.Done():
			return fmt.Errorf("harness: %s exited: %v\n%s", p.Name, p.ExitErr(), p.Log())
		case <-ctx.Done():
			p.Kill()
			return fmt.Errorf("harness: waiting for %s: %w\n%s", what, ctx.Err(), p.Log())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// StartDataplane starts d on a bootstrap file with the given worker count (0: the data
// plane's default). Its --service-node is a fresh token, which WaitReady checks.
func StartDataplane(d Dataplane, bootstrap string, concurrency int, tee io.Writer) (*Process, error) {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics instead)
	token := "gateway-" + hex.EncodeToString(b[:])
	args := []string{"-c", bootstrap, "--log-level", "info", "--service-node", token}
	if concurrency > 0 {
		args = append(args, "--concurrency", strconv.Itoa(concurrency))
	}
	if d.Kind == KindEnvoy {
		args = append(args, "--disable-hot-restart")
	}
	p, err := Start(d.Kind, tee, d.Bin, args...)
	if err != nil {
		return nil, err
	}
	p.serviceNode = token
	return p, nil
}

// WaitReady polls the admin /ready until it answers 200, the process exits or ctx ends. For a
// data plane from StartDataplane it first checks, in /server_info, that the admin answering is
// that process's (its --service-node), not another one's on the same port.
func WaitReady(ctx context.Context, admin string, p *Process) error {
	c := &http.Client{Timeout: time.Second}
	for {
		node, err := serviceNode(c, admin)
		switch {
		case err != nil:
		case p.serviceNode != "" && node != p.serviceNode:
			return fmt.Errorf("http://%s answers for another process (service node %q, not %q): is another gateway running on that port?", admin, node, p.serviceNode)
		default:
			resp, err := c.Get("http://" + admin + "/ready")
			if err == nil {
				_, cerr := io.Copy(io.Discard, resp.Body)
				if err := errors.Join(cerr, resp.Body.Close()); err == nil && resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready: %v", p.Name, p.err)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready on http://%s/ready: %w", p.Name, admin, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// serviceNode returns the --service-node the data plane's admin reports in /server_info.
func serviceNode(c *http.Client, admin string) (string, error) {
	resp, err := c.Get("http://" + admin + "/server_info")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var info struct {
		Options struct {
			ServiceNode string `json:"service_node"`
		} `json:"command_line_options"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return "", fmt.Errorf("/server_info: %w", err)
	}
	return info.Options.ServiceNode, nil
}

// Stats reads the admin /stats ("name: value" lines) into a map. Histograms and other
// non-integer lines are skipped.
func Stats(admin string) (map[string]int64, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + admin + "/stats")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/stats: %s", resp.Status)
	}
	m := map[string]int64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			m[name] = n
		}
	}
	return m, sc.Err()
}
