package debtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mabd/testing/sandbox"
)

// TestSystemd installs the package into a throwaway Debian system that the
// host's real systemd boots as its PID 1 (see bootContainer: new user,
// pid, mount, uts, ipc, net and cgroup namespaces over an overlay of /,
// with a private binfmt_misc instance), and checks the units end to end
// under it, on a stock Debian configuration: systemd-binfmt has registered
// Debian's own qemu-* entries (qemu-user-static's /usr/lib/binfmt.d) when
// mabd starts.
//
//   - install: dpkg -i; postinst reloads systemd, enables and starts
//     nothing;
//   - readiness: `systemctl enable --now` returns once mabd sent READY=1;
//     the service is active (running), systemd shows mabd's STATUS= line,
//     `mabd status` exits 0 and GET /healthz answers 200;
//   - reload: `systemctl reload mabd` keeps the same process, which logs
//     the reload;
//   - kill -9 of the main process: systemd restarts mabd;
//   - watchdog: with a drop-in WatchdogSec=3s mabd keeps the watchdog fed,
//     and once SIGSTOPped systemd reports "Failed with result 'watchdog'"
//     and restarts it;
//   - socket activation: with mabd.service stopped and mabd.socket
//     listening, a request to the socket starts mabd and gets its answer;
//   - repair: after `systemctl restart systemd-binfmt` (which flushes every
//     entry and registers Debian's again) mabd restores its handlers and is
//     healthy again;
//   - stop: mabd stops cleanly, and the system powers off.
//
// It changes nothing on the host: the host's binfmt_misc table, its mounts
// and dpkg's database are as before, and no process, mount or cgroup is
// left (bootContainer's cleanup checks).
func TestSystemd(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("TestSystemd needs root: it mounts an overlay of / and boots systemd in new namespaces (run make test as root)")
	}
	sandbox.Require(t) // Linux ≥ 6.7: binfmt_misc per user namespace
	for _, tool := range []struct{ name, pkg string }{
		{"dpkg", "dpkg"}, {"timeout", "coreutils"}, {"curl", "curl"}, {"systemctl", "systemd"}, {"journalctl", "systemd"},
	} {
		needTool(t, tool.name, tool.pkg)
	}
	debianEntries, _ := filepath.Glob("/usr/lib/binfmt.d/qemu-*.conf")
	if len(debianEntries) == 0 {
		t.Fatal("no /usr/lib/binfmt.d/qemu-*.conf: install qemu-user-static (make deps), whose entries are the stock configuration this test runs on")
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Status} ${Version}", pkg).CombinedOutput(); err == nil {
		t.Fatalf("package %s is known to this host's dpkg (%s): the container, a copy of this system, would start with it; remove it first (dpkg -P %s)", pkg, out, pkg)
	}
	hostDeb := buildDeb(t).path

	// The container is a copy of this host: what `make install` or an
	// earlier run put there would not be a fresh installation.
	var remove []string
	globs := []string{"/usr/lib/mabd", "/usr/share/doc/mabd", "/etc/mabd", "/var/lib/mabd", "/usr/local/bin/mabd",
		"/etc/systemd/system/mabd.*", "/etc/systemd/system/*/mabd.*"}
	for p := range wantFiles {
		globs = append(globs, p)
	}
	for _, g := range globs {
		m, _ := filepath.Glob(g)
		remove = append(remove, m...)
	}
	// Handlers that `mabd install --persist` (or persist = true) made
	// systemd-binfmt register at boot: not Debian's stock configuration.
	confs, _ := filepath.Glob("/etc/binfmt.d/*.conf")
	for _, p := range confs {
		if b, err := os.ReadFile(p); err == nil && strings.HasPrefix(string(b), "# Written by mabd") {
			remove = append(remove, p)
		}
	}
	slices.Sort(remove)
	if len(remove) > 0 {
		t.Logf("left out of the container (mabd's files on this host): %s", strings.Join(remove, " "))
	}
	// Masked: the two mounts fail in a user namespace (debugfs and tracefs
	// cannot be mounted there), and the container's /dev/console is
	// /dev/null, on which agetty fails.
	c := bootContainer(t, remove, []string{"sys-kernel-debug.mount", "sys-kernel-tracing.mount", "console-getty.service"})

	// --- The stock configuration: Debian's entries -------------------
	if got := c.show("systemd-binfmt.service", "ActiveState", "Result"); got["ActiveState"] != "active" || got["Result"] != "success" {
		t.Fatalf("systemd-binfmt.service: %v, want active, success%s", got, c.diagnose())
	}
	table := c.binfmtNames()
	var debian []string
	for _, f := range debianEntries {
		name := strings.TrimSuffix(filepath.Base(f), ".conf")
		e := c.readFile("/proc/sys/fs/binfmt_misc/" + name)
		if !strings.Contains(e, "interpreter /usr/libexec/qemu-binfmt/") || !regexp.MustCompile(`(?m)^flags: .*F`).MatchString(e) {
			t.Fatalf("after boot, the container's %s is not Debian's entry:\n%s", name, e)
		}
		debian = append(debian, name)
	}
	t.Logf("stock configuration: systemd-binfmt registered %d entries, %d of them Debian's qemu-* (POF, /usr/libexec/qemu-binfmt/<arch>-binfmt-P): %s",
		len(table), len(debian), strings.Join(table, " "))

	// --- Install --------------------------------------------------------
	// A copy inside the container: the host's file may be replaced by
	// another `make deb` meanwhile, or be on a file system that the
	// overlay of / does not show.
	f, err := os.Open(hostDeb)
	if err != nil {
		t.Fatal(err)
	}
	deb := "/tmp/" + filepath.Base(hostDeb)
	if out, err := c.runInput(time.Minute, f, "sh", "-c", `cat >"$0"`, deb); err != nil {
		t.Fatalf("copy %s into the container: %v\n%s", hostDeb, err, out)
	}
	f.Close()
	start := time.Now()
	out := c.must(2*time.Minute, "dpkg", "-i", deb)
	t.Logf("dpkg -i (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
	if !strings.Contains(out, "systemctl enable --now mabd.socket mabd.service") {
		t.Errorf("postinst did not say how to enable mabd:\n%s", out)
	}
	if got := c.show("mabd.service", "LoadState", "FragmentPath", "UnitFileState", "ActiveState", "NeedDaemonReload"); got["LoadState"] != "loaded" ||
		got["FragmentPath"] != "/lib/systemd/system/mabd.service" || got["UnitFileState"] != "disabled" || got["ActiveState"] != "inactive" || got["NeedDaemonReload"] != "no" {
		t.Errorf("after dpkg -i: mabd.service %v, want loaded from /lib/systemd/system/mabd.service (postinst reloaded systemd), disabled, inactive", got)
	}

	// --- Readiness ------------------------------------------------------
	cur := c.cursor()
	start = time.Now()
	c.must(3*time.Minute, "systemctl", "enable", "--now", "mabd.socket", "mabd.service")
	t.Logf("systemctl enable --now mabd.socket mabd.service: returned after %s", time.Since(start).Round(time.Millisecond))
	st := c.show("mabd.service", "ActiveState", "SubState", "MainPID", "StatusText", "UnitFileState", "Type",
		"ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic")
	// A Type=notify service is active only once it sent READY=1.
	if st["Type"] != "notify" || st["ActiveState"] != "active" || st["SubState"] != "running" || st["MainPID"] == "0" || st["UnitFileState"] != "enabled" {
		t.Fatalf("after systemctl enable --now: mabd.service %v, want Type=notify, enabled, active (running)%s", st, c.diagnose())
	}
	statusLine := regexp.MustCompile(`^\d+ platforms ok, \d+ failing`)
	if !statusLine.MatchString(st["StatusText"]) {
		t.Errorf("systemctl show -p StatusText mabd: %q, want mabd's STATUS= line (%s)", st["StatusText"], statusLine)
	}
	// Both in any order: mabd logs "ready" just after it sends READY=1.
	j := c.journal(cur, 30*time.Second, "mabd.service", `^mabd\[\d+\]: ready\b`, `^systemd\[1\]: Started mabd\.service`)
	t.Logf("ready: %s, READY=1 %s after the start (StatusText %q)\n%s", c.status("mabd.service"),
		monotonicDiff(st["ExecMainStartTimestampMonotonic"], st["ActiveEnterTimestampMonotonic"]), st["StatusText"], j.grep(`BuildKit|ready|conflict|Started|overlayfs|snapshotter`))
	c.checkHealth("after start")
	c.checkBuildKit()

	// --- Reload ---------------------------------------------------------
	cur = c.cursor()
	pid := st["MainPID"]
	c.must(time.Minute, "systemctl", "reload", "mabd.service")
	// systemctl returns when ExecReload (kill -HUP) has exited; mabd's
	// RELOADING=1 … READY=1 may come after that (Type=notify-reload, which
	// would make systemctl wait, needs systemd ≥ 253).
	for deadline := time.Now().Add(30 * time.Second); ; {
		got := c.show("mabd.service", "ActiveState", "SubState", "MainPID")
		if got["MainPID"] != pid {
			t.Fatalf("systemctl reload: mabd.service %v, want MainPID %s still%s", got, pid, c.diagnose())
		}
		if got["ActiveState"] == "active" && got["SubState"] == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after systemctl reload: mabd.service %v, want active (running)%s", got, c.diagnose())
		}
		t.Logf("after systemctl reload returned: mabd.service %s (%s)", got["ActiveState"], got["SubState"])
		time.Sleep(50 * time.Millisecond)
	}
	j = c.journal(cur, 30*time.Second, "mabd.service", `^systemd\[1\]: Reloading mabd\.service`, `^mabd\[`+pid+`\]: reloaded\b`, `^systemd\[1\]: Reloaded mabd\.service`)
	t.Logf("reload:\n%s", j)

	// --- kill -9 → restart ---------------------------------------------
	// Start-rate limit: StartLimitBurst=5 in 60 s is meant for a crash
	// loop, and this test starts mabd more often than that on purpose.
	c.must(time.Minute, "systemctl", "reset-failed", "mabd.service")
	cur = c.cursor()
	restarts := c.show("mabd.service", "NRestarts")["NRestarts"]
	c.must(10*time.Second, "kill", "-KILL", pid)
	pid = c.waitRestart(pid, restarts, "kill -9")
	j = c.journal(cur, 30*time.Second, "mabd.service", `Main process exited, code=killed, status=9/KILL`, `Failed with result 'signal'`, `Scheduled restart job`)
	t.Logf("kill -9 → restarted as %s:\n%s", pid, j.grep(`systemd\[1\]`))
	c.checkHealth("after the restart that followed kill -9")

	// --- Watchdog -------------------------------------------------------
	c.must(10*time.Second, "sh", "-c", "mkdir -p /etc/systemd/system/mabd.service.d && printf '[Service]\\nWatchdogSec=3s\\n' >/etc/systemd/system/mabd.service.d/debtest-watchdog.conf")
	c.must(time.Minute, "systemctl", "daemon-reload")
	c.must(time.Minute, "systemctl", "reset-failed", "mabd.service")
	c.must(2*time.Minute, "systemctl", "restart", "mabd.service")
	st = c.show("mabd.service", "ActiveState", "MainPID", "WatchdogUSec", "NRestarts")
	if st["ActiveState"] != "active" || st["WatchdogUSec"] != "3s" {
		t.Fatalf("with WatchdogSec=3s: mabd.service %v, want active, WatchdogUSec 3s%s", st, c.diagnose())
	}
	pid, restarts = st["MainPID"], st["NRestarts"]
	time.Sleep(5 * time.Second) // longer than WatchdogSec: mabd must keep it fed
	if got := c.show("mabd.service", "ActiveState", "MainPID", "NRestarts"); got["ActiveState"] != "active" || got["MainPID"] != pid || got["NRestarts"] != restarts {
		t.Fatalf("with WatchdogSec=3s, 5 s later: mabd.service %v, want still active as %s, NRestarts %s: mabd does not feed the watchdog%s", got, pid, restarts, c.diagnose())
	}
	cur = c.cursor()
	c.must(10*time.Second, "kill", "-STOP", pid)
	pid = c.waitRestart(pid, restarts, "SIGSTOP with WatchdogSec=3s")
	j = c.journal(cur, 30*time.Second, "mabd.service", `Watchdog timeout`, `Failed with result 'watchdog'`, `Scheduled restart job`)
	t.Logf("SIGSTOP → watchdog → restarted as %s:\n%s", pid, j.grep(`systemd\[1\]`))
	c.must(10*time.Second, "rm", "-r", "/etc/systemd/system/mabd.service.d")
	c.must(time.Minute, "systemctl", "daemon-reload")
	c.checkHealth("after the restart that followed the watchdog")

	// --- Socket activation ----------------------------------------------
	c.must(time.Minute, "systemctl", "reset-failed", "mabd.service")
	c.must(2*time.Minute, "systemctl", "stop", "mabd.service")
	// PartOf=mabd.service: the socket stops with the service.
	if got := c.show("mabd.socket", "ActiveState")["ActiveState"]; got != "inactive" {
		t.Errorf("after systemctl stop mabd.service: mabd.socket is %s, want inactive (PartOf=mabd.service)", got)
	}
	c.must(time.Minute, "systemctl", "start", "mabd.socket")
	if got := c.show("mabd.socket", "ActiveState", "SubState"); got["SubState"] != "listening" {
		t.Fatalf("systemctl start mabd.socket: %v, want listening%s", got, c.diagnose())
	}
	if got := c.show("mabd.service", "ActiveState")["ActiveState"]; got != "inactive" {
		t.Fatalf("mabd.service is %s with only the socket started, want inactive%s", got, c.diagnose())
	}
	cur = c.cursor()
	code, body := c.healthz()
	st = c.show("mabd.service", "ActiveState", "SubState", "MainPID", "TriggeredBy")
	j = c.journal(cur, 30*time.Second, "mabd.service", `^mabd\[\d+\]: control API on sockets passed by systemd`)
	t.Logf("socket activation: GET /healthz → %s %q; mabd.service %v\n%s", code, body, st, j.grep(`systemd\[1\]|control API|ready`))
	if code != "200" {
		t.Errorf("socket activation: GET /healthz answered %s %q, want 200 (the first request, which started mabd)%s", code, body, c.diagnose())
	}
	if st["ActiveState"] != "active" || st["SubState"] != "running" || st["TriggeredBy"] != "mabd.socket" {
		t.Errorf("socket activation: mabd.service %v, want active (running), triggered by mabd.socket", st)
	}

	// --- Repair after systemd-binfmt restarts ---------------------------
	before := c.binfmtNames()
	cur = c.cursor()
	start = time.Now()
	c.must(time.Minute, "systemctl", "restart", "systemd-binfmt.service")
	repaired := `^mabd\[\d+\]: .*(?i:repair|restor|regist).*`
	deadline := time.Now().Add(time.Minute)
	for {
		after := c.binfmtNames()
		j = c.journalNow(cur, "mabd.service")
		if slices.Equal(after, before) && j.index(repaired) >= 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after systemctl restart systemd-binfmt: the table holds %q, want %q again, and mabd logged:\n%s%s", after, before, j, c.diagnose())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("systemctl restart systemd-binfmt: %d entries again after %s; mabd logged:\n%s", len(before), time.Since(start).Round(time.Millisecond), j)
	c.checkHealth("after systemd-binfmt restarted")

	// --- Stop -----------------------------------------------------------
	start = time.Now()
	c.must(2*time.Minute, "systemctl", "stop", "mabd.socket", "mabd.service")
	if got := c.show("mabd.service", "ActiveState", "Result"); got["ActiveState"] != "inactive" || got["Result"] != "success" {
		t.Errorf("after systemctl stop: mabd.service %v, want inactive, success%s", got, c.diagnose())
	}
	t.Logf("systemctl stop: %s", time.Since(start).Round(time.Millisecond))
}

