package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
