package debtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// root is the repository, relative to this package.
const root = "../.."

const pkg = "mabd"

// conffile is the package's only conffile.
const conffile = "/etc/mabd/mabd.toml"

// wantFiles are the regular files of the package and their permissions
// (dpkg-deb --contents notation); all belong to root/root.
var wantFiles = map[string]string{
	"/usr/bin/mabd":                      "-rwxr-xr-x",
	"/usr/lib/mabd/mabd-daemon":          "-rwxr-xr-x",
	"/usr/lib/mabd/mabd-build":           "-rwxr-xr-x",
	"/usr/lib/mabd/buildkitd":            "-rwxr-xr-x",
	"/usr/lib/mabd/buildctl":             "-rwxr-xr-x",
	"/lib/systemd/system/mabd.service":   "-rw-r--r--",
	"/lib/systemd/system/mabd.socket":    "-rw-r--r--",
	"/usr/lib/systemd/user/mabd.service": "-rw-r--r--",
	"/etc/mabd/mabd.toml":                "-rw-r--r--",
	"/usr/share/doc/mabd/README.Debian":  "-rw-r--r--",
}

// wantDepends is the Depends field of the package.
const wantDepends = "qemu-user-static | qemu-user, runc"

// TestDebVersion checks scripts/deb.sh's conversion of `git describe`
// outputs into Debian versions, and that these sort as releases should.
func TestDebVersion(t *testing.T) {
	needTools(t, "bash", "dpkg")
	for _, c := range []struct{ git, deb string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v1.2.3-dirty", "1.2.3+dirty"},
		{"v1.2.3-rc1", "1.2.3~rc1"},
		{"v1.2.3-4-gabc1234", "1.2.3+git4.gabc1234"},
		{"v1.2.3-4-gabc1234-dirty", "1.2.3+git4.gabc1234.dirty"},
		{"v1.2.3-rc1-2-gabcdef0-dirty", "1.2.3~rc1+git2.gabcdef0.dirty"},
		{"1d3085b", "0.0.0~git1d3085b"},
		{"1d3085b-dirty", "0.0.0~git1d3085b.dirty"},
		{"dev", "0.0.0~dev"},
	} {
		if got := debVersion(t, c.git); got != c.deb {
			t.Errorf("VERSION=%s: Debian version %q, want %q", c.git, got, c.deb)
		}
	}
	for _, bad := range []string{"has space", "v1.2_3", "-x"} {
		cmd := exec.Command("bash", "scripts/deb.sh", "--deb-version")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "VERSION="+bad)
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("VERSION=%q: accepted as %q", bad, out)
		}
	}
	// Each version sorts before the next.
	order := []string{"0.0.0~git1d3085b", "1.2.3~rc1", "1.2.3~rc1+git2.gabcdef0", "1.2.3", "1.2.3+dirty", "1.2.3+git4.gabc1234", "1.2.4"}
	for i := 1; i < len(order); i++ {
		if err := exec.Command("dpkg", "--compare-versions", order[i-1], "lt", order[i]).Run(); err != nil {
			t.Errorf("dpkg: %s is not older than %s", order[i-1], order[i])
		}
	}
}

