package wasmhost

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Guest modules are built once per test binary run from testdata/ with the standard toolchain.
var (
	guestDir  string
	guestOnce sync.Map // name -> *guestBuild
)

type guestBuild struct {
	once sync.Once
	wasm []byte
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wasmhost-guests-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	guestDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// guestWasm builds testdata/<name> as a wasip1 reactor and returns its bytes.
func guestWasm(t testing.TB, name string) []byte {
	t.Helper()
	v, _ := guestOnce.LoadOrStore(name, &guestBuild{})
	g := v.(*guestBuild)
	g.once.Do(func() {
		out := filepath.Join(guestDir, name+".wasm")
		cmd := exec.Command(goTool(), "build", "-buildmode=c-shared", "-o", out, ".")
		cmd.Dir = filepath.Join("testdata", name)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOFLAGS=-buildvcs=false")
		if b, err := cmd.CombinedOutput(); err != nil {
			g.err = fmt.Errorf("building guest %s: %v\n%s", name, err, b)
			return
		}
		g.wasm, g.err = os.ReadFile(out)
	})
	if g.err != nil {
		t.Fatal(g.err)
	}
	return g.wasm
}

var (
	moduleMu    sync.Mutex
	moduleCache = map[string]*Module{}
)

// guestModule compiles the named guest once per test binary (modules are safe to share).
func guestModule(t testing.TB, name string) *Module {
	t.Helper()
	wasm := guestWasm(t, name)
	moduleMu.Lock()
	defer moduleMu.Unlock()
	if m := moduleCache[name]; m != nil {
		return m
	}
	m, err := Compile(context.Background(), wasm)
	if err != nil {
		t.Fatalf("Compile(%s): %v", name, err)
	}
	moduleCache[name] = m
	return m
}

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// logSink collects guest log lines for assertions and failure output.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) log(level LogLevel, vm, msg string) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf("[%s] %s: %s", vm, level, msg))
	l.mu.Unlock()
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// newTestPlugin starts the "guest" fixture with the given plugin configuration.
func newTestPlugin(t testing.TB, cfg PluginConfig) (*Plugin, *logSink) {
	t.Helper()
	sink := &logSink{}
	if cfg.Log == nil {
		cfg.Log = sink.log
	}
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	if cfg.Clock == nil {
		cfg.Clock = NewFakeClock(epoch)
	}
	p, err := NewPlugin(context.Background(), guestModule(t, "guest"), cfg)
	if err != nil {
		t.Fatalf("NewPlugin: %v\nlog:\n%s", err, sink)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("guest log:\n%s", sink)
		}
	})
	return p, sink
}

func req(test string) Headers {
	return Headers{{":method", "GET"}, {":path", "/api/v1?x=1"}, {":authority", "example.com"},
		{":scheme", "https"}, {"x-request-id", "rid-1"}, {"x-test", test}}
}

var info = StreamInfo{SourceAddress: "10.1.2.3:54321", DestinationAddress: "10.0.0.1:8080",
	ConnectionID: 77, RouteName: "r1", ClusterName: "backend"}

// outputs returns the x-out-* headers the guest added, without the prefix.
func outputs(h Headers) map[string]string {
	m := map[string]string{}
	for _, kv := range h {
		if k, ok := strings.CutPrefix(kv[0], "x-out-"); ok {
			m[k] = kv[1]
		}
	}
	return m
}
