// Package host is what `mabd install`, `uninstall`, `status` and `verify`
// do to a binfmt_misc instance and its emulators, without any daemon: plan
// the handlers a request asks for (checking every input before anything
// changes), apply them, remove them, report their health and prove that
// foreign programs run. The daemon runs the same operations in its loop.
//
// # Whose entry is it?
//
// mabd names its handlers qemu-<arch>, as QEMU, Debian and other tools do,
// so the name may already hold another tool's entry. [Host.Judge] decides
// what such an entry is worth: it serves its architecture when it takes
// every program of it and no other's ([binfmt.Spec.Covers]), is enabled,
// has the F flag with a static, root-owned emulator that exists, and its
// last verification (if one was made through it) passed. A serving entry is
// as good as mabd's own and is left alone; a defective one is a conflict,
// replaced only when asked ([PolicyRepair], [PolicyReplace]).
//
// # Which emulator?
//
// Every qemu-<arch>-static and qemu-<arch> in the emulator directories is
// a candidate for its architecture (emulator.FindAllCandidates). [Host.Plan]
// registers a pinned one, or the only one, or proves several first:
// [TryCandidates] registers each alone in a private binfmt_misc instance
// of its own (package mabd/internal/userns; the binary re-executes itself
// there, see [MaybeRunTrial]) and runs the probe, the workload probe and
// the bench workload; [Choose], a pure function, takes one that passed,
// the fastest, and says why. Trials are remembered in the state directory
// by file identity, so a second plan tries nothing.
//
// # Health
//
// [Host.Status] reads the instance, the emulators and the last
// [Verification]. A verification result counts only while the entry it
// probed is still the one registered (VerifyResult.Handler); a platform
// whose current result failed is not supported and makes the host
// degraded.
package host
