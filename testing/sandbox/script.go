package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"mabd/internal/userns"
)

// EnvMount is the environment variable through which [Script] and [Command]
// tell the program where the private binfmt_misc instance is mounted.
// Scripts also get the same path as $BINFMT.
const EnvMount = "MABD_BINFMT_MOUNT"

// scriptSpec is the namespaces of [Script] and [Command]. Their wrapper
// sets up the instance itself rather than through userns.Start: as PID 1
// it creates the mount point and removes it once the program has exited,
// which it can because the instance is mounted in a nested mount
// namespace only.
var scriptSpec = userns.Spec{PID: true}

// Placeholder is replaced, wherever it occurs in an argument of [Command],
// with the mount point of the private binfmt_misc instance.
const Placeholder = "{{binfmt}}"

// wrapper is the shell script that the sandbox's first process (PID 1 of a
// new user, mount and PID namespace) runs:
//
//	sh -c wrapper mabd-sandbox DIR USERNS UNSHARE MOUNT MKDIR RMDIR READLINK PROGRAM [ARG...]
//
// It refuses to go on unless it is in a user namespace other than USERNS
// (the one of the process that built the command) and other than the
// initial one (whose uid_map is "0 0 4294967295"), creates DIR, runs
// PROGRAM in a nested mount namespace in which a fresh /proc (best effort)
// and a private binfmt_misc instance on DIR are mounted, and removes DIR
// when PROGRAM has exited. DIR is a mount point only in the nested mount
// namespace, so it can be removed from the outer one; nothing is ever
// unmounted. When PID 1 exits, the kernel kills whatever is left in the
// sandbox.
const wrapper = `
d=$1 hostns=$2 unshare=$3 mount=$4 mkdir=$5 rmdir=$6 readlink=$7
shift 7
ns=$("$readlink" /proc/self/ns/user)
case $ns in
"user:["*"]") ;;
*) echo "mabd sandbox: cannot read /proc/self/ns/user; refusing to mount binfmt_misc" >&2; exit 125 ;;
esac
if [ "$ns" = "$hostns" ]; then
	echo "mabd sandbox: not in a new user namespace ($ns); refusing to mount binfmt_misc" >&2
	exit 125
fi
read -r inside outside count < /proc/self/uid_map
if [ "$inside $outside $count" = "0 0 4294967295" ]; then
	echo "mabd sandbox: in the initial user namespace; refusing to mount binfmt_misc" >&2
	exit 125
fi
"$mkdir" -m 0700 -- "$d" || exit 125
"$unshare" --mount --propagation private -- /bin/sh -c '
	d=$1 mount=$2
	shift 2
	"$mount" -t proc -o nosuid,nodev,noexec proc /proc 2>/dev/null
	"$mount" -t binfmt_misc -o nosuid,nodev,noexec binfmt_misc "$d" || exit 125
	for f in "$d"/*; do
		case ${f##*/} in
		register|status) ;;
		*) echo "mabd sandbox: binfmt_misc instance on $d is not empty ($f); refusing to go on" >&2; exit 125 ;;
		esac
	done
	BINFMT=$d
	MABD_BINFMT_MOUNT=$d
	export BINFMT MABD_BINFMT_MOUNT
	exec "$@"
' mabd-sandbox "$d" "$mount" "$@"
rc=$?
"$rmdir" -- "$d" || echo "mabd sandbox: could not remove $d" >&2
exit $rc
`