// monotonicDiff is b − a for two …TimestampMonotonic properties (µs).
func monotonicDiff(a, b string) time.Duration {
	x, err1 := strconv.ParseInt(a, 10, 64)
	y, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(y-x) * time.Microsecond
}

// show returns properties of a unit (systemctl show -p).
func (c *container) show(unit string, props ...string) map[string]string {
	c.t.Helper()
	out := c.must(time.Minute, "systemctl", "show", "-p", strings.Join(props, ","), unit)
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// status is the Active: line of systemctl status.
func (c *container) status(unit string) string {
	out, _ := c.run(time.Minute, "systemctl", "status", "--no-pager", "--lines=0", unit)
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(l), "Active: "); ok {
			return s
		}
	}
	return out
}

// readFile reads a file of the container, through its root.
func (c *container) readFile(p string) string {
	c.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", c.pid, p))
	if err != nil {
		c.t.Fatalf("read the container's %s: %v", p, err)
	}
	return string(b)
}

// binfmtNames lists the entries of the container's binfmt_misc instance.
func (c *container) binfmtNames() []string {
	c.t.Helper()
	names, err := dirNames(fmt.Sprintf("/proc/%d/root/proc/sys/fs/binfmt_misc", c.pid))
	if err != nil {
		c.t.Fatalf("the container's binfmt_misc: %v", err)
	}
	return slices.DeleteFunc(names, func(n string) bool { return n == "register" || n == "status" })
}

