// Package userns starts a process in a new user and mount namespace that
// holds a private binfmt_misc instance of its own, with the handlers the
// caller asks for registered in it, and nowhere else.
//
// It is what `mabd exec` runs a foreign program in, what the tests'
// sandbox (testing/sandbox) runs its bodies in, and what an isolated
// buildkitd can run in: a process whose foreign programs are run by the
// handlers it was given, whatever the host's table holds.
//
// # Why it is safe
//
// Since Linux 6.7 binfmt_misc is per user namespace: binfmt_misc mounted by
// a process of a new user namespace is a new, empty instance, whose
// handlers apply to the processes of that namespace and its descendants
// only (the kernel uses the nearest ancestor namespace that mounted one).
// The host's table is neither read nor changed. The package keeps to three
// rules:
//
//   - It never unmounts anything. Since Linux 6.7 unmounting the last mount
//     of an instance destroys its entries, so unmounting the host's
//     binfmt_misc would empty the host's table. The private instance ends
//     with the namespace's last process, when the kernel drops the mount
//     namespace.
//   - It mounts only inside the new mount namespace, after making every
//     mount there private (mount --make-rprivate /), so nothing propagates
//     to the host. The instance is mounted over /proc/sys/fs/binfmt_misc
//     (where programs look for it) in that namespace only: the host's mount
//     there is hidden from the namespace, never changed, and nothing is
//     created on the host that could be left behind.
//   - It never mounts over a directory that holds anything on the host:
//     [Spec.Mount] is either /proc/sys/fs/binfmt_misc or an empty directory.
//
// Before it mounts, the new process checks that its user and mount
// namespaces are not the caller's and that its user namespace is not the
// initial one; after mounting, that the mount is a binfmt_misc instance
// holding nothing but "register" and "status". It refuses to go on
// otherwise.
//
// # How it works
//
// A multithreaded Go process cannot move itself into a new user namespace,
// so [Start] re-executes the running binary (/proc/self/exe) in new
// namespaces (CLONE_NEWUSER|CLONE_NEWNS, and CLONE_NEWPID with
// [Spec.PID]), with the id maps of the [Spec] and SIGKILL as its
// parent-death signal, so that it dies with the caller. That binary must
// call [MaybeRunChild] first thing (an init function of the main package,
// or of a test file): in the re-executed process it makes the mounts
// private, mounts and checks the instance, registers the handlers and
// then executes the program (or, when the program is the binary itself,
// returns and lets it run). A pipe tells the caller that the program runs,
// or why it does not: [Start] returns only then, with typed errors
// ([*KernelTooOldError], [*UnavailableError], [*StartError]).
//
// The package words what is wrong, not how a user of a particular command
// fixes it: callers add that (the sysctl to set, the command to run as
// root), from the fields of the errors.
package userns
