package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/tokengate/tokengate/internal/oci"
)

// Default paths, relative to the root of a checkout (where make runs).
const (
	defaultWasm   = "build/tokengate.wasm"
	defaultLayout = "build/image"
)

// runImage: tokengate image build|push ...
func runImage(e *env, args []string) int {
	if len(args) == 0 {
		e.errorf("image: want a subcommand: build or push")
		imageUsage(e.stderr)
		return exitUsage
	}
	switch args[0] {
	case "build":
		return runImageBuild(e, args[1:])
	case "push":
		return runImagePush(e, args[1:])
	case "-h", "-help", "--help", "help":
		imageUsage(e.stdout)
		return exitOK
	}
	e.errorf("image: unknown subcommand %q: want build or push", args[0])
	imageUsage(e.stderr)
	return exitUsage
}

func imageUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: tokengate image build [-wasm FILE] [-o DIR] [-tag TAG] [-archive FILE]")
	fmt.Fprintln(w, "       tokengate image push [-wasm FILE | -layout DIR] [-plain-http] [-q] REGISTRY/REPOSITORY[:TAG]")
	fmt.Fprintln(w, "(tokengate image build -h, tokengate image push -h: their flags)")
}

// runImageBuild writes the module as an OCI image layout (and, with
// -archive, as a tar of that layout).
func runImageBuild(e *env, args []string) int {
	fs := newFlagSet(e, "image build", "[-wasm FILE] [-o DIR] [-tag TAG] [-archive FILE]")
	wasmPath := fs.String("wasm", defaultWasm, "the module (make wasm builds it)")
	outDir := fs.String("o", defaultLayout, "directory of the OCI image layout (replaced if it is one; refused if it is something else)")
	tag := fs.String("tag", "latest", "the image's name inside the layout (org.opencontainers.image.ref.name)")
	archive := fs.String("archive", "", "also write the layout as a tar archive to this file (skopeo's oci-archive:)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		e.errorf("image build: unexpected argument %q", fs.Arg(0))
		return exitUsage
	}
	built, code := buildImage(e, *wasmPath)
	if built == nil {
		return code
	}
	if err := oci.WriteLayout(*outDir, built, *tag); err != nil {
		e.errorf("image build: %v", err)
		return exitUsage
	}
	if *archive != "" {
		if code := writeArchive(e, *archive, *outDir); code != exitOK {
			return code
		}
	}
	fmt.Fprintf(e.stdout, "layout:          %s (tag %s)\n", *outDir, *tag)
	if *archive != "" {
		fmt.Fprintf(e.stdout, "archive:         %s\n", *archive)
	}
	printDigests(e, built)
	return exitOK
}

func writeArchive(e *env, path, dir string) int {
	f, err := os.Create(path)
	if err == nil {
		err = oci.WriteArchive(f, dir)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		e.errorf("image build: %v", err)
		return exitUsage
	}
	return exitOK
}

// runImagePush pushes the module's image (built from -wasm, or read from
// -layout) to a registry and prints the reference by digest.
func runImagePush(e *env, args []string) int {
	fs := newFlagSet(e, "image push", "[-wasm FILE | -layout DIR] [-plain-http] [-q] REGISTRY/REPOSITORY[:TAG]")
	wasmPath := fs.String("wasm", defaultWasm, "the module to push (make wasm builds it)")
	layoutDir := fs.String("layout", "", "push the image of this OCI image layout (make image builds "+defaultLayout+") instead of -wasm")
	plainHTTP := fs.Bool("plain-http", false, "allow plain HTTP (a registry without TLS, such as a local test registry); HTTPS only without it")
	quiet := fs.Bool("q", false, "print only the oci:// URL by digest, for a WasmPlugin's url")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	given := givenFlags(fs)
	switch {
	case fs.NArg() != 1:
		e.errorf("image push: want exactly one image reference (registry/repository:tag), got %d arguments", fs.NArg())
		fs.Usage()
		return exitUsage
	case given["wasm"] && given["layout"]:
		e.errorf("image push: give -wasm or -layout, not both")
		return exitUsage
	}
	var built *oci.Built
	if given["layout"] {
		var err error
		if built, err = oci.ReadLayout(*layoutDir); err != nil {
			e.errorf("image push: %v", err)
			return exitUsage
		}
	} else {
		var code int
		if built, code = buildImage(e, *wasmPath); built == nil {
			return code
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ref := fs.Arg(0)
	pushed, err := oci.Remote{PlainHTTP: *plainHTTP}.Push(ctx, ref, built)
	if err != nil {
		e.errorf("image push: %v", err)
		return exitUsage
	}
	url := "oci://" + pushed.String()
	if *quiet {
		fmt.Fprintln(e.stdout, url)
		return exitOK
	}
	fmt.Fprintf(e.stdout, "pushed:          %s\n", ref)
	printDigests(e, built)
	fmt.Fprintf(e.stdout, "url:             %s\n", url)
	return exitOK
}

// buildImage reads the module and builds its image. On failure it reports
// and returns nil with the exit status.
func buildImage(e *env, wasmPath string) (*oci.Built, int) {
	module, err := os.ReadFile(wasmPath)
	if err != nil {
		hint := ""
		if filepath.ToSlash(wasmPath) == defaultWasm {
			hint = " (run make wasm at the root of the checkout first)"
		}
		e.errorf("image: %v%s", err, hint)
		return nil, exitUsage
	}
	built, err := oci.Image(module)
	if err != nil {
		e.errorf("image: %s: %v", wasmPath, err)
		return nil, exitInvalid
	}
	return built, exitOK
}

func printDigests(e *env, b *oci.Built) {
	fmt.Fprintf(e.stdout, "manifest digest: %s\n", b.Digest)
	fmt.Fprintf(e.stdout, "module sha256:   %s\n", b.ModuleSHA256)
}
