// Package oci packages a Wasm module as an OCI image that Istio and Envoy
// Gateway can pull, writes it as an OCI image layout without any registry,
// and pushes it to (or pulls it from) a registry, with go-containerregistry.
//
// The image follows the "compat" variant of the Wasm image specification:
// an OCI manifest (application/vnd.oci.image.manifest.v1+json) annotated
// module.wasm.image/variant=compat, whose single layer, of media type
// application/vnd.oci.image.layer.v1.tar+gzip, is a gzipped tar holding one
// file, plugin.wasm. Istio's puller reads the last layer of such an image
// when its media type is exactly that, and takes the file whose base name is
// plugin.wasm; Envoy Gateway's puller does the same. Everything in the image
// is fixed (no timestamps, fixed file mode and owner), so with one Go
// toolchain one module always gives one manifest digest: an image built
// twice, or built locally and pushed, has the same digest. (Another Go
// release may compress the layer differently, and so give another digest
// for the same module.)
//
// Nothing here is used by the filter itself: the module never links this
// package or its dependencies.
package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Names and media types of the compat variant.
const (
	// ModuleFile is the name of the module inside the layer.
	ModuleFile = "plugin.wasm"
	// VariantAnnotation marks the manifest as the compat variant.
	VariantAnnotation = "module.wasm.image/variant"
	// LayerMediaType is the one media type Istio accepts for the OCI compat
	// layer.
	LayerMediaType = types.OCILayer
	// MaxModuleBytes bounds a module read back from an image: Istio's own
	// default limit is 256 MiB.
	MaxModuleBytes = 256 << 20
)

// Built is an image and what identifies it.
type Built struct {
	Image        v1.Image
	Digest       v1.Hash // of the manifest: what a reference @sha256:... and Istio's sha256 name
	ModuleSHA256 string  // hex sha256 of the module
}

// Image returns the compat-variant image holding module, which must be a
// Wasm binary (it starts with "\0asm").
func Image(module []byte) (*Built, error) {
	if !isWasm(module) {
		return nil, errors.New("oci: the module is not a Wasm binary (no \\0asm header of version 1)")
	}
	layerBytes, err := layerArchive(module)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(LayerMediaType))
	if err != nil {
		return nil, fmt.Errorf("oci: layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: LayerMediaType})
	if err != nil {
		return nil, fmt.Errorf("oci: append the layer: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("oci: config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "wasip1", "wasm"
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return nil, fmt.Errorf("oci: config: %w", err)
	}
	img, ok := mutate.Annotations(img, map[string]string{
		VariantAnnotation:                "compat",
		"org.opencontainers.image.title": ModuleFile,
	}).(v1.Image)
	if !ok {
		return nil, errors.New("oci: annotating the manifest did not give an image")
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("oci: manifest digest: %w", err)
	}
	return &Built{Image: img, Digest: digest, ModuleSHA256: SHA256(module)}, nil
}

// SHA256 returns the hex sha256 of b.
func SHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// isWasm checks the Wasm binary header: the magic "\0asm" and version 1,
// as Istio does before it loads a pulled module.
func isWasm(b []byte) bool {
	return len(b) >= 8 && string(b[:8]) == "\x00asm\x01\x00\x00\x00"
}

// layerArchive returns the gzipped tar of the layer: plugin.wasm alone, with
// fixed metadata, so equal modules give equal bytes.
func layerArchive(module []byte) ([]byte, error) {
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("oci: gzip: %w", err)
	}
	tw := tar.NewWriter(gz)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     ModuleFile,
		Mode:     0o444,
		Size:     int64(len(module)),
		ModTime:  time.Unix(0, 0).UTC(),
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("oci: tar: %w", err)
	}
	if _, err := tw.Write(module); err != nil {
		return nil, fmt.Errorf("oci: tar: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("oci: tar: %w", err)
	}
	if err := gz.Close(); err != nil {
		return nil, fmt.Errorf("oci: gzip: %w", err)
	}
	return buf.Bytes(), nil
}

// Module returns the module inside img, read the way Istio reads a compat
// image: an OCI manifest, the last layer of media type
// application/vnd.oci.image.layer.v1.tar+gzip, the file named plugin.wasm in
// it. It also checks what the compat variant requires of the image (one
// layer, the variant annotation), so an image that only Istio's lenient
// reading would accept is refused.
func Module(img v1.Image) ([]byte, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("oci: manifest: %w", err)
	}
	switch {
	case m.MediaType != types.OCIManifestSchema1:
		return nil, fmt.Errorf("oci: manifest media type %q, want %q", m.MediaType, types.OCIManifestSchema1)
	case len(m.Layers) != 1:
		return nil, fmt.Errorf("oci: %d layers, want exactly one (the compat variant)", len(m.Layers))
	case m.Layers[0].MediaType != LayerMediaType:
		return nil, fmt.Errorf("oci: layer media type %q, want %q", m.Layers[0].MediaType, LayerMediaType)
	case m.Annotations[VariantAnnotation] != "compat":
		return nil, fmt.Errorf("oci: the manifest lacks the annotation %s=compat", VariantAnnotation)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("oci: layers: %w", err)
	}
	rc, err := layers[len(layers)-1].Compressed()
	if err != nil {
		return nil, fmt.Errorf("oci: layer: %w", err)
	}
	defer rc.Close()
	gz, err := gzip.NewReader(rc)
	if err != nil {
		return nil, fmt.Errorf("oci: layer is not gzip: %w", err)
	}
	tr := tar.NewReader(io.LimitReader(gz, MaxModuleBytes+1<<20))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("oci: no %s in the layer", ModuleFile)
		}
		if err != nil {
			return nil, fmt.Errorf("oci: layer: %w", err)
		}
		if path.Base(h.Name) != ModuleFile {
			continue
		}
		if h.Size > MaxModuleBytes {
			return nil, fmt.Errorf("oci: %s is %d bytes, more than %d", ModuleFile, h.Size, MaxModuleBytes)
		}
		module, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("oci: read %s: %w", ModuleFile, err)
		}
		if !isWasm(module) {
			return nil, fmt.Errorf("oci: %s is not a Wasm binary", ModuleFile)
		}
		return module, nil
	}
}