// waitRestart waits until systemd has restarted mabd.service after its
// process pid died: a new main process, active (running), one restart
// more than restarts.
func (c *container) waitRestart(pid, restarts, what string) string {
	c.t.Helper()
	n, _ := strconv.Atoi(restarts)
	deadline := time.Now().Add(time.Minute)
	for {
		st := c.show("mabd.service", "ActiveState", "SubState", "MainPID", "NRestarts")
		if st["ActiveState"] == "active" && st["SubState"] == "running" && st["MainPID"] != pid && st["MainPID"] != "0" && st["NRestarts"] == strconv.Itoa(n+1) {
			return st["MainPID"]
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: mabd.service %v a minute later, want restarted (a main process other than %s, active (running), NRestarts %d)%s", what, st, pid, n+1, c.diagnose())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkHealth checks that `mabd status` exits 0 and GET /healthz answers
// 200; failures are reported, not fatal.
func (c *container) checkHealth(when string) {
	c.t.Helper()
	out, err := c.run(time.Minute, "/usr/bin/mabd", "status")
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		c.t.Errorf("%s: mabd status exited %d, want 0 (healthy):\n%s", when, exit.ExitCode(), out)
	default:
		c.t.Errorf("%s: mabd status: %v\n%s", when, err, out)
	}
	if code, body := c.healthz(); code != "200" {
		c.t.Errorf("%s: GET /healthz answered %s %q, want 200", when, code, body)
	}
}

// healthz asks mabd's socket for /healthz with curl and returns the HTTP
// status code and the body.
func (c *container) healthz() (code, body string) {
	c.t.Helper()
	out := c.must(2*time.Minute, "curl", "-sS", "--max-time", "100", "-w", "\n%{http_code}", "--unix-socket", "/run/mabd/mabd.sock", "http://mabd/healthz")
	out = strings.TrimRight(out, "\n")
	i := strings.LastIndexByte(out, '\n')
	return out[i+1:], strings.TrimSpace(out[:max(i, 0)])
}

// checkBuildKit logs the BuildKit worker mabd runs, or reports why there is
// none.
func (c *container) checkBuildKit() {
	c.t.Helper()
	out, err := c.run(time.Minute, "/usr/lib/mabd/buildctl", "--addr", "unix:///run/mabd/buildkitd.sock", "debug", "workers", "-v")
	if err != nil {
		c.t.Errorf("BuildKit under systemd: buildctl debug workers: %v\n%s", err, out)
		return
	}
	c.t.Logf("BuildKit under systemd: buildctl debug workers -v:\n%s", out)
}

// journalLines are journal entries, one line each: "IDENTIFIER[PID]:
// MESSAGE" followed by the entry's other fields that mabd sets.
type journalLines []string

func (j journalLines) String() string { return strings.Join(j, "\n") }

// index is the index of the first line matching re, or -1.
func (j journalLines) index(re string) int {
	r := regexp.MustCompile(re)
	return slices.IndexFunc(j, r.MatchString)
}

// grep returns the lines matching re.
func (j journalLines) grep(re string) journalLines {
	r := regexp.MustCompile(re)
	var m journalLines
	for _, l := range j {
		if r.MatchString(l) {
			m = append(m, l)
		}
	}
	return m
}

// cursor is the journal's current position.
func (c *container) cursor() string {
	c.t.Helper()
	out := c.must(time.Minute, "journalctl", "--no-pager", "-n", "0", "--show-cursor")
	for _, l := range strings.Split(out, "\n") {
		if cur, ok := strings.CutPrefix(l, "-- cursor: "); ok {
			return strings.TrimSpace(cur)
		}
	}
	c.t.Fatalf("journalctl --show-cursor printed no cursor:\n%s", out)
	return ""
}

// journalNow returns the journal entries of unit (its own and systemd's
// about it) after the cursor.
func (c *container) journalNow(cursor, unit string) journalLines {
	c.t.Helper()
	// Filtered here rather than with -u: with --after-cursor and -u,
	// journalctl 252 twice left out systemd's "Reloading …" entry (shown
	// by -u without a cursor); filtering here has not missed it since.
	out := c.must(time.Minute, "journalctl", "--no-pager", "-o", "json", "--after-cursor", cursor)
	var lines journalLines
	for _, l := range strings.Split(out, "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(l), &e) != nil {
			continue
		}
		// The unit's own entries, and systemd's about it.
		if e["_SYSTEMD_UNIT"] != unit && !(e["_PID"] == "1" && e["UNIT"] == unit) {
			continue
		}
		s := fmt.Sprintf("%v[%v]: %v", e["SYSLOG_IDENTIFIER"], e["_PID"], e["MESSAGE"])
		var extra []string
		for k, v := range e {
			if k == strings.ToUpper(k) && !strings.HasPrefix(k, "_") && !strings.HasPrefix(k, "CODE_") && !strings.HasPrefix(k, "SYSLOG_") &&
				!slices.Contains([]string{"MESSAGE", "PRIORITY", "MESSAGE_ID", "INVOCATION_ID", "UNIT", "JOB_ID", "JOB_TYPE", "JOB_RESULT", "EXIT_CODE", "EXIT_STATUS", "TID", "LOGGER"}, k) {
				extra = append(extra, fmt.Sprintf("%s=%v", k, v))
			}
		}
		slices.Sort(extra)
		if len(extra) > 0 {
			s += " " + strings.Join(extra, " ")
		}
		lines = append(lines, s)
	}
	return lines
}

// journal waits until the journal of unit after the cursor has a line
// matching each pattern, and returns it; the test fails if that takes
// longer than timeout.
func (c *container) journal(cursor string, timeout time.Duration, unit string, patterns ...string) journalLines {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j := c.journalNow(cursor, unit)
		var missing []string
		for _, p := range patterns {
			if j.index(p) < 0 {
				missing = append(missing, p)
			}
		}
		if len(missing) == 0 {
			return j
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the journal of %s has no line matching %q; it has:\n%s%s", unit, missing, j, c.diagnose())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
