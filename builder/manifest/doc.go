// Package manifest reads image manifests and image indexes, and joins
// existing images into a multi-platform index, without a Docker engine.
//
// # References
//
// [ParseReference] understands three kinds of reference:
//
//   - a registry reference, "registry.example:5000/repo:tag" or
//     "repo@sha256:…" (Docker Hub's defaults apply, as with docker pull);
//   - "oci-layout:DIR", "oci-layout:DIR:TAG" or "oci-layout:DIR@sha256:…",
//     an OCI image layout directory;
//   - "oci-archive:FILE" (with the same :TAG and @digest suffixes), the
//     tarball of an OCI image layout that `buildctl --output type=oci` and
//     `mabd build --output type=oci,dest=FILE` write. It is read in place,
//     without extracting it; gzip-compressed archives are refused.
//
// In a layout, TAG selects the entry of index.json whose
// org.opencontainers.image.ref.name annotation is TAG (BuildKit's
// io.containerd.image.name, "NAME:TAG", also matches); without TAG or
// digest, an index.json with exactly one entry stands for that entry (as
// BuildKit writes it: index.json, then the image index), and so does one
// whose entries all have one digest (BuildKit writes one entry per image
// name); one with several different entries stands for index.json itself. Indexes may nest: [Artifact.Manifests]
// descends into them.
//
// Layouts and archives come from anywhere, so what is read of them is
// bounded: every file (index.json, each blob) and the archive itself must
// be a regular file — a symlink in a layout directory is followed, and its
// target must be a regular file too; a FIFO, a device or a directory is
// refused with [ErrNotRegular] without blocking on it — and so must every
// entry of an archive (a symlink, hard link, device or FIFO entry is
// refused; so is one that runs past the end of the file). index.json and
// the manifests, indexes and configs read into memory are at most 16 MiB.
// Every blob must have the size and the digest of its descriptor: sha256
// and sha512 digests are checked, other algorithms refused. Layers are
// streamed, no further than their declared size.
//
// Registries are reached with go-containerregistry, with the credentials of
// the Docker config file ([authn.DefaultKeychain]). [Options.Insecure]
// allows plain HTTP and TLS certificates that do not verify; registries on
// 127.0.0.1, ::1 and localhost are always allowed plain HTTP. Every request
// is bounded by [Options.Timeout] ([DefaultTimeout], 30s): connecting, the
// TLS handshake, the response headers and a whole manifest must each come
// within it, and a blob may not stall for longer; a registry that does not
// answer fails with a [TimeoutError] naming it and the timeout.
//
// # Inspecting
//
// [Resolve] fetches what a reference names, an image manifest or an index,
// with its bytes exactly as stored ([Artifact.Raw]), so that their sha256 is
// the digest registries and skopeo report. [Artifact.Manifests] lists its
// image manifests with their descriptors (platform included) for `mabd
// manifest inspect --verbose` ([Verbose]) and --format table ([Table]).
//
// # Creating
//
// [Create] is `docker manifest create` and `docker manifest push` in one
// step: it resolves every source first (an image, or an index whose images
// are all taken), reads each image's platform from its config (os,
// architecture, variant, os.version), refuses two different images of one
// platform unless [CreateOptions.Overrides] names the source that wins, and
// only then pushes the index (an OCI image index or a Docker manifest list)
// to the target. A source that cannot be resolved is an error before
// anything is written.
//
// [CreateArchive] builds the same index and writes it, with every blob it
// needs, as an OCI image-layout tarball, the archive BuildKit's type=oci
// exporter writes (index.json names it as BuildKit does,
// [ArchiveOptions.Names]): it merges the archives several BuildKit nodes
// exported into one. The archive is written to a temporary file and renamed
// into place only when complete.
package manifest