// TestDebPackage builds the package with `make deb`, inspects it with
// dpkg-deb, installs it on this machine with dpkg -i, checks what is
// installed (mabd version, the configuration, systemd-analyze verify), and
// removes and purges it with dpkg. It refuses to run when mabd is installed
// in any form already, and always purges what it installed.
func TestDebPackage(t *testing.T) {
	needRoot(t)
	needTools(t, "make", "git", "bash", "dpkg", "dpkg-deb", "dpkg-query", "systemd-analyze")
	refuseExisting(t)
	t.Cleanup(func() { purge(t) })

	b := buildDeb(t)
	deb, version, debver := b.path, b.version, b.debver

	// --- The package file -------------------------------------------------
	fields := map[string]string{
		"Package":      pkg,
		"Version":      debver,
		"Architecture": runtime.GOARCH,
		"Depends":      wantDepends,
		"Recommends":   "uidmap",
		"Section":      "admin",
		"Priority":     "optional",
		"License":      "",
		"Maintainer":   "",
		"Description":  "",
		"Homepage":     "",
	}
	for name, want := range fields {
		got := strings.TrimSpace(mustRun(t, "", nil, "dpkg-deb", "--field", deb, name))
		switch name {
		case "Homepage":
			if got != "" {
				t.Errorf("Homepage: %q, want none", got)
			}
		case "License", "Description":
			if got == "" {
				t.Errorf("no %s field", name)
			}
		case "Maintainer":
			if !regexp.MustCompile(`^[^<>]+ <[^<>@\s]+@[^<>@\s]+>$`).MatchString(got) {
				t.Errorf("Maintainer: %q, want Name <address>", got)
			}
		default:
			if got != want {
				t.Errorf("%s: %q, want %q", name, got, want)
			}
		}
	}
	info := mustRun(t, "", nil, "dpkg-deb", "--info", deb)
	t.Logf("dpkg-deb --info:\n%s", info)
	for _, f := range []string{"control", "conffiles", "md5sums", "postinst", "prerm", "postrm"} {
		if !regexp.MustCompile(`(?m)^\s+\d+ bytes,\s+\d+ lines\s+\*?\s+` + f + `\b`).MatchString(info) {
			t.Errorf("dpkg-deb --info: no %s", f)
		}
	}
	if got := mustRun(t, "", nil, "dpkg-deb", "--info", deb, "conffiles"); got != conffile+"\n" {
		t.Errorf("conffiles: %q, want only %s", got, conffile)
	}
	// The maintainer scripts are those of packaging/deb, executable.
	control := t.TempDir()
	mustRun(t, "", nil, "dpkg-deb", "--control", deb, control)
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if !sameFile(t, filepath.Join(control, s), filepath.Join(root, "packaging", "deb", s)) {
			t.Errorf("%s differs from packaging/deb/%s", s, s)
		}
		if fi, err := os.Stat(filepath.Join(control, s)); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, mode %v, want 0755", s, err, fi.Mode())
		}
	}

	contents := mustRun(t, "", nil, "dpkg-deb", "--contents", deb)
	t.Logf("dpkg-deb --contents:\n%s", contents)
	files := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(contents), "\n") {
		// -rwxr-xr-x root/root  41755464 2026-11-27 08:45 ./usr/bin/mabd
		f := strings.Fields(line)
		if len(f) != 6 {
			t.Errorf("dpkg-deb --contents: unexpected line %q", line)
			continue
		}
		if f[1] != "root/root" {
			t.Errorf("%s: owner %s, want root/root", f[5], f[1])
		}
		p := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		switch f[0][0] {
		case '-':
			files[p] = f[0]
		case 'd':
			if f[0] != "drwxr-xr-x" {
				t.Errorf("%s: %s, want drwxr-xr-x", p, f[0])
			}
		default:
			t.Errorf("dpkg-deb --contents: %s is neither a file nor a directory", p)
		}
	}
	for p, mode := range wantFiles {
		if got, ok := files[p]; !ok {
			t.Errorf("the package has no %s", p)
		} else if got != mode {
			t.Errorf("%s: %s, want %s", p, got, mode)
		}
	}
	for p := range files {
		if _, ok := wantFiles[p]; !ok {
			t.Errorf("the package has an unexpected file %s", p)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// What the files say, from the package itself.
	x := t.TempDir()
	mustRun(t, "", nil, "dpkg-deb", "--extract", deb, x)
	service := readFile(t, filepath.Join(x, "lib/systemd/system/mabd.service"))
	orig := readFile(t, filepath.Join(root, "packaging/systemd/mabd.service"))
	if want := strings.Replace(orig, "\nExecStart=/usr/local/bin/mabd daemon\n", "\nExecStart=/usr/bin/mabd daemon\n", 1); want == orig || service != want {
		t.Errorf("the packaged mabd.service is not packaging/systemd/mabd.service with ExecStart=/usr/bin/mabd daemon:\n%s", service)
	}
	if !sameFile(t, filepath.Join(x, "lib/systemd/system/mabd.socket"), filepath.Join(root, "packaging/systemd/mabd.socket")) {
		t.Error("the packaged mabd.socket differs from packaging/systemd/mabd.socket")
	}
	config := readFile(t, filepath.Join(x, "etc/mabd/mabd.toml"))
	// [buildkit] binary = "/usr/lib/mabd/buildkitd", in that table.
	if i, j := strings.Index(config, "\n[buildkit]\n"), strings.Index(config, "\nbinary = \"/usr/lib/mabd/buildkitd\"\n"); i < 0 || j < i || strings.Contains(config[i+1:j], "\n[") {
		t.Errorf("the packaged mabd.toml does not set [buildkit] binary = \"/usr/lib/mabd/buildkitd\":\n%s", config)
	}
	bkVersion := buildkitVersion(t)

	// --- Installed --------------------------------------------------------
	out, err := dpkg(t, "-i", deb)
	t.Logf("dpkg -i:\n%s", out)
	if err != nil {
		t.Fatalf("dpkg -i %s: %v", deb, err)
	}
	if strings.Contains(strings.ToLower(out), "warning") {
		t.Errorf("dpkg -i warned:\n%s", out)
	}
	if !strings.Contains(out, "systemctl enable --now mabd.socket mabd.service") {
		t.Errorf("postinst did not say how to enable mabd:\n%s", out)
	}
	if st := status(t); st != "install ok installed "+debver {
		t.Fatalf("after dpkg -i: status %q, want installed %s", st, debver)
	}
	listed := strings.Split(strings.TrimSpace(mustRun(t, "", nil, "dpkg", "-L", pkg)), "\n")
	for p, mode := range wantFiles {
		if !slices.Contains(listed, p) {
			t.Errorf("dpkg -L %s does not list %s", pkg, p)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("installed: %v", err)
			continue
		}
		if fi.Mode().String() != mode {
			t.Errorf("installed %s: %s, want %s", p, fi.Mode(), mode)
		}
		if !sameFile(t, p, filepath.Join(x, p)) {
			t.Errorf("installed %s differs from the package's", p)
		}
	}
	if got := mustRun(t, "", nil, "/usr/bin/mabd", "version"); !strings.HasPrefix(got, "mabd "+version+" (") {
		t.Errorf("/usr/bin/mabd version: %q, want mabd %s (…)", got, version)
	} else {
		t.Logf("/usr/bin/mabd version: %s", strings.TrimSpace(got))
	}
	for _, b := range []string{"/usr/lib/mabd/buildkitd", "/usr/lib/mabd/buildctl"} {
		if got := mustRun(t, "", nil, b, "--version"); !strings.Contains(got, " "+bkVersion) {
			t.Errorf("%s --version: %q, want BuildKit %s", b, got, bkVersion)
		}
	}
	// The default configuration file, as the service reads it.
	// mabd runs /usr/lib/mabd/mabd-build for build, manifest and image.
	if got := mustRun(t, "", nil, "/usr/bin/mabd", "manifest", "--help"); !strings.Contains(got, "mabd manifest") {
		t.Errorf("/usr/bin/mabd manifest --help (mabd-build): %q", got)
	}
	if out, err := exec.Command("/usr/bin/mabd", "daemon", "--check-config").CombinedOutput(); err != nil {
		t.Errorf("mabd daemon --check-config (%s): %v\n%s", conffile, err, out)
	}
	// verify insists that ExecStart's binary exists: /usr/bin/mabd does.
	// Any output is a failure: verify warns about bad settings yet exits 0.
	va := exec.Command("systemd-analyze", "verify", "--man=no", "/lib/systemd/system/mabd.service", "/lib/systemd/system/mabd.socket")
	va.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_COLORS=0")
	if out, err := va.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify the installed units: %v\n%s", err, out)
	}
	// Installing enables nothing.
	if links := enablementLinks(t); len(links) > 0 {
		t.Errorf("the package enabled mabd: %v", links)
	}

	// Again over itself: prerm upgrade, postinst configure <version>.
	if out, err := dpkg(t, "-i", deb); err != nil {
		t.Fatalf("dpkg -i %s a second time: %v\n%s", deb, err, out)
	}
	if st := status(t); st != "install ok installed "+debver {
		t.Fatalf("after the second dpkg -i: status %q", st)
	}

	// --- Removed: everything but the (locally changed) conffile ----------
	const local = "\n# changed by TestDebPackage\n"
	appendFile(t, conffile, local)
	if out, err := dpkg(t, "-r", pkg); err != nil {
		t.Fatalf("dpkg -r %s: %v\n%s", pkg, err, out)
	} else {
		t.Logf("dpkg -r:\n%s", out)
	}
	if st := status(t); !strings.HasPrefix(st, "deinstall ok config-files ") {
		t.Errorf("after dpkg -r: status %q, want deinstall ok config-files", st)
	}
	for p := range wantFiles {
		_, err := os.Lstat(p)
		switch {
		case p == conffile && err != nil:
			t.Errorf("dpkg -r removed the conffile: %v", err)
		case p != conffile && !errors.Is(err, os.ErrNotExist):
			t.Errorf("dpkg -r left %s (%v)", p, err)
		}
	}
	for _, d := range []string{"/usr/lib/mabd", "/usr/share/doc/mabd"} {
		if _, err := os.Lstat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dpkg -r left %s (%v)", d, err)
		}
	}
	if got := readFile(t, conffile); !strings.HasSuffix(got, local) {
		t.Errorf("dpkg -r did not keep the change to %s", conffile)
	}

	// --- Purged: nothing left ----------------------------------------------
	if out, err := dpkg(t, "-P", pkg); err != nil {
		t.Fatalf("dpkg -P %s: %v\n%s", pkg, err, out)
	}
	for _, p := range []string{conffile, "/etc/mabd"} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dpkg -P left %s (%v)", p, err)
		}
	}
	out2, err := exec.Command("dpkg", "-s", pkg).CombinedOutput()
	if err == nil || !strings.Contains(string(out2), "is not installed") {
		t.Errorf("dpkg -s %s after dpkg -P: %v\n%s", pkg, err, out2)
	}
}

