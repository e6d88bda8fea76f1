package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/envoy"
)

func TestFindDataplane(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "envoy")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'envoy  version: 1.36.0/Clean/RELEASE'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	cases := []struct {
		name, force, envoyBin, path string
		wantKind, wantErr           string
	}{
		{name: "nothing installed", path: empty, wantKind: KindSim},
		{name: "forced sim", force: "sim", envoyBin: fake, path: empty, wantKind: KindSim},
		{name: "ENVOY_BIN", envoyBin: fake, path: empty, wantKind: KindEnvoy},
		{name: "on PATH", path: dir, wantKind: KindEnvoy},
		{name: "forced envoy, none installed", force: "envoy", path: empty, wantErr: "no Envoy is installed"},
		{name: "forced envoy", force: "envoy", path: dir, wantKind: KindEnvoy},
		{name: "bad ENVOY_BIN", envoyBin: filepath.Join(empty, "nope"), path: empty, wantErr: "ENVOY_BIN="},
		{name: "bad E2E_DATAPLANE", force: "istio", path: empty, wantErr: `E2E_DATAPLANE="istio"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("E2E_DATAPLANE", tc.force)
			t.Setenv("ENVOY_BIN", tc.envoyBin)
			t.Setenv("PATH", tc.path)
			d, err := FindDataplane("/bin/envoysim")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Kind != tc.wantKind {
				t.Fatalf("kind %q, want %q", d.Kind, tc.wantKind)
			}
			desc := d.Describe()
			if d.Kind == KindSim && (d.Bin != "/bin/envoysim" || !strings.Contains(desc, "not a production proxy")) {
				t.Fatalf("sim: %+v %q", d, desc)
			}
			if d.Kind == KindEnvoy && (d.Version != "envoy  version: 1.36.0/Clean/RELEASE" || !strings.Contains(desc, "Envoy (")) {
				t.Fatalf("envoy: %+v %q", d, desc)
			}
		})
	}
}

func TestProcessStop(t *testing.T) {
	p, err := Start("sleeper", nil, "/bin/sh", "-c", "echo started; sleep 30 & wait")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.Log(), "started") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	p.Stop()
	if time.Since(start) > 4*time.Second {
		t.Fatalf("Stop took %v", time.Since(start))
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("not done after Stop")
	}
	p.Stop() // again: no effect
}

// TestWaitReadyProvesItsProcess: an admin that answers for another data plane (another
// service node) is an error, not readiness; the process's own is.
func TestWaitReadyProvesItsProcess(t *testing.T) {
	node := "theirs"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/server_info":
			fmt.Fprintf(w, `{"state":"LIVE","command_line_options":{"service_node":%q}}`, node)
		case "/ready":
			fmt.Fprintln(w, "LIVE")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	admin := strings.TrimPrefix(srv.URL, "http://")
	p := &Process{Name: "sim", done: make(chan struct{}), serviceNode: "ours"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := WaitReady(ctx, admin, p); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("another process's admin: got %v", err)
	}
	node = "ours"
	if err := WaitReady(ctx, admin, p); err != nil {
		t.Fatalf("its own admin: %v", err)
	}
}

// TestPortsInUse names every busy address of a spec, and only those.
func TestPortsInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Close() }() // the test is over: a close error changes nothing
	free, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	port := uint32(busy.Addr().(*net.TCPAddr).Port)
	spec := &envoy.Spec{
		Listen: envoy.Address{Host: "127.0.0.1", Port: uint32(free)},
		Admin:  envoy.Address{Host: "127.0.0.1", Port: port},
		Routes: []envoy.Route{{Backends: []envoy.Backend{{Host: "127.0.0.1", Port: port}}}},
	}
	err = PortsInUse(spec, true)
	if err == nil || !strings.Contains(err.Error(), "admin 127.0.0.1:") || !strings.Contains(err.Error(), "backend b1 127.0.0.1:") || strings.Contains(err.Error(), "listener") {
		t.Fatalf("got %v", err)
	}
	if err := PortsInUse(spec, false); err == nil || strings.Contains(err.Error(), "backend") {
		t.Fatalf("without backends: got %v", err)
	}
	spec.Admin.Port = uint32(free)
	if err := PortsInUse(spec, false); err != nil {
		t.Fatalf("nothing busy: %v", err)
	}
}

// TestWaitAny: a process that exits by itself is reported by name; an ended context is not
// an error.
func TestWaitAny(t *testing.T) {
	long, err := Start("long", nil, "/bin/sh", "-c", "sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	defer long.Stop()
	short, err := Start("short", nil, "/bin/sh", "-c", "exit 3")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := waitAny(ctx, []*Process{long, short}); err == nil || !strings.HasPrefix(err.Error(), "short exited: ") {
		t.Fatalf("got %v, want short's exit", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := waitAny(ctx, []*Process{long}); err != nil {
		t.Fatalf("ended context: got %v", err)
	}
}
