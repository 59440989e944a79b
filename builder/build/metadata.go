package build

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"mabd/builder/manifest"
)

// Keys mabd adds to BuildKit's in the metadata file ([BuildOptions.MetadataFile]).
const (
	// MetadataPlatforms are the platforms built (a JSON array).
	MetadataPlatforms = "mabd.platforms"
	// MetadataIndexDigest is the digest of the image index, when the
	// image is one (several platforms, or attestations); it equals
	// containerimage.digest then.
	MetadataIndexDigest = "mabd.index.digest"
	// MetadataManifests maps each platform to the digest of its image
	// manifest (a JSON object).
	MetadataManifests = "mabd.manifests"
	// MetadataAttestations maps each platform to the digest of the
	// attestation manifest (provenance, SBOM) that describes its image.
	MetadataAttestations = "mabd.attestations"
)

// OutputFileError is a build that succeeded, whose metadata or image ID
// file could not be written.
type OutputFileError struct {
	File string
	Err  error
}

func (e *OutputFileError) Error() string { return fmt.Sprintf("write %s: %v", e.File, e.Err) }
func (e *OutputFileError) Unwrap() error { return e.Err }

// checkOutputFile refuses a metadata or image ID file whose directory does
// not exist, or that is a directory, before the build; then it removes the
// file, so that a build that fails leaves none from an earlier run.
func checkOutputFile(option, file string) error {
	if file == "" {
		return nil
	}
	bad := optionErr(option, file)
	if fi, err := os.Stat(filepath.Dir(file)); err != nil || !fi.IsDir() {
		return bad("its directory %s does not exist", filepath.Dir(file))
	}
	if fi, err := os.Stat(file); err == nil && fi.IsDir() {
		return bad("is a directory")
	}
	if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
		return bad("%v", err)
	}
	return nil
}

// CheckOutputFiles refuses, before a build, a metadata or image ID file
// (opt.MetadataFile, opt.IIDFile) that cannot be written, and removes one
// an earlier run left (see checkOutputFile).
func CheckOutputFiles(opt Options) error {
	if err := checkOutputFile("MetadataFile", opt.MetadataFile); err != nil {
		return err
	}
	return checkOutputFile("IIDFile", opt.IIDFile)
}

// WriteOutputFiles writes the metadata and image ID files of a build whose
// result was put together apart from one solve (the build fleet joins the
// images of several nodes into one index), as Build writes its own: the
// manifests are read back from the pushed image or the OCI output of
// opt.
func WriteOutputFiles(ctx context.Context, opt Options, res *Result) error {
	exports, err := exportEntries(opt, insecureSet(opt.InsecureRegistries))
	if err != nil {
		return err
	}
	return writeOutputFiles(ctx, opt, res, exports)
}

func writeOutputFiles(ctx context.Context, opt Options, res *Result, exports []client.ExportEntry) error {
	if opt.MetadataFile != "" {
		if err := writeMetadata(ctx, opt.MetadataFile, res, exports, opt.Outputs); err != nil {
			return err
		}
	}
	if opt.IIDFile != "" && res.Digest != "" {
		return writeIIDFile(opt.IIDFile, res.Digest)
	}
	return nil
}

// decodeResponse is BuildKit's exporter response as docker buildx writes
// it to its metadata file: values that are base64-encoded JSON objects
// (containerimage.descriptor, …) decoded, the others as they are.
func decodeResponse(resp map[string]string) map[string]any {
	out := make(map[string]any, len(resp))
	for k, v := range resp {
		out[k] = v
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			continue
		}
		var obj map[string]any
		if json.Unmarshal(b, &obj) == nil && len(obj) > 0 {
			out[k] = json.RawMessage(b)
		}
	}
	return out
}