// TestMaintainerScripts runs packaging/deb's postinst, prerm and postrm
// with each argument dpkg passes them, with and without systemd, in a
// private mount namespace: /run (where the scripts look for
// /run/systemd/system) and /etc/systemd/system are private tmpfs there, and
// systemctl is a stub that logs its arguments. Nothing of the host changes.
func TestMaintainerScripts(t *testing.T) {
	needRoot(t)
	needTools(t, "unshare", "mount", "sh")
	if _, err := os.Stat("/etc/systemd/system"); err != nil {
		t.Skipf("no /etc/systemd/system to mount over: %v", err)
	}
	_, err := os.Stat("/run/systemd/system")
	hostSystemd := err == nil
	scripts, err := filepath.Abs(filepath.Join(root, "packaging", "deb"))
	if err != nil {
		t.Fatal(err)
	}
	// Symlinks `systemctl enable` makes, and files of others that stay.
	const setupLinks = `
mkdir -p /etc/systemd/system/multi-user.target.wants /etc/systemd/system/sockets.target.wants /etc/systemd/system/mabd.service.d
ln -s /lib/systemd/system/mabd.service /etc/systemd/system/multi-user.target.wants/mabd.service
ln -s /lib/systemd/system/mabd.socket /etc/systemd/system/sockets.target.wants/mabd.socket
ln -s /lib/systemd/system/ssh.service /etc/systemd/system/multi-user.target.wants/ssh.service
echo '[Service]' >/etc/systemd/system/mabd.service.d/override.conf
`
	const linksAfterPurge = "mabd.service.d\nmabd.service.d/override.conf\nmulti-user.target.wants\nmulti-user.target.wants/ssh.service\nsockets.target.wants\n"
	const linksKept = "mabd.service.d\nmabd.service.d/override.conf\nmulti-user.target.wants\nmulti-user.target.wants/mabd.service\nmulti-user.target.wants/ssh.service\nsockets.target.wants\nsockets.target.wants/mabd.socket\n"
	for _, c := range []struct {
		name    string
		systemd bool
		setup   string
		runs    [][]string // script and arguments, run in order
		calls   string     // systemctl's arguments, a line per call
		files   string     // what is left in /etc/systemd/system
		stderr  string     // a part of the scripts' standard error
		fail    bool       // the (last) script exits non-zero
	}{
		{name: "install", systemd: true, runs: [][]string{{"postinst", "configure", ""}},
			calls: "daemon-reload\n", stderr: "systemctl enable --now mabd.socket mabd.service"},
		{name: "install twice", systemd: true, runs: [][]string{{"postinst", "configure", ""}, {"postinst", "configure", ""}},
			calls: "daemon-reload\ndaemon-reload\n"},
		{name: "upgrade", systemd: true, setup: setupLinks,
			runs:  [][]string{{"prerm", "upgrade", "2.0"}, {"postrm", "upgrade", "2.0"}, {"postinst", "configure", "1.0"}},
			calls: "daemon-reload\ntry-restart mabd.service\n", files: linksKept},
		{name: "install without systemd", runs: [][]string{{"postinst", "configure", ""}}, stderr: "systemctl enable"},
		{name: "upgrade without systemd", runs: [][]string{{"prerm", "upgrade", "2.0"}, {"postinst", "configure", "1.0"}}},
		{name: "abort-upgrade", systemd: true, runs: [][]string{{"postinst", "abort-upgrade", "2.0"}}},
		{name: "remove", systemd: true, setup: setupLinks, runs: [][]string{{"prerm", "remove"}, {"postrm", "remove"}},
			calls: "stop mabd.socket mabd.service\ndaemon-reload\n", files: linksKept},
		{name: "remove twice", systemd: true, runs: [][]string{{"prerm", "remove"}, {"postrm", "remove"}, {"prerm", "remove"}, {"postrm", "remove"}},
			calls: "stop mabd.socket mabd.service\ndaemon-reload\nstop mabd.socket mabd.service\ndaemon-reload\n"},
		{name: "remove without systemd", setup: setupLinks, runs: [][]string{{"prerm", "remove"}, {"postrm", "remove"}}, files: linksKept},
		{name: "purge", systemd: true, setup: setupLinks, runs: [][]string{{"postrm", "purge"}},
			calls: "daemon-reload\n", files: linksAfterPurge},
		{name: "purge twice", systemd: true, setup: setupLinks, runs: [][]string{{"postrm", "purge"}, {"postrm", "purge"}},
			calls: "daemon-reload\ndaemon-reload\n", files: linksAfterPurge},
		{name: "purge without systemd", setup: setupLinks, runs: [][]string{{"postrm", "purge"}}, files: linksAfterPurge},
		{name: "postinst bogus", systemd: true, runs: [][]string{{"postinst", "bogus"}}, fail: true, stderr: "unknown argument"},
		{name: "prerm bogus", systemd: true, runs: [][]string{{"prerm", "bogus"}}, fail: true, stderr: "unknown argument"},
		{name: "postrm bogus", systemd: true, runs: [][]string{{"postrm", "bogus"}}, fail: true, stderr: "unknown argument"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			log := filepath.Join(dir, "systemctl.log")
			stub := filepath.Join(dir, "bin")
			if err := os.Mkdir(stub, 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(stub, "systemctl"), "#!/bin/sh\necho \"$*\" >>'"+log+"'\n", 0o755)
			writeFile(t, log, "", 0o644)
			var sh strings.Builder
			sh.WriteString("set -e\nmount -t tmpfs mabd-test /run\nmount -t tmpfs mabd-test /etc/systemd/system\n")
			if c.systemd {
				sh.WriteString("mkdir -p /run/systemd/system\n")
			}
			sh.WriteString(c.setup)
			sh.WriteString("export PATH='" + stub + "':/usr/sbin:/usr/bin:/sbin:/bin\nset +e\nrc=0\n")
			for _, r := range c.runs {
				sh.WriteString("sh '" + filepath.Join(scripts, r[0]) + "'")
				for _, a := range r[1:] {
					sh.WriteString(" '" + a + "'")
				}
				sh.WriteString("; rc=$?; [ $rc = 0 ] || echo \"exit $rc\" >&2\n")
			}
			sh.WriteString("(cd /etc/systemd/system && find . -mindepth 1 | sed 's|^\\./||' | sort) >'" + filepath.Join(dir, "files") + "'\nexit $rc\n")
			cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", sh.String())
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if c.fail != (err != nil) {
				t.Errorf("exit: %v, want failure %v; stderr:\n%s", err, c.fail, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.stderr) {
				t.Errorf("stderr does not contain %q:\n%s", c.stderr, stderr.String())
			}
			if got := readFile(t, log); got != c.calls {
				t.Errorf("systemctl calls:\n%s\nwant:\n%s", got, c.calls)
			}
			if got := readFile(t, filepath.Join(dir, "files")); got != c.files {
				t.Errorf("/etc/systemd/system afterwards:\n%s\nwant:\n%s", got, c.files)
			}
		})
	}
	// The host's /run is as it was: the mounts were private.
	if _, err := os.Stat("/run/systemd/system"); (err == nil) != hostSystemd {
		t.Errorf("/run/systemd/system changed on the host: %v", err)
	}
}

