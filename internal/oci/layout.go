package oci

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// RefNameAnnotation names an image inside an OCI image layout (its tag).
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// WriteLayout writes the image as an OCI image layout in dir (oci-layout,
// index.json, blobs/sha256/...), tagged refName in the index ("" for no
// tag). dir must be missing, empty, or an OCI image layout, which is
// replaced whole: anything else is refused rather than overwritten.
func WriteLayout(dir string, b *Built, refName string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("oci: %w", err)
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			return fmt.Errorf("oci: %s exists and is not an OCI image layout: not overwriting it", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("oci: replace %s: %w", dir, err)
		}
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("oci: write layout %s: %w", dir, err)
	}
	var opts []layout.Option
	if refName != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{RefNameAnnotation: refName}))
	}
	if err := p.AppendImage(b.Image, opts...); err != nil {
		return fmt.Errorf("oci: write image to %s: %w", dir, err)
	}
	return nil
}

// ReadLayout returns the one image of the OCI image layout in dir, checked
// as a compat Wasm image (see Module).
func ReadLayout(dir string) (*Built, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("oci: read layout %s: %w", dir, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("oci: read layout %s: %w", dir, err)
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("oci: layout %s holds %d images, want one", dir, len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		return nil, fmt.Errorf("oci: read layout %s: %w", dir, err)
	}
	module, err := Module(img)
	if err != nil {
		return nil, fmt.Errorf("oci: layout %s: %w", dir, err)
	}
	return &Built{Image: img, Digest: m.Manifests[0].Digest, ModuleSHA256: SHA256(module)}, nil
}

// WriteArchive writes the OCI image layout of dir as a tar archive (what
// `skopeo copy oci-archive:FILE ...` and `podman load` read), with fixed
// metadata, files in name order.
func WriteArchive(w io.Writer, dir string) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("oci: archive %s: %w", dir, err)
	}
	sort.Strings(files)
	tw := tar.NewWriter(w)
	for _, p := range files {
		if err := addToArchive(tw, dir, p); err != nil {
			return fmt.Errorf("oci: archive %s: %w", dir, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("oci: archive %s: %w", dir, err)
	}
	return nil
}

func addToArchive(tw *tar.Writer, dir, p string) error {
	info, err := os.Stat(p)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(dir, p)
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: time.Unix(0, 0).UTC(), Format: tar.FormatPAX}
	if info.IsDir() {
		hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
		return tw.WriteHeader(hdr)
	}
	hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, info.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}
