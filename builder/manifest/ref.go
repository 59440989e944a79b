package manifest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Prefixes of the references to local OCI image layouts.
const (
	// LayoutPrefix starts a reference to an OCI image layout directory.
	LayoutPrefix = "oci-layout:"
	// ArchivePrefix starts a reference to an OCI image layout tarball.
	ArchivePrefix = "oci-archive:"
)

// Kind says where a reference points.
type Kind int

// Kinds of reference.
const (
	// Registry is an image in a registry.
	Registry Kind = iota
	// Layout is an OCI image layout directory.
	Layout
	// Archive is an OCI image layout tarball.
	Archive
)

// String returns the kind's name: "registry", "oci-layout", "oci-archive".
func (k Kind) String() string {
	switch k {
	case Registry:
		return "registry"
	case Layout:
		return "oci-layout"
	case Archive:
		return "oci-archive"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Options say how to reach registries.
type Options struct {
	// Insecure allows plain HTTP and TLS certificates that do not verify,
	// for every registry. Registries on loopback addresses (127.0.0.1, ::1,
	// localhost) are always allowed plain HTTP.
	Insecure bool
	// Keychain finds credentials; nil means [authn.DefaultKeychain], the
	// Docker config file ($DOCKER_CONFIG/config.json, ~/.docker/config.json).
	Keychain authn.Keychain
	// UserAgent is sent to registries (default "mabd").
	UserAgent string
	// Timeout bounds every registry request: connecting, the TLS
	// handshake and the response headers each get no longer, a manifest,
	// index, config or token must be read whole within it, and a blob
	// (a layer being audited or copied) may not stall for longer. A
	// registry that does not answer in time fails with a [TimeoutError].
	// Zero (or less) means [DefaultTimeout].
	Timeout time.Duration
}

// Reference is a parsed reference: a registry image, or an entry of an OCI
// image layout (a directory or a tarball).
type Reference struct {
	// Kind says which of the other fields are set.
	Kind Kind
	// Name is the registry reference (Kind Registry).
	Name name.Reference
	// Path is the layout directory or archive file (Layout, Archive).
	Path string
	// Tag selects an entry of the layout's index.json by its
	// org.opencontainers.image.ref.name annotation.
	Tag string
	// Digest selects a manifest or index of the layout by digest.
	Digest *v1.Hash

	text string
}

// String returns the reference as it was given.
func (r Reference) String() string { return r.text }

// WithDigest returns a reference to the manifest h below r, for display:
// "registry/repo:tag@sha256:…", "oci-archive:FILE@sha256:…".
func (r Reference) WithDigest(h v1.Hash) string {
	switch r.Kind {
	case Registry:
		base := r.Name.Context().Name()
		if t, ok := r.Name.(name.Tag); ok {
			base += ":" + t.TagStr()
		}
		return base + "@" + h.String()
	case Layout:
		return LayoutPrefix + r.Path + "@" + h.String()
	default:
		return ArchivePrefix + r.Path + "@" + h.String()
	}
}

// ParseReference parses a registry reference, "oci-layout:DIR[:TAG|@DIGEST]"
// or "oci-archive:FILE[:TAG|@DIGEST]".
func ParseReference(s string, opt Options) (Reference, error) {
	ref := Reference{text: s}
	var rest string
	switch {
	case strings.HasPrefix(s, LayoutPrefix):
		ref.Kind, rest = Layout, strings.TrimPrefix(s, LayoutPrefix)
	case strings.HasPrefix(s, ArchivePrefix):
		ref.Kind, rest = Archive, strings.TrimPrefix(s, ArchivePrefix)
	default:
		if strings.Contains(s, "://") {
			return ref, fmt.Errorf("parse reference %q: give a registry reference (host:port/repo:tag) without a scheme, oci-layout:DIR or oci-archive:FILE", s)
		}
		var opts []name.Option
		if opt.Insecure || LocalRegistry(RegistryHost(s)) {
			opts = append(opts, name.Insecure)
		}
		n, err := name.ParseReference(s, opts...)
		if err != nil {
			return ref, fmt.Errorf("parse reference %q: %w", s, err)
		}
		ref.Name = n
		return ref, nil
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		h, err := v1.NewHash(rest[i+1:])
		if err != nil {
			return ref, fmt.Errorf("parse reference %q: digest: %w", s, err)
		}
		ref.Digest, rest = &h, rest[:i]
	} else if i := strings.LastIndex(rest, ":"); i >= 0 && !strings.Contains(rest[i+1:], "/") {
		ref.Tag, rest = rest[i+1:], rest[:i]
		if ref.Tag == "" {
			return ref, fmt.Errorf("parse reference %q: empty tag", s)
		}
	}
	if rest == "" {
		return ref, fmt.Errorf("parse reference %q: no path after %s", s, ref.Kind.String()+":")
	}
	ref.Path = rest
	return ref, nil
}

// RegistryHost returns the registry host ("host", "host:port") of a
// registry reference, or "docker.io" when it names none: as with docker
// pull, the reference's first component is a host when it has a "." or a
// ":" or is "localhost" ("alpine" and "library/alpine" are Docker Hub's).
func RegistryHost(ref string) string {
	first, _, ok := strings.Cut(ref, "/")
	if !ok || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		return "docker.io"
	}
	return first
}

// LocalRegistry says whether a registry host ("localhost",
// "127.0.0.1:5000", "[::1]:5000") is on this machine: localhost or a
// loopback address. Local registries are always allowed plain HTTP, here
// and in the builder's pushes, without being named as insecure.
func LocalRegistry(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// remoteOptions returns the go-containerregistry options of opt.
func (opt Options) remoteOptions(ctx context.Context) []remote.Option {
	kc := opt.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	ua := opt.UserAgent
	if ua == "" {
		ua = "mabd"
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithUserAgent(ua), remote.WithTransport(opt.transport())}
}

// ErrNotFound is wrapped by the errors of references that do not exist:
// no such manifest in the registry, tag in the layout or file.
var ErrNotFound = errors.New("not found")
