package oci_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/tokengate/tokengate/internal/oci"
)

// synthetic is a minimal valid Wasm module (header only) with a marker, for
// the tests where the real module is not the point.
func synthetic(marker string) []byte {
	return append([]byte("\x00asm\x01\x00\x00\x00\x00\x07\x06marker"), marker...)
}

// realModule returns build/tokengate.wasm as named by TOKENGATE_WASM. Under
// CI a missing module fails the test; elsewhere the test is skipped.
func realModule(t *testing.T) []byte {
	t.Helper()
	path := os.Getenv("TOKENGATE_WASM")
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("TOKENGATE_WASM is not set: run the tests with `make test`, which builds the module")
		}
		t.Skip("TOKENGATE_WASM is not set (make test sets it)")
	}
	module, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the compiled module is missing: %v", err)
	}
	return module
}

func TestImageIsTheCompatVariant(t *testing.T) {
	module := synthetic("a")
	b, err := oci.Image(module)
	if err != nil {
		t.Fatal(err)
	}
	m, err := b.Image.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON ||
		len(m.Layers) != 1 || m.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" ||
		m.Annotations["module.wasm.image/variant"] != "compat" {
		t.Errorf("manifest %+v", m)
	}
	// The layer is a gzipped tar with exactly one file, plugin.wasm.
	layers, _ := b.Image.Layers()
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	names, files := tarFiles(t, rc)
	if len(names) != 1 || names[0] != "plugin.wasm" || !bytes.Equal(files["plugin.wasm"], module) {
		t.Errorf("layer files %q", names)
	}
	cfg, _ := b.Image.ConfigFile()
	if cfg.OS != "wasip1" || cfg.Architecture != "wasm" || len(cfg.RootFS.DiffIDs) != 1 {
		t.Errorf("config %+v", cfg)
	}
	if got, err := oci.Module(b.Image); err != nil || !bytes.Equal(got, module) {
		t.Errorf("Module: %v", err)
	}
	if b.ModuleSHA256 != oci.SHA256(module) || len(b.ModuleSHA256) != 64 {
		t.Errorf("module sha256 %q", b.ModuleSHA256)
	}
}

// TestImageIsReproducible: one module, one digest; another module, another.
func TestImageIsReproducible(t *testing.T) {
	b1, err1 := oci.Image(synthetic("a"))
	b2, err2 := oci.Image(synthetic("a"))
	b3, err3 := oci.Image(synthetic("b"))
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	if b1.Digest != b2.Digest || b1.Digest == b3.Digest {
		t.Errorf("digests %s %s %s", b1.Digest, b2.Digest, b3.Digest)
	}
}

func TestImageRefusesWhatIsNotWasm(t *testing.T) {
	for _, bad := range [][]byte{nil, []byte("\x00asm"), []byte("\x00asm\x02\x00\x00\x00"), []byte("#!/bin/sh\necho\n")} {
		if _, err := oci.Image(bad); err == nil || !strings.Contains(err.Error(), "not a Wasm binary") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestModuleRefusesOtherImages: the reader holds images to the compat
// variant, so a test passing on it means something.
func TestModuleRefusesOtherImages(t *testing.T) {
	good, err := oci.Image(synthetic("a"))
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := good.Image.Layers()
	twoLayers, err := mutate.AppendLayers(good.Image, layers[0])
	if err != nil {
		t.Fatal(err)
	}
	dockerLayer, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1),
		mutate.Addendum{Layer: static.NewLayer([]byte("x"), types.DockerLayer)})
	if err != nil {
		t.Fatal(err)
	}
	unannotated, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers[0])
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		img  v1.Image
		want string
	}{
		{"docker manifest", empty.Image, "manifest media type"},
		{"two layers", twoLayers, "2 layers, want exactly one"},
		{"docker layer", dockerLayer, "layer media type"},
		{"no annotation", unannotated, "lacks the annotation module.wasm.image/variant=compat"},
	}
	for _, c := range cases {
		if _, err := oci.Module(c.img); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}