// builtDeb is a package `make deb` built for this test run.
type builtDeb struct {
	path    string // dist/mabd_<debver>_<arch>.deb, relative to this package
	version string // mabd's version (git describe)
	debver  string // the package's version
}

var (
	debMu   sync.Mutex
	debDone *builtDeb
)

// buildDeb builds the package with `make deb` once per test run: the
// first test that needs it builds it, later ones reuse it. The version is
// fixed before the build, so that a commit made while `make deb` runs
// cannot change it half-way.
func buildDeb(t *testing.T) builtDeb {
	t.Helper()
	debMu.Lock()
	defer debMu.Unlock()
	if debDone != nil {
		if _, err := os.Stat(debDone.path); err == nil {
			t.Logf("reusing %s, built by an earlier test of this run", debDone.path)
			return *debDone
		}
	}
	needTools(t, "make", "git", "bash")
	version := strings.TrimSpace(mustRun(t, root, nil, "git", "describe", "--tags", "--always", "--dirty"))
	debver := debVersion(t, version)
	deb := filepath.Join(root, "dist", fmt.Sprintf("%s_%s_%s.deb", pkg, debver, runtime.GOARCH))
	t.Logf("mabd %s → Debian version %s", version, debver)

	// The first run also compiles nfpm.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "make", "deb", "VERSION="+version)
	cmd.Dir = root
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool {
		return strings.HasPrefix(e, "MAKEFLAGS=") || strings.HasPrefix(e, "MFLAGS=") || strings.HasPrefix(e, "MAKELEVEL=")
	})
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("make deb: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if last := lines[len(lines)-1]; filepath.Join(root, last) != deb {
		t.Fatalf("make deb: printed %q last, want %s\n%s%s", last, deb, stdout.String(), stderr.String())
	}
	fi, err := os.Stat(deb)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("make deb: %s, %.1f MB, in %s", deb, float64(fi.Size())/1e6, time.Since(start).Round(time.Second))
	debDone = &builtDeb{path: deb, version: version, debver: debver}
	return *debDone
}