// Script returns a command that runs `/bin/sh -c script` in a sandbox: a new
// user namespace (the caller's uid and gid mapped to root), mount namespace
// and PID namespace, with a private, initially empty binfmt_misc instance
// mounted on a new directory whose path is in $BINFMT (and in
// $MABD_BINFMT_MOUNT). Everything the script runs shares that one instance,
// so a script can register entries and then run programs that use them.
// Registrations never reach the host, and the instance, the mount and every
// process of the sandbox are gone when the script exits (processes it left
// running are killed); the directory is removed then too.
//
// /proc inside the sandbox is remounted for the new PID namespace when the
// kernel allows it (it does not in some containers; then /proc shows the
// caller's PIDs). The command's Path, Args and SysProcAttr belong to the
// sandbox: change Env, Dir, Stdin, Stdout, Stderr, WaitDelay and the like,
// but not those. Cancelling ctx kills the sandbox (SIGKILL to its PID 1,
// which kills everything in it) and removes the directory; a replacement
// cmd.Cancel should do the same. Other signals sent to cmd.Process are
// ignored by the sandbox's PID 1. If the process that called Script dies,
// the sandbox is killed too (Pdeathsig, bound to the thread that calls
// Start), and the empty directory is left behind.
//
// If private binfmt_misc instances are not available (see [Available]), the
// returned command's Err is set, so Start, Run and Output fail with the
// reason.
func Script(ctx context.Context, script string) *exec.Cmd {
	return sandboxed(ctx, []string{"/bin/sh", "-c", script}, false)
}

// Command is like [Script] but runs the program name with args directly in
// the sandbox. Every occurrence of [Placeholder] ("{{binfmt}}") in args is
// replaced with the mount point of the private binfmt_misc instance, which
// the program also finds in $MABD_BINFMT_MOUNT (and $BINFMT). name is looked
// up in $PATH inside the sandbox, as the shell does.
func Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return sandboxed(ctx, append([]string{name}, args...), true)
}

// sandboxed builds the command that runs argv in a new sandbox; subst says
// whether to replace Placeholder in argv[1:].
func sandboxed(ctx context.Context, argv []string, subst bool) *exec.Cmd {
	cmd, err := sandboxCmd(ctx, argv, subst, true)
	if err != nil {
		cmd = exec.CommandContext(ctx, "/bin/sh", "-c", "exit 125")
		cmd.Err = err
	}
	return cmd
}

// sandboxCmd builds the command that runs argv in a new sandbox; check says
// whether to call Available first (the probe in Available itself does not).
func sandboxCmd(ctx context.Context, argv []string, subst, check bool) (*exec.Cmd, error) {
	if check {
		if err := Available(); err != nil {
			return nil, fmt.Errorf("sandbox: private binfmt_misc instances are not available: %w", err)
		}
	}
	tools, err := findTools()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	userNS, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	dir := filepath.Join(os.TempDir(), "mabd-binfmt-"+hex.EncodeToString(rnd[:]))

	args := []string{"-c", wrapper, "mabd-sandbox", dir, userNS,
		tools.unshare, tools.mount, tools.mkdir, tools.rmdir, tools.readlink}
	args = append(args, argv[0])
	for _, a := range argv[1:] {
		if subst {
			a = strings.ReplaceAll(a, Placeholder, dir)
		}
		args = append(args, a)
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", args...)
	cmd.SysProcAttr = userns.SysProcAttr(scriptSpec)
	cmd.Cancel = func() error {
		// SIGKILL to PID 1 kills the whole sandbox, so the wrapper cannot
		// remove the mount point: remove it here, once PID 1 is dead. The
		// kernel has then killed every other process of the sandbox and
		// dropped its mount namespaces, so nothing is mounted on dir.
		err := cmd.Process.Kill()
		if err == nil {
			waitDead(cmd.Process.Pid, 10*time.Second)
		}
		os.Remove(dir)
		return err
	}
	return cmd, nil
}

// waitDead waits until the process pid is a zombie or gone, at most for
// max. PID 1 of a PID namespace becomes a zombie only after all other
// processes of the namespace have exited.
func waitDead(pid int, max time.Duration) {
	stat := "/proc/" + strconv.Itoa(pid) + "/stat"
	for deadline := time.Now().Add(max); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		b, err := os.ReadFile(stat)
		if err != nil {
			return // reaped
		}
		// The state follows the command name, which is in parentheses.
		if i := bytes.LastIndexByte(b, ')'); i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X' {
			return
		}
	}
}
