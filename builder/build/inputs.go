package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/platforms"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/moby/buildkit/session/sshforward/sshprovider"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/tonistiigi/fsutil"
)

// secretsAttachable parses --secret specs, buildx's syntax:
//
//	id=ID,src=FILE     the file's contents (also source=, type=file)
//	id=ID,env=VAR      the environment variable's value (also type=env)
//	id=ID              $ID when it is set, else the file ID
//
// and returns the session attachable that serves them to `RUN
// --mount=type=secret,id=ID`, nil for none. A file that does not exist or
// a variable that is not set is a *UsageError (Option "Secrets"), before
// anything is built: the values are read only when a step mounts them,
// and never become part of an image or its cache.
func secretsAttachable(specs []string) (session.Attachable, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	var srcs []secretsprovider.Source
	seen := map[string]bool{}
	for _, spec := range specs {
		bad := optionErr("Secrets", spec)
		fields, err := specFields(spec)
		if err != nil {
			return nil, bad("%v", err)
		}
		var s secretsprovider.Source
		typ := ""
		for _, f := range fields {
			switch k, v := f[0], f[1]; k {
			case "id":
				s.ID = v
			case "src", "source":
				s.FilePath = v
			case "env":
				s.Env = v
			case "type":
				if v != "file" && v != "env" {
					return nil, bad("type=%q: want file or env", v)
				}
				typ = v
			default:
				return nil, bad("unknown key %q (id, src, env, type)", k)
			}
		}
		if typ == "env" && s.Env == "" {
			s.Env, s.FilePath = s.FilePath, ""
		}
		switch {
		case s.ID == "":
			return nil, bad("no id= (the id that RUN --mount=type=secret,id=ID names)")
		case seen[s.ID]:
			return nil, bad("secret %q given twice", s.ID)
		case s.FilePath != "" && s.Env != "":
			return nil, bad("give src= or env=, not both")
		case s.FilePath == "" && s.Env == "":
			if _, ok := os.LookupEnv(s.ID); ok {
				s.Env = s.ID
			} else {
				s.FilePath = s.ID
			}
		}
		seen[s.ID] = true
		if s.Env != "" {
			if _, ok := os.LookupEnv(s.Env); !ok {
				return nil, bad("the environment variable %s is not set", s.Env)
			}
		} else {
			fi, err := os.Stat(s.FilePath)
			switch {
			case errors.Is(err, os.ErrNotExist):
				return nil, bad("the secret file %s does not exist", s.FilePath)
			case err != nil:
				return nil, bad("%v", err)
			case !fi.Mode().IsRegular():
				return nil, bad("the secret file %s is not a regular file", s.FilePath)
			case fi.Size() > secretsprovider.MaxSecretSize:
				return nil, bad("the secret file %s is larger than BuildKit's limit of %d bytes", s.FilePath, secretsprovider.MaxSecretSize)
			}
		}
		srcs = append(srcs, s)
	}
	store, err := secretsprovider.NewStore(srcs)
	if err != nil {
		return nil, &UsageError{Option: "Secrets", Err: err}
	}
	return secretsprovider.NewSecretProvider(store), nil
}

// sshAttachable parses --ssh specs, buildx's syntax:
//
//	default            the agent of $SSH_AUTH_SOCK, as id "default"
//	ID=SOCKET          the agent listening on SOCKET, as id ID
//	ID=KEY[,KEY…]      the private key files (without passphrase), as id ID
//
// and returns the session attachable that forwards them to `RUN
// --mount=type=ssh[,id=ID]`, nil for none. A socket or key that does not
// exist, or default without $SSH_AUTH_SOCK, is a *UsageError (Option
// "SSH").
func sshAttachable(specs []string) (session.Attachable, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	var confs []sshprovider.AgentConfig
	seen := map[string]bool{}
	for _, spec := range specs {
		bad := optionErr("SSH", spec)
		id, paths, hasPaths := strings.Cut(spec, "=")
		c := sshprovider.AgentConfig{ID: id}
		switch {
		case id == "" || strings.ContainsAny(id, ", \t"):
			return nil, bad("want default, ID=SOCKET or ID=KEYFILE")
		case seen[id]:
			return nil, bad("id %q given twice", id)
		case hasPaths:
			for _, p := range strings.Split(paths, ",") {
				if p == "" {
					return nil, bad("an empty path")
				}
				if _, err := os.Stat(p); err != nil {
					return nil, bad("%s: no such socket or key file", p)
				}
				c.Paths = append(c.Paths, p)
			}
		default:
			sock := os.Getenv("SSH_AUTH_SOCK")
			if sock == "" {
				return nil, bad("$SSH_AUTH_SOCK is not set: start an agent (eval $(ssh-agent); ssh-add KEY) or give %s=SOCKET", id)
			}
			if _, err := os.Stat(sock); err != nil {
				return nil, bad("$SSH_AUTH_SOCK %s: no such socket", sock)
			}
		}
		seen[id] = true
		confs = append(confs, c)
	}
	a, err := sshprovider.NewSSHAgentProvider(confs)
	if err != nil {
		return nil, &UsageError{Option: "SSH", Err: err}
	}
	return a, nil
}

