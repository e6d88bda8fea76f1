package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/tokengate/tokengate/envoy"
	"github.com/tokengate/tokengate/internal/oci"
)

// moduleFile writes the module the test uses: the compiled filter when
// TOKENGATE_WASM names it (required under CI), else a synthetic module.
func moduleFile(t *testing.T) (path string, module []byte) {
	t.Helper()
	if path := os.Getenv("TOKENGATE_WASM"); path != "" {
		module, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("the compiled module is missing: %v", err)
		}
		return path, module
	}
	if os.Getenv("CI") != "" {
		t.Fatal("TOKENGATE_WASM is not set: run the tests with `make test`, which builds the module")
	}
	module = []byte("\x00asm\x01\x00\x00\x00synthetic")
	path = filepath.Join(t.TempDir(), "tokengate.wasm")
	if err := os.WriteFile(path, module, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, module
}

// fields reads "key: value" lines.
func fields(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// TestImageRoundTrip is the deploy path of the README with a registry in
// the test process: build the layout, push it, generate the WasmPlugin from
// what push printed, pull the image back with go-containerregistry's client.
// The pulled plugin.wasm is the module byte for byte; its sha256 is the one
// the WasmPlugin records; the WasmPlugin's url names the pushed manifest.
func TestImageRoundTrip(t *testing.T) {
	wasmPath, module := moduleFile(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // the default keychain, empty

	dir := filepath.Join(t.TempDir(), "image")
	code, out, errOut := runCLI(t, "", "image", "build", "-wasm", wasmPath, "-o", dir, "-tag", "v0.1.0")
	if code != 0 {
		t.Fatalf("build: exit %d: %s", code, errOut)
	}
	built := fields(out)

	code, out, errOut = runCLI(t, "", "image", "push", "-layout", dir, "-plain-http", host+"/tokengate:v0.1.0")
	if code != 0 {
		t.Fatalf("push: exit %d: %s", code, errOut)
	}
	pushed := fields(out)
	t.Logf("image push printed:\n%s", out)
	if pushed["manifest digest"] != built["manifest digest"] || pushed["module sha256"] != built["module sha256"] ||
		pushed["module sha256"] != oci.SHA256(module) {
		t.Errorf("build printed %v, push printed %v", built, pushed)
	}
	url := pushed["url"]
	if url != "oci://"+host+"/tokengate@"+pushed["manifest digest"] {
		t.Errorf("url %q", url)
	}
	// -q prints only the URL, for scripts; pushing the same module from
	// -wasm gives the same digest.
	code, out, errOut = runCLI(t, "", "image", "push", "-q", "-wasm", wasmPath, "-plain-http", host+"/tokengate:again")
	if code != 0 || out != url+"\n" {
		t.Errorf("push -q: exit %d, stdout %q, stderr %s", code, out, errOut)
	}

	code, manifest, errOut := runCLI(t, "", "istio", "-config", "testdata/plugin.json", "-url", url, "-wasm", wasmPath,
		"-namespace", "istio-system", "-selector", "istio=ingressgateway")
	if code != 0 || errOut != "" {
		t.Fatalf("istio: exit %d: %s", code, errOut)
	}
	plugins, err := envoy.ReadWasmPlugins([]byte(manifest))
	if err != nil || len(plugins) != 1 {
		t.Fatalf("%v\n%s", err, manifest)
	}
	p := plugins[0]
	if p.Spec.Url != url {
		t.Errorf("WasmPlugin url %q, pushed %q", p.Spec.Url, url)
	}
	recorded := annotation(t, manifest, envoy.ModuleSHA256Annotation)

	ref := strings.TrimPrefix(p.Spec.Url, "oci://")
	pulledImage, pulled, err := oci.Remote{PlainHTTP: true, Keychain: authn.NewMultiKeychain()}.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pulled, module) {
		t.Errorf("pulled %d bytes, not the module's %d", len(pulled), len(module))
	}
	if oci.SHA256(pulled) != recorded || pulledImage.Digest.String() != pushed["manifest digest"] {
		t.Errorf("pulled sha256 %s digest %s; WasmPlugin records %s, push printed %s",
			oci.SHA256(pulled), pulledImage.Digest, recorded, pushed["manifest digest"])
	}
	if code, out, _ := runCLI(t, "", "check", "-"); code != 1 || out != "" {
		t.Errorf("check of empty input: exit %d", code)
	}
	code, out, errOut = runCLI(t, manifest, "check", "-")
	if code != 0 || out != "standard input: WasmPlugin istio-system/tokengate: ok\n" {
		t.Errorf("check of the generated manifest: exit %d, %q %q", code, out, errOut)
	}
}

// annotation reads one metadata annotation of a generated manifest.
func annotation(t *testing.T, manifest, key string) string {
	t.Helper()
	for _, line := range strings.Split(manifest, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+": "); ok {
			return v
		}
	}
	t.Fatalf("no annotation %s in\n%s", key, manifest)
	return ""
}

func TestImageErrors(t *testing.T) {
	dir := t.TempDir()
	notWasm := filepath.Join(dir, "x.wasm")
	if err := os.WriteFile(notWasm, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	wasmPath, _ := moduleFile(t)
	cases := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"no subcommand", []string{"image"}, 2, "want a subcommand"},
		{"unknown subcommand", []string{"image", "pull"}, 2, `unknown subcommand "pull"`},
		{"missing module", []string{"image", "build", "-wasm", filepath.Join(dir, "none.wasm"), "-o", filepath.Join(dir, "l")}, 2, "none.wasm"},
		{"not wasm", []string{"image", "build", "-wasm", notWasm, "-o", filepath.Join(dir, "l")}, 1, "not a Wasm binary"},
		{"layout over a directory", []string{"image", "build", "-wasm", wasmPath, "-o", dir}, 2, "is not an OCI image layout"},
		{"push without reference", []string{"image", "push", "-wasm", wasmPath}, 2, "want exactly one image reference"},
		{"push both sources", []string{"image", "push", "-wasm", wasmPath, "-layout", dir, "r.example/t:1"}, 2, "not both"},
		{"push to no registry", []string{"image", "push", "-wasm", wasmPath, "tokengate:v1"}, 2, "never implied"},
		{"push plain http unasked", []string{"image", "push", "-wasm", wasmPath, host + "/t:1"}, 2, "refusing plain HTTP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", c.args...)
			if code != c.code || !strings.Contains(errOut, c.wantErr) || out != "" {
				t.Errorf("exit %d (want %d), stdout %q, stderr %q (want %q)", code, c.code, out, errOut, c.wantErr)
			}
		})
	}
}