// readBackRef is where the manifests of what a build exported can be read
// again: the first image pushed, else the first OCI layout (tarball or
// directory) written; "" when there is neither.
func readBackRef(exports []client.ExportEntry, outputs []string, digest string) (ref string, insecure bool) {
	for _, e := range exports {
		if e.Type != client.ExporterImage || e.Attrs[string(exptypes.OptKeyPush)] != "true" || e.Attrs["name"] == "" {
			continue
		}
		n, _, _ := strings.Cut(e.Attrs["name"], ",")
		insecure = e.Attrs[string(exptypes.OptKeyInsecure)] == "true"
		var opts []name.Option
		if insecure {
			opts = append(opts, name.Insecure)
		}
		r, err := name.ParseReference(n, opts...)
		if err != nil {
			continue
		}
		return r.Context().Digest(digest).String(), insecure
	}
	for _, spec := range outputs {
		o, err := ParseOutput(spec)
		if err != nil || o.Type != client.ExporterOCI || o.Dest == "-" {
			continue
		}
		if o.Dir {
			return manifest.LayoutPrefix + o.Dest + "@" + digest, false
		}
		return manifest.ArchivePrefix + o.Dest + "@" + digest, false
	}
	return "", false
}

// manifestDigests returns the digest of each platform's image manifest and
// of each platform's attestation manifest, read from ref (an image index).
func manifestDigests(ctx context.Context, ref string, insecure bool) (images, attestations map[string]string, err error) {
	a, err := manifest.Resolve(ctx, ref, manifest.Options{Insecure: insecure})
	if err != nil {
		return nil, nil, err
	}
	defer a.Close()
	if a.Index == nil {
		return nil, nil, fmt.Errorf("%s is not an image index", ref)
	}
	im, err := a.Index.IndexManifest()
	if err != nil {
		return nil, nil, err
	}
	images, attestations = map[string]string{}, map[string]string{}
	platformOf := map[v1.Hash]string{}
	for _, d := range im.Manifests {
		if d.Platform != nil && !manifest.IsAttestation(d) {
			p := manifest.PlatformString(d.Platform)
			images[p] = d.Digest.String()
			platformOf[d.Digest] = p
		}
	}
	for _, d := range im.Manifests {
		if !manifest.IsAttestation(d) {
			continue
		}
		if subject, err := v1.NewHash(d.Annotations[manifest.AnnotationReferenceDigest]); err == nil && platformOf[subject] != "" {
			attestations[platformOf[subject]] = d.Digest.String()
		}
	}
	return images, attestations, nil
}

// writeMetadata writes the metadata file of a build: BuildKit's exporter
// response, decoded as docker buildx writes it (containerimage.digest is
// the image's digest: the index's when there are several platforms), and
// mabd's keys: the platforms built, the index's digest, and each
// platform's manifest digest, read back from the pushed image or the OCI
// output — or, for an image that is a lone manifest, its digest. When the
// image was neither pushed nor written as an OCI layout (only kept in
// buildkitd's store), the manifests' digests are not known and left out.
func writeMetadata(ctx context.Context, file string, res *Result, exports []client.ExportEntry, outputs []string) error {
	md := decodeResponse(res.ExporterResponse)
	md[MetadataPlatforms] = res.Platforms
	if res.Digest != "" {
		var desc ocispecs.Descriptor
		if b, err := base64.StdEncoding.DecodeString(res.ExporterResponse[exptypes.ExporterImageDescriptorKey]); err == nil {
			json.Unmarshal(b, &desc)
		}
		switch {
		case desc.MediaType == ocispecs.MediaTypeImageIndex || desc.MediaType == "application/vnd.docker.distribution.manifest.list.v2+json":
			md[MetadataIndexDigest] = res.Digest
			if ref, insecure := readBackRef(exports, outputs, res.Digest); ref != "" {
				images, atts, err := manifestDigests(ctx, ref, insecure)
				if err != nil {
					return &OutputFileError{File: file, Err: fmt.Errorf("read the manifests back: %w", err)}
				}
				md[MetadataManifests] = images
				if len(atts) > 0 {
					md[MetadataAttestations] = atts
				}
			}
		case len(res.Platforms) == 1:
			md[MetadataManifests] = map[string]string{res.Platforms[0]: res.Digest}
		}
	}
	b, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return &OutputFileError{File: file, Err: err}
	}
	if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
		return &OutputFileError{File: file, Err: err}
	}
	return nil
}

// writeIIDFile writes the image's digest (what mabd build prints) to file,
// without a newline, as docker buildx's --iidfile does.
func writeIIDFile(file, digest string) error {
	if err := os.WriteFile(file, []byte(digest), 0o644); err != nil {
		return &OutputFileError{File: file, Err: err}
	}
	return nil
}