// dockerImageScheme starts a build context that is an image.
const dockerImageScheme = "docker-image://"

// addBuildContexts parses --build-context specs, NAME=DIR or
// NAME=docker-image://REF, into the frontend's context:NAME attributes
// and the local directories the session serves: `FROM NAME` and `COPY
// --from=NAME` then read the directory or the image (a NAME that is an
// image's name replaces that image). A malformed spec, a directory that
// does not exist or a reference that does not parse is a *UsageError
// (Option "BuildContexts").
func addBuildContexts(specs []string, attrs map[string]string, local map[string]fsutil.FS) error {
	for _, spec := range specs {
		bad := optionErr("BuildContexts", spec)
		n, v, ok := strings.Cut(spec, "=")
		n = strings.TrimSpace(n)
		switch {
		case !ok || n == "" || v == "":
			return bad("want NAME=DIR or NAME=docker-image://REF")
		case strings.ContainsAny(n, " \t,"):
			return bad("the name %q has a space or a comma", n)
		case attrs["context:"+n] != "":
			return bad("context %q given twice", n)
		}
		if ref, ok := strings.CutPrefix(v, dockerImageScheme); ok {
			if _, err := name.ParseReference(ref); err != nil {
				return bad("%q is not an image reference: %v", ref, err)
			}
			attrs["context:"+n] = v
			continue
		}
		if scheme, _, ok := strings.Cut(v, "://"); ok {
			return bad("%s:// is not a context mabd build takes (a directory, or docker-image://REF)", scheme)
		}
		dir, err := filepath.Abs(v)
		if err != nil {
			return bad("%v", err)
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return bad("%s is not a directory", v)
		}
		fs, err := fsutil.NewFS(dir)
		if err != nil {
			return bad("%v", err)
		}
		// The local name must not be the main context's or the
		// Dockerfile's.
		ln := "ctx-" + n
		local[ln] = fs
		attrs["context:"+n] = "local:" + ln
	}
	return nil
}

// addLabels turns --label K=V into the frontend's label:K attributes
// (labels of the image config, as a LABEL instruction would add).
func addLabels(labels []string, attrs map[string]string) error {
	for _, kv := range labels {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return &UsageError{Option: "Labels", Value: kv, Err: errors.New("want KEY=VALUE")}
		}
		attrs["label:"+k] = v
	}
	return nil
}

// annotation is one --annotation: KEY=VALUE for where it goes.
type annotation struct {
	// Type is exptypes.AnnotationIndex, AnnotationManifest,
	// AnnotationIndexDescriptor or AnnotationManifestDescriptor; "" for
	// the index and every manifest.
	Type string
	// Platform limits a manifest annotation to one platform.
	Platform string
	Key      string
	Value    string
	// spec is the --annotation as given.
	spec string
}

// parseAnnotations parses --annotation specs: KEY=VALUE for the image
// index and every image manifest, or docker buildx's TYPE[PLATFORM]:KEY=VALUE
// for one of them, TYPE index, manifest, index-descriptor or
// manifest-descriptor ("manifest[linux/arm64]:org.example.k=v"). A bad
// one is a *UsageError (Option "Annotations").
func parseAnnotations(specs []string) ([]annotation, error) {
	var out []annotation
	for _, spec := range specs {
		bad := optionErr("Annotations", spec)
		kv, v, ok := strings.Cut(spec, "=")
		if !ok {
			return nil, bad("want KEY=VALUE or TYPE:KEY=VALUE (TYPE index, manifest, manifest[PLATFORM])")
		}
		a := annotation{Key: kv, Value: v, spec: spec}
		if typ, key, ok := strings.Cut(kv, ":"); ok && !strings.Contains(typ, ".") {
			a.Key = key
			if t, p, ok := strings.Cut(typ, "["); ok {
				if !strings.HasSuffix(p, "]") {
					return nil, bad("%q: want TYPE[PLATFORM]", typ)
				}
				typ, a.Platform = t, strings.TrimSuffix(p, "]")
				pl, err := platforms.Parse(a.Platform)
				if err != nil {
					return nil, bad("%v", err)
				}
				a.Platform = platforms.FormatAll(platforms.Normalize(pl))
			}
			switch typ {
			case exptypes.AnnotationIndex, exptypes.AnnotationIndexDescriptor, exptypes.AnnotationManifest, exptypes.AnnotationManifestDescriptor:
				a.Type = typ
			default:
				return nil, bad("unknown type %q (index, manifest, index-descriptor, manifest-descriptor)", typ)
			}
			if a.Platform != "" && !strings.HasPrefix(a.Type, exptypes.AnnotationManifest) {
				return nil, bad("only manifest annotations take a platform")
			}
		}
		if a.Key == "" || strings.ContainsAny(a.Key, " \t") {
			return nil, bad("%q is not an annotation key", a.Key)
		}
		out = append(out, a)
	}
	return out, nil
}

