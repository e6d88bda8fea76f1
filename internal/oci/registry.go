package oci

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Remote says how to reach a registry. The zero value uses HTTPS only, the
// credentials of the user's Docker configuration (the default keychain:
// $DOCKER_CONFIG/config.json or ~/.docker/config.json, with its credential
// helpers) and Go's default transport.
type Remote struct {
	// PlainHTTP allows unencrypted HTTP. Without it every request goes
	// over HTTPS, even to localhost and private addresses (where
	// go-containerregistry would otherwise fall back to HTTP by itself).
	PlainHTTP bool
	// Keychain gives the credentials; nil means authn.DefaultKeychain.
	Keychain authn.Keychain
	// Transport carries the requests; nil means remote.DefaultTransport.
	Transport http.RoundTripper
}

// ParseReference parses an image reference (registry/repository:tag or
// registry/repository@sha256:digest). The registry must be written out: it
// is never implied (no silent docker.io).
func (r Remote) ParseReference(ref string) (name.Reference, error) {
	opts := []name.Option{name.StrictValidation}
	if r.PlainHTTP {
		opts = append(opts, name.Insecure)
	}
	parsed, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("oci: %q is not an image reference registry/repository:tag or "+
			"registry/repository@sha256:digest (the registry, a host with a dot or a port, is never implied): %w", ref, err)
	}
	return parsed, nil
}

func (r Remote) options(ctx context.Context) []remote.Option {
	keychain := r.Keychain
	if keychain == nil {
		keychain = authn.DefaultKeychain
	}
	var base http.RoundTripper = remote.DefaultTransport
	if r.Transport != nil {
		base = r.Transport
	}
	if !r.PlainHTTP {
		base = httpsOnly{base}
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(keychain), remote.WithTransport(base)}
}

// errPlainHTTP is returned for a plain HTTP request that was not allowed.
var errPlainHTTP = errors.New("oci: refusing plain HTTP to the registry: allow it explicitly (tokengate image push -plain-http) for a registry without TLS")

// httpsOnly refuses requests that are not HTTPS.
type httpsOnly struct{ next http.RoundTripper }

func (t httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		return nil, fmt.Errorf("%w (%s %s)", errPlainHTTP, req.Method, req.URL.Redacted())
	}
	return t.next.RoundTrip(req)
}

// Push uploads the image to ref and returns the reference by digest of what
// was pushed (registry/repository@sha256:...).
func (r Remote) Push(ctx context.Context, ref string, b *Built) (name.Digest, error) {
	parsed, err := r.ParseReference(ref)
	if err != nil {
		return name.Digest{}, err
	}
	if d, isDigest := parsed.(name.Digest); isDigest && d.DigestStr() != b.Digest.String() {
		return name.Digest{}, fmt.Errorf("oci: %s names digest %s, but the image's digest is %s", ref, d.DigestStr(), b.Digest)
	}
	if err := remote.Write(parsed, b.Image, r.options(ctx)...); err != nil {
		return name.Digest{}, fmt.Errorf("oci: push %s: %w", ref, err)
	}
	return parsed.Context().Digest(b.Digest.String()), nil
}

// Pull fetches the image at ref and the module inside it (see Module).
func (r Remote) Pull(ctx context.Context, ref string) (*Built, []byte, error) {
	parsed, err := r.ParseReference(ref)
	if err != nil {
		return nil, nil, err
	}
	img, err := remote.Image(parsed, r.options(ctx)...)
	if err != nil {
		return nil, nil, fmt.Errorf("oci: pull %s: %w", ref, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, nil, fmt.Errorf("oci: pull %s: %w", ref, err)
	}
	module, err := Module(img)
	if err != nil {
		return nil, nil, fmt.Errorf("oci: pull %s: %w", ref, err)
	}
	return &Built{Image: img, Digest: digest, ModuleSHA256: SHA256(module)}, module, nil
}