func TestLayout(t *testing.T) {
	b, err := oci.Image(synthetic("a"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "image")
	if err := oci.WriteLayout(dir, b, "v1"); err != nil {
		t.Fatal(err)
	}
	// Written again over itself: replaced, one image still.
	if err := oci.WriteLayout(dir, b, "v1"); err != nil {
		t.Fatal(err)
	}
	got, err := oci.ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != b.Digest || got.ModuleSHA256 != b.ModuleSHA256 {
		t.Errorf("read back %s %s, wrote %s %s", got.Digest, got.ModuleSHA256, b.Digest, b.ModuleSHA256)
	}
	index, err := os.ReadFile(filepath.Join(dir, "index.json"))
	var idx v1.IndexManifest
	if err == nil {
		err = json.Unmarshal(index, &idx)
	}
	if err != nil || len(idx.Manifests) != 1 || idx.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "v1" {
		t.Errorf("index.json: %v %s", err, index)
	}

	var archive bytes.Buffer
	if err := oci.WriteArchive(&archive, dir); err != nil {
		t.Fatal(err)
	}
	names, _ := tarFiles(t, &archive)
	blob := "blobs/sha256/" + b.Digest.Hex
	if !sort.StringsAreSorted(names) || !slices.Contains(names, "oci-layout") || !slices.Contains(names, "index.json") || !slices.Contains(names, blob) {
		t.Errorf("archive holds %q", names)
	}

	// A directory that is not a layout is never overwritten.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := oci.WriteLayout(other, b, ""); err == nil || !strings.Contains(err.Error(), "not an OCI image layout") {
		t.Errorf("non-layout directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, "notes.txt")); err != nil {
		t.Errorf("the directory was touched: %v", err)
	}
}

// tarFiles reads a tar archive: the names of its entries in order, and the
// contents of its files.
func tarFiles(t *testing.T, r io.Reader) ([]string, map[string][]byte) {
	t.Helper()
	tr := tar.NewReader(r)
	var names []string
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, files
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if files[h.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
}

// newRegistry serves go-containerregistry's in-process registry on a
// loopback address. wrap, when not nil, wraps its handler.
func newRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestPushPullRealModule pushes the compiled module and pulls it back with
// go-containerregistry's remote client: byte for byte the module, the
// digest the push returned.
func TestPushPullRealModule(t *testing.T) {
	module := realModule(t)
	pushPull(t, module)
}

func TestPushPullSynthetic(t *testing.T) {
	pushPull(t, synthetic("round trip"))
}

func pushPull(t *testing.T, module []byte) {
	t.Helper()
	host := newRegistry(t, nil)
	b, err := oci.Image(module)
	if err != nil {
		t.Fatal(err)
	}
	r := oci.Remote{PlainHTTP: true, Keychain: authn.NewMultiKeychain()}
	ctx := context.Background()
	pushed, err := r.Push(ctx, host+"/team/tokengate:v1", b)
	if err != nil {
		t.Fatal(err)
	}
	if pushed.String() != host+"/team/tokengate@"+b.Digest.String() {
		t.Errorf("pushed %s, digest %s", pushed, b.Digest)
	}
	// By tag and by digest, with the library's own client.
	for _, ref := range []string{host + "/team/tokengate:v1", pushed.String()} {
		parsed, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(parsed)
		if err != nil {
			t.Fatal(err)
		}
		digest, _ := img.Digest()
		got, err := oci.Module(img)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, module) || oci.SHA256(got) != b.ModuleSHA256 || digest != b.Digest {
			t.Errorf("%s: pulled %d bytes, sha256 %s, digest %s; pushed %d bytes, %s, %s",
				ref, len(got), oci.SHA256(got), digest, len(module), b.ModuleSHA256, b.Digest)
		}
	}
	pulled, got, err := r.Pull(ctx, pushed.String())
	if err != nil || !bytes.Equal(got, module) || pulled.Digest != b.Digest {
		t.Errorf("Pull: %v", err)
	}
	t.Logf("pushed %d bytes to %s; manifest digest %s; module sha256 %s", len(module), pushed, b.Digest, b.ModuleSHA256)
}

// TestPushNeedsPlainHTTPAllowed: without PlainHTTP nothing goes out
// unencrypted, not even to a loopback registry.
func TestPushNeedsPlainHTTPAllowed(t *testing.T) {
	host := newRegistry(t, nil)
	b, err := oci.Image(synthetic("a"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = oci.Remote{Keychain: authn.NewMultiKeychain()}.Push(context.Background(), host+"/tokengate:v1", b)
	if err == nil || !strings.Contains(err.Error(), "refusing plain HTTP") {
		t.Errorf("got %v", err)
	}
}

// TestPushUsesDockerConfig: credentials come from the Docker config the user
// already has (DOCKER_CONFIG here), through the default keychain.
func TestPushUsesDockerConfig(t *testing.T) {
	const user, pass = "ci", "s3cret"
	var authorized, refused int
	host := newRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				refused++
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			authorized++
			next.ServeHTTP(w, r)
		})
	})
	b, err := oci.Image(synthetic("a"))
	if err != nil {
		t.Fatal(err)
	}
	dockerDir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dockerDir)
	// No credentials yet: refused.
	if _, err := (oci.Remote{PlainHTTP: true}).Push(context.Background(), host+"/tokengate:v1", b); err == nil {
		t.Fatal("pushed without credentials")
	}
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	cfg := `{"auths": {"` + host + `": {"auth": "` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(dockerDir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (oci.Remote{PlainHTTP: true}).Push(context.Background(), host+"/tokengate:v1", b); err != nil {
		t.Fatal(err)
	}
	if authorized == 0 || refused == 0 {
		t.Errorf("authorized %d, refused %d requests", authorized, refused)
	}
}

func TestReferenceErrors(t *testing.T) {
	b, err := oci.Image(synthetic("a"))
	if err != nil {
		t.Fatal(err)
	}
	r := oci.Remote{PlainHTTP: true, Keychain: authn.NewMultiKeychain()}
	for _, c := range []struct{ ref, want string }{
		{"tokengate:v1", "the registry, a host with a dot or a port, is never implied"},
		{"Registry.example.com/UPPER:v1", "is not an image reference"},
		{"127.0.0.1:1/tokengate@sha256:" + strings.Repeat("0", 64), "names digest sha256:000"},
	} {
		if _, err := r.Push(context.Background(), c.ref, b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.ref, err, c.want)
		}
	}
}

// TestFilterLinksNoneOfThis: the module stays small only if the filter
// never imports the delivery side (go-containerregistry, istio.io/api, the
// generator). go list answers for the wasip1 build.
func TestFilterLinksNoneOfThis(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "github.com/tokengate/tokengate/filter")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/tokengate/tokengate/internal/config") {
		t.Fatalf("go list gave no sensible answer: %q", deps)
	}
	for _, dep := range deps {
		for _, banned := range []string{"github.com/google/go-containerregistry", "istio.io/", "github.com/tokengate/tokengate/envoy",
			"github.com/tokengate/tokengate/internal/oci", "github.com/golang/protobuf", "sigs.k8s.io/yaml"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("the filter links %s", dep)
			}
		}
	}
}