// exporterAttrs are the image and oci exporters' attributes for the
// annotations: an untyped one goes to the index (when the result is one:
// several platforms, or attestations) and to every manifest. An index
// annotation on a result that is a lone manifest is a *UsageError.
func (a annotation) exporterAttrs(index bool) (map[string]string, error) {
	m := map[string]string{}
	var p *ocispecs.Platform
	if a.Platform != "" {
		pl := platforms.MustParse(a.Platform)
		p = &pl
	}
	switch a.Type {
	case "":
		if index {
			m[exptypes.AnnotationIndexKey(a.Key)] = a.Value
		}
		m[exptypes.AnnotationManifestKey(p, a.Key)] = a.Value
	case exptypes.AnnotationIndex, exptypes.AnnotationIndexDescriptor:
		if !index {
			return nil, &UsageError{Option: "Annotations", Value: a.spec,
				Err: errors.New("the image is a lone manifest, not an index: index annotations need several platforms or --provenance")}
		}
		if a.Type == exptypes.AnnotationIndex {
			m[exptypes.AnnotationIndexKey(a.Key)] = a.Value
		} else {
			m[exptypes.AnnotationIndexDescriptorKey(a.Key)] = a.Value
		}
	case exptypes.AnnotationManifest:
		m[exptypes.AnnotationManifestKey(p, a.Key)] = a.Value
	case exptypes.AnnotationManifestDescriptor:
		m[exptypes.AnnotationManifestDescriptorKey(p, a.Key)] = a.Value
	}
	return m, nil
}

// provenanceAttr turns --provenance into the frontend's attest:provenance
// attribute: "" (not given), false, 0 or disabled=true mean none;
// true or 1 mode=min; otherwise BuildKit's key=value list, mode=min or
// mode=max (and its other keys: version=, builder-id=, …). BuildKit then
// attaches a SLSA provenance attestation for each platform to the image
// index. A bad value is a *UsageError (Option "Provenance").
func provenanceAttr(s string) (string, error) {
	bad := func(format string, args ...any) (string, error) {
		return "", &UsageError{Option: "Provenance", Value: s, Err: fmt.Errorf(format, args...)}
	}
	switch strings.ToLower(s) {
	case "", "false", "0", "disabled=true":
		return "", nil
	case "true", "1":
		return "mode=min", nil
	}
	fields, err := specFields(s)
	if err != nil {
		return bad("%v", err)
	}
	for _, f := range fields {
		switch k, v := f[0], f[1]; {
		case k == "mode" && v != "min" && v != "max":
			return bad("mode=%q: want min or max", v)
		case k == "disabled" && v == "true":
			return "", nil
		}
	}
	return s, nil
}

// sbomAttr turns --sbom into the frontend's attest:sbom attribute: ""
// (not given), false or 0 mean none; otherwise BuildKit's key=value list,
// which must name the scanner image with generator=REF. BuildKit's
// default scanner (docker/buildkit-syft-scanner) is an image on Docker
// Hub, which a build host without access to public registries cannot
// pull, so mabd build never picks it for you: a missing generator= is a
// *UsageError (Option "SBOM").
func sbomAttr(s string) (string, error) {
	bad := func(format string, args ...any) (string, error) {
		return "", &UsageError{Option: "SBOM", Value: s, Err: fmt.Errorf(format, args...)}
	}
	switch strings.ToLower(s) {
	case "", "false", "0":
		return "", nil
	case "true", "1":
		return bad("%s", noGenerator)
	}
	fields, err := specFields(s)
	if err != nil {
		return bad("%v", err)
	}
	for _, f := range fields {
		if f[0] == "generator" && f[1] != "" {
			if _, err := name.ParseReference(f[1]); err != nil {
				return bad("generator=%q is not an image reference: %v", f[1], err)
			}
			return s, nil
		}
	}
	return bad("%s", noGenerator)
}

// noGenerator says why --sbom needs generator=.
const noGenerator = "an SBOM is made by a scanner image, and BuildKit's default one " +
	"(docker/buildkit-syft-scanner) is on Docker Hub, which mabd does not assume the builder reaches: " +
	"name one it can pull with generator=REF (for example a mirror, generator=REGISTRY/buildkit-syft-scanner:stable-1)"

// SplitAnnotations splits annotation specs ([BuildOptions.Annotations])
// for a build whose image index is made apart from its images, as the
// build fleet makes it from the images of several nodes: the specs for
// the images, and the index's annotations. A bad spec, or an
// index-descriptor annotation (there is no index.json of one build to
// put it in), is a *UsageError.
func SplitAnnotations(specs []string) (images []string, index map[string]string, err error) {
	as, err := parseAnnotations(specs)
	if err != nil {
		return nil, nil, err
	}
	for _, a := range as {
		switch a.Type {
		case "", exptypes.AnnotationIndex:
			if index == nil {
				index = map[string]string{}
			}
			index[a.Key] = a.Value
			if a.Type == "" {
				images = append(images, a.spec)
			}
		case exptypes.AnnotationIndexDescriptor:
			return nil, nil, &UsageError{Option: "Annotations", Value: a.spec, Err: errors.New("index-descriptor annotations are not supported when the platforms are built on several nodes")}
		default:
			images = append(images, a.spec)
		}
	}
	return images, index, nil
}
