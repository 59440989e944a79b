// Package builder runs BuildKit for mabd and drives it for multi-platform
// builds.
//
// # The daemon
//
// A [Supervisor] runs buildkitd (BuildKit's daemon, built from the version
// go.mod pins) as a child process. [Supervisor.Start] writes buildkitd.toml
// into [Options.Root]:
//
//   - the OCI worker only (runc; the containerd worker is disabled), with the
//     overlayfs snapshotter when overlayfs works on Root's file system
//     (checked with a real mount, as containerd does) and the native one
//     otherwise;
//   - the worker's platforms: [Options.Platforms], or, when empty, what
//     BuildKit detects from the host's binfmt_misc handlers;
//   - garbage collection that keeps [Options.KeepStorage] bytes of build
//     cache (default: 10% of Root's file system, at most 20 GB);
//   - gRPC on a unix socket, plus TCP with mutual TLS when asked.
//
// It then starts buildkitd, waits until its ListWorkers call answers, and
// gives the socket its mode and group. From then on it supervises: when
// buildkitd exits, it is restarted with exponential backoff (250ms doubling
// to 10s, back to 250ms once a process stayed up 30s), and [Status] counts
// the restarts and says why the last one exited. [Supervisor.SetPlatforms]
// changes the platforms and restarts buildkitd once no build is running;
// [Supervisor.Stop] stops it (SIGTERM, then SIGKILL), removes the socket and
// unmounts whatever buildkitd left mounted under Root.
//
// BuildKit's OCI worker runs RUN steps with runc in the host's user
// namespace, so a foreign platform's steps run through the host's
// binfmt_misc handlers: the platforms given to the supervisor need their
// emulators registered there (`mabd install`), with the F flag so that
// they work inside the build containers.
//
// # Builds
//
// [Build] is `mabd build`: it sends a Dockerfile build for several
// platforms to buildkitd as one solve with BuildKit's built-in Dockerfile
// frontend, shows BuildKit's own progress display, exports the result (to a
// registry, an OCI tarball or a local directory; [ParseOutput] reads the
// output specs) and returns the image digest. choosePlatforms decides the
// platforms: those asked for, or every platform the worker reports, one per
// architecture. Platforms the worker does not support are refused before
// the build starts with an [UnsupportedPlatformError] that says, from the
// binfmt_misc table, why each is missing; the caller words the fix (`mabd
// build` names the `mabd install` that registers the emulator).
//
// Errors are typed and carry the facts ([UsageError], [DaemonError],
// [UnsupportedPlatformError], [BuildError], [BinaryError]); they name no
// command-line flag and no fix: the CLI and the daemon word those for
// their own users.
package builder