// debVersion runs `scripts/deb.sh --deb-version` for a `git describe`
// output.
func debVersion(t *testing.T, gitVersion string) string {
	t.Helper()
	return strings.TrimSpace(mustRun(t, root, []string{"VERSION=" + gitVersion}, "bash", "scripts/deb.sh", "--deb-version"))
}

// buildkitVersion is the BuildKit version go.mod requires.
func buildkitVersion(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "github.com/moby/buildkit" {
			return f[1]
		}
	}
	t.Fatal("go.mod does not require github.com/moby/buildkit")
	return ""
}

// refuseExisting fails the test when mabd is installed in any form: as a
// package (also "config-files" only) or by `make install` into the paths
// the package would own. dpkg would overwrite such files, and the purge at
// the end would delete them.
func refuseExisting(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Status} ${Version}", pkg).CombinedOutput(); err == nil {
		t.Fatalf("package %s is known to dpkg already (%s). This test installs and purges %s and will not clobber it: remove it first (dpkg -P %s) or run the test on another machine",
			pkg, strings.TrimSpace(string(out)), pkg, pkg)
	}
	paths := []string{"/usr/lib/mabd", "/usr/share/doc/mabd", "/etc/mabd"}
	for p := range wantFiles {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists although package %s is not installed (from `make install`?). This test installs and purges %s, which would overwrite and delete it: move it away first", p, pkg, pkg)
		}
	}
}

// purge removes the package if dpkg knows it, and checks that its files
// are gone: the test's cleanup, whatever happened before.
func purge(t *testing.T) {
	if exec.Command("dpkg-query", "-W", pkg).Run() == nil {
		if out, err := dpkg(t, "-P", pkg); err != nil {
			t.Errorf("cleanup: dpkg -P %s: %v\n%s", pkg, err, out)
		}
	}
	for p := range wantFiles {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cleanup: %s is still there (%v)", p, err)
		}
	}
}

// status is "<Status> <Version>" of the package as dpkg-query reports it,
// or "" when dpkg does not know it.
func status(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Status} ${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// dpkg runs dpkg non-interactively, waiting up to two minutes while
// another process (apt, unattended-upgrades) holds its lock.
func dpkg(t *testing.T, args ...string) (string, error) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cmd := exec.Command("dpkg", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdin = nil // /dev/null: a question would fail, not hang
		out, err := cmd.CombinedOutput()
		if err != nil && strings.Contains(string(out), "locked by another process") && time.Now().Before(deadline) {
			t.Logf("dpkg %s: locked, retrying: %s", strings.Join(args, " "), bytes.TrimSpace(out))
			time.Sleep(3 * time.Second)
			continue
		}
		return string(out), err
	}
}

// enablementLinks lists the symlinks to mabd's units below
// /etc/systemd/system.
func enablementLinks(t *testing.T) []string {
	t.Helper()
	var links []string
	for _, pattern := range []string{"/etc/systemd/system/*/mabd.*", "/etc/systemd/system/mabd.*"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range m {
			if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
				links = append(links, p)
			}
		}
	}
	return links
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: it runs dpkg and mounts in a private mount namespace")
	}
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: %v", tool, err)
		}
	}
}

// mustRun runs a command in dir with env added and returns its standard
// output; it fails the test on an error.
func mustRun(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, p, s string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), mode); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, p, s string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// sameFile says whether two files have the same contents.
func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	return fileHash(t, a) == fileHash(t, b)
}

func fileHash(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// needTool returns the path of a program the test needs, and fails the
// test with the package to install when it is missing.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is needed: %v; install the %s package", name, err, pkg)
	}
	return p
}
