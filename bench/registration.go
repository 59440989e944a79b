package main

// Rows 1–3 and 7: registration, the idempotent path, verification and the
// emulation slowdowns, all in private binfmt_misc instances.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"mabd/binfmt"
	"mabd/emulator"
	"mabd/emulator/emulatortest"
	"mabd/testing/sandbox"
)

// prelude starts every sandbox script: mount the sandbox's private
// instance on /proc/sys/fs/binfmt_misc too (inside the sandbox's own mount
// namespace, where systemd-binfmt and update-binfmts look for it), and
// refuse to go on unless that mount is the same instance as $BINFMT.
const prelude = `set -e
mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
if [ "$(stat -c %d /proc/sys/fs/binfmt_misc)" != "$(stat -c %d "$BINFMT")" ]; then
	echo "mabd-bench: /proc/sys/fs/binfmt_misc is not the sandbox's private instance; refusing to go on" >&2
	exit 125
fi
count() {
	n=0
	for f in "$BINFMT"/*; do
		case ${f##*/} in register|status) ;; *) n=$((n+1)) ;; esac
	done
	echo "count $n"
}
T() { "$HELPER" helper time "$@"; }
`

// sandboxScript runs prelude+script in a new sandbox with the bench's
// paths in the environment and returns its standard output.
func (b *bench) sandboxScript(ctx context.Context, script string, env ...string) (string, error) {
	cmd := sandbox.Script(ctx, prelude+script)
	cmd.Env = append(os.Environ(),
		"HELPER="+b.cfg.self,
		"MABD="+b.cfg.mabd,
		"SYSTEMD_BINFMT="+b.cfg.systemdBinfmt,
		"UB="+b.cfg.updateBinfmts,
		"ARCHUTIL="+b.cfg.archutil,
		"CONF="+b.confDir,
		"IMP="+b.importDir,
		"FLOOR="+b.floorShell,
		"LINES="+b.linesFile,
		"W="+b.work,
		// mabd's state (the emulators' versions, the choices), the
		// bench's own: the host's /var/lib/mabd is left alone.
		"STATE="+filepath.Join(b.work, "state"),
	)
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("sandbox script: %v\n%s", err, tail(errb.String(), 3000))
	}
	return out.String(), nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// prepare makes the work directory and the definitions every registration
// tool gets: `mabd install all --persist` in a sandbox writes the binfmt.d
// files (systemd-binfmt's input, the very lines mabd registers); the same
// specs become update-binfmts format files and the register lines of the
// floors.
func (b *bench) prepare(ctx context.Context) error {
	w, err := os.MkdirTemp("/tmp", "mabd-bench-")
	if err != nil {
		return err
	}
	b.work = w
	b.cleanups = append(b.cleanups, func() { os.RemoveAll(w) })
	if err := sandbox.Available(); err != nil {
		return fmt.Errorf("private binfmt_misc instances are not available: %w", err)
	}
	b.confDir = filepath.Join(w, "binfmt.d")
	b.importDir = filepath.Join(w, "binfmts")
	b.floorShell = filepath.Join(w, "floor.sh")
	b.linesFile = filepath.Join(w, "lines")
	if _, err := b.sandboxScript(ctx, `"$MABD" install all --binfmt-mount "$BINFMT" --state-dir "$STATE" --persist --persist-dir "$CONF" >/dev/null`); err != nil {
		return fmt.Errorf("mabd install all --persist: %w", err)
	}
	confs, err := filepath.Glob(filepath.Join(b.confDir, "*.conf"))
	if err != nil || len(confs) == 0 {
		return fmt.Errorf("mabd install all --persist wrote no binfmt.d file to %s", b.confDir)
	}
	slices.Sort(confs)
	var specs []binfmt.Spec
	for _, p := range confs {
		ss, err := binfmt.ReadConf(p)
		if err != nil {
			return err
		}
		specs = append(specs, ss...)
	}
	b.specCount = len(specs)
	if err := os.Mkdir(b.importDir, 0o755); err != nil {
		return err
	}
	var floor, lines strings.Builder
	floor.WriteString("# One printf per handler, as an administrator would script it.\n")
	for _, s := range specs {
		if strings.Contains(s.Line(), "'") {
			return fmt.Errorf("register line of %s has a quote", s.Name)
		}
		fmt.Fprintf(&floor, "printf '%%s\\n' '%s' > \"$BINFMT/register\"\n", s.Line())
		lines.WriteString(s.Line() + "\n")
		if err := os.WriteFile(filepath.Join(b.importDir, s.Name), []byte(updateBinfmtsFormat(s)), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(b.floorShell, []byte(floor.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(b.linesFile, []byte(lines.String()), 0o644); err != nil {
		return err
	}
	b.logf("%d handlers from `mabd install all` (binfmt.d files in %s)", b.specCount, b.confDir)
	return nil
}

// updateBinfmtsFormat writes s as a binfmt-support format file (see
// update-binfmts(8), FORMAT FILES).
func updateBinfmtsFormat(s binfmt.Spec) string {
	esc := func(p []byte) string {
		var b strings.Builder
		for _, c := range p {
			fmt.Fprintf(&b, `\x%02x`, c)
		}
		return b.String()
	}
	yes := func(f binfmt.Flags) string {
		if s.Flags.Has(f) {
			return "yes"
		}
		return "no"
	}
	var b strings.Builder
	b.WriteString("package mabd-bench\n")
	b.WriteString("interpreter " + s.Interpreter + "\n")
	if s.Type == binfmt.Extension {
		b.WriteString("extension " + string(s.Magic) + "\n")
	} else {
		b.WriteString("magic " + esc(s.Magic) + "\n")
		fmt.Fprintf(&b, "offset %d\n", s.Offset)
		if len(s.Mask) > 0 {
			b.WriteString("mask " + esc(s.Mask) + "\n")
		}
	}
	b.WriteString("credentials " + yes(binfmt.Credentials) + "\n")
	b.WriteString("fix_binary " + yes(binfmt.FixBinary) + "\n")
	b.WriteString("preserve " + yes(binfmt.PreserveArgv0) + "\n")
	return b.String()
}

func (b *bench) haveUpdateBinfmts() error {
	if _, err := os.Stat(b.cfg.updateBinfmts); err != nil {
		return fmt.Errorf("update-binfmts not extracted (%v): scripts/bench.sh takes it from `apt-get download binfmt-support`", err)
	}
	return nil
}

func (b *bench) haveSystemdBinfmt() error {
	if _, err := os.Stat(b.cfg.systemdBinfmt); err != nil {
		return fmt.Errorf("%v (Debian package systemd)", err)
	}
	return nil
}

// registration is row 1: every handler into a fresh private instance per
// run, one run of each tool per round.
func (b *bench) registration(ctx context.Context) []Row {
	n := b.specCount
	title := fmt.Sprintf("register %d handlers into an empty instance", n)
	type side struct {
		label, name, script string
		err                 error
	}
	sides := []*side{
		{label: "mabd", name: "`mabd install all`", script: `T mabd -- "$MABD" install all --binfmt-mount "$BINFMT" --state-dir "$STATE"`},
		{label: "systemd", name: "`systemd-binfmt FILE…`", script: `T systemd -- "$SYSTEMD_BINFMT" "$CONF"/*.conf`, err: b.haveSystemdBinfmt()},
		{label: "ub", name: "`update-binfmts --import`", script: `a=$(mktemp -d)
T ub -- "$UB" --admindir "$a" --importdir "$IMP" --import
rm -rf "$a"`, err: b.haveUpdateBinfmts()},
		{label: "floor", name: "floor: `sh` loop of `printf LINE > register`", script: `T floor -- /bin/sh "$FLOOR"`},
		{label: "goloop", name: "floor: Go loop of writes (no process)", script: `"$HELPER" helper writeloop "$LINES"`},
	}
	samples := map[string][]float64{}
	for round := 0; round < b.cfg.rounds && ctx.Err() == nil; round++ {
		for _, s := range sides {
			if s.err != nil {
				continue
			}
			out, err := b.sandboxScript(ctx, s.script+"\ncount\n")
			if err == nil {
				times, counts := parseTimes(out)
				switch {
				case len(times[s.label]) != 1:
					err = fmt.Errorf("no time in the output: %q", out)
				case len(counts) != 1 || counts[0] != n:
					err = fmt.Errorf("%v handlers registered, want %d", counts, n)
				default:
					samples[s.label] = append(samples[s.label], times[s.label][0])
				}
			}
			if err != nil {
				s.err = err
				b.logf("row 1 %s: %v", s.label, err)
			}
		}
		// What a Go program's start costs in the same rounds: the share of
		// 1a's budget no registering tool written in Go can spend.
		if out, err := b.sandboxScript(ctx, `T hello -- "$HELLO"
T version -- "$MABD" version`, "HELLO="+b.cfg.hello); err == nil {
			times, _ := parseTimes(out)
			for _, l := range []string{"hello", "version"} {
				samples[l] = append(samples[l], times[l]...)
			}
		}
	}
	var rows []Row
	a := sides[0]
	for i, s := range sides[1:] {
		id := fmt.Sprintf("1%c", 'a'+i)
		switch {
		case a.err != nil:
			rows = append(rows, naRow(id, title, a.name, s.name, firstLine(a.err)))
		case s.err != nil:
			rows = append(rows, naRow(id, title, a.name, s.name, firstLine(s.err)))
		default:
			rows = append(rows, compareRow(id, title, a.name, s.name, samples[a.label], samples[s.label]))
		}
	}
	if sys := samples["systemd"]; len(sys) > 0 && len(samples["hello"]) > 0 && len(samples["version"]) > 0 && len(rows) > 0 && rows[0].Error == "" {
		sm := median(sys)
		rows[0].Note = fmt.Sprintf("in the same rounds a Go hello-world took %s (%s× systemd-binfmt) and `mabd version` %s (%s×)",
			fmtMS(median(samples["hello"])), fmtNum(median(samples["hello"])/sm), fmtMS(median(samples["version"])), fmtNum(median(samples["version"])/sm))
	}
	return rows
}

// idempotent is row 2: everything is registered already; each tool runs
// again in the same instance, alternately.
func (b *bench) idempotent(ctx context.Context) []Row {
	title := fmt.Sprintf("again, all %d already registered", b.specCount)
	aName := "`mabd install all` (nothing to do)"
	sysName := "`systemd-binfmt FILE…` (removes and re-adds each)"
	ubName := "`update-binfmts --import` (same database)"
	ubErr := b.haveUpdateBinfmts()
	haveUB := "1"
	if ubErr != nil {
		haveUB = "0"
	}
	if err := b.haveSystemdBinfmt(); err != nil {
		return []Row{naRow("2a", title, aName, sysName, err.Error())}
	}
	script := `"$MABD" install all --binfmt-mount "$BINFMT" --state-dir "$STATE" >/dev/null
count
if [ "$HAVE_UB" = 1 ]; then
	a=$(mktemp -d)
	"$UB" --admindir "$a" --importdir "$IMP" --import
fi
i=0
while [ $i -lt "$ROUNDS" ]; do
	T -o "$W/idem-mabd.out" mabd -- "$MABD" install all --binfmt-mount "$BINFMT" --state-dir "$STATE"
	T systemd -- "$SYSTEMD_BINFMT" "$CONF"/*.conf
	if [ "$HAVE_UB" = 1 ]; then T ub -- "$UB" --admindir "$a" --importdir "$IMP" --import; fi
	i=$((i+1))
done
count
[ "$HAVE_UB" = 1 ] && rm -rf "$a"
exit 0
`
	out, err := b.sandboxScript(ctx, script, fmt.Sprintf("ROUNDS=%d", b.cfg.rounds), "HAVE_UB="+haveUB)
	if err != nil {
		return []Row{naRow("2a", title, aName, sysName, firstLine(err))}
	}
	times, counts := parseTimes(out)
	note := ""
	if len(counts) != 2 || counts[0] != b.specCount || counts[1] != b.specCount {
		note = fmt.Sprintf("handler counts %v, want %d", counts, b.specCount)
	}
	if last, err := os.ReadFile(filepath.Join(b.work, "idem-mabd.out")); err != nil || !strings.Contains(string(last), "nothing to do") {
		note = strings.TrimSpace(note + " mabd's last run did not say \"nothing to do\": " + strings.TrimSpace(string(last)))
	}
	r := compareRow("2a", title, aName, sysName, times["mabd"], times["systemd"])
	r.Note = note
	rows := []Row{r}
	if ubErr != nil {
		rows = append(rows, naRow("2b", title, aName, ubName, ubErr.Error()))
	} else {
		r := compareRow("2b", title, aName, ubName, times["mabd"], times["ub"])
		r.Note = note
		rows = append(rows, r)
	}
	return rows
}

// verifyJSON is the part of `mabd verify --json` the bench reads.
type verifyJSON struct {
	Results []struct {
		Platform string  `json:"platform"`
		QEMUArch string  `json:"qemu_arch"`
		State    string  `json:"state"`
		Reason   string  `json:"reason"`
		Slowdown float64 `json:"slowdown"`
	} `json:"results"`
}

// archutilJSON is what bench/archutil prints.
type archutilJSON struct {
	Platforms []string `json:"platforms"`
	CallMS    float64  `json:"call_ms"`
}

// verification is row 3, in one instance holding every handler, the
// sides alternately: `mabd verify` against BuildKit's own detection (3a);
// against the same tiny probes exec'd by a Go loop as many at a time as
// mabd runs them, with no chroot and no check (3b: QEMU's starts alone,
// the floor of any verification that starts each emulator once); and
// `mabd verify` of only the platforms archutil reports, against archutil
// (3c: the same architectures on both sides).
func (b *bench) verification(ctx context.Context) []Row {
	title := "verify every architecture (same instance, all handlers)"
	aName := "`mabd verify --state-dir - --json`"
	bName := "BuildKit `archutil.SupportedPlatforms(true)` (bench/archutil)"
	if _, err := os.Stat(b.cfg.archutil); err != nil {
		return []Row{naRow("3", title, aName, bName, fmt.Sprintf("%v: scripts/bench.sh builds it", err))}
	}
	// One untimed run of each first: archutil's platforms are 3c's
	// arguments, and the architectures mabd verifies are those whose
	// probes 3b's floor runs.
	first, err := b.sandboxScript(ctx, `"$MABD" install all --binfmt-mount "$BINFMT" --state-dir "$STATE" >/dev/null
"$MABD" verify --binfmt-mount "$BINFMT" --state-dir - --json >"$W/verify-first.json" || true
"$ARCHUTIL"
`)
	var au archutilJSON
	if err == nil {
		err = json.Unmarshal([]byte(first), &au)
	}
	if err != nil || len(au.Platforms) == 0 {
		return []Row{naRow("3", title, aName, bName, fmt.Sprintf("archutil's platforms: %v", firstLine(cmp.Or(err, errors.New("none")))))}
	}
	probes, err := b.copyProbes(verified(filepath.Join(b.work, "verify-first.json")))
	if err != nil {
		return []Row{naRow("3", title, aName, bName, err.Error())}
	}
	script := `"$MABD" install all --binfmt-mount "$BINFMT" --state-dir "$STATE" >/dev/null
i=0
while [ $i -lt "$ROUNDS" ]; do
	T -o "$W/verify.json" mabd -- "$MABD" verify --binfmt-mount "$BINFMT" --state-dir - --json
	T -o "$W/archutil.json" archutil -- "$ARCHUTIL"
	"$HELPER" helper probeloop "$PROBES" "$WORKERS" 2>"$W/probeloop.err" || true
	T -o "$W/verify-subset.json" subset -- "$MABD" verify --binfmt-mount "$BINFMT" --state-dir - --json $SUBSET
	i=$((i+1))
done
`
	workers := emulator.ProbeWorkers()
	out, err := b.sandboxScript(ctx, script, fmt.Sprintf("ROUNDS=%d", b.cfg.rounds), "PROBES="+probes,
		fmt.Sprintf("WORKERS=%d", workers), "SUBSET="+strings.Join(au.Platforms, " "))
	if err != nil {
		return []Row{naRow("3", title, aName, bName, firstLine(err))}
	}
	times, _ := parseTimes(out)
	ents, _ := os.ReadDir(probes)
	a := compareRow("3a", title, aName, bName, times["mabd"], times["archutil"])
	floor := compareRow("3b", title, aName, fmt.Sprintf("floor: the same %d tiny probes exec'd by a Go loop, %d at a time, no chroot, no check (QEMU's starts alone)", len(ents), workers), times["mabd"], times["probeloop"])
	if len(times["probeloop"]) == 0 {
		why, _ := os.ReadFile(filepath.Join(b.work, "probeloop.err"))
		floor = naRow("3b", title, aName, floor.B, "the floor failed: "+firstLine(errors.New(strings.TrimSpace(string(why)))))
	}
	sub := compareRow("3c", "verify the platforms archutil reports (same instance, all handlers)", "`mabd verify --state-dir - --json PLATFORM…`", bName, times["subset"], times["archutil"])
	var notes []string
	if ok, native, failed := verifyCounts(filepath.Join(b.work, "verify.json")); ok+native > 0 {
		a.A = fmt.Sprintf("%s: %d emulated ok + %d native", aName, ok, native)
		floor.A = a.A
		if failed > 0 {
			notes = append(notes, fmt.Sprintf("%d of mabd's results failed", failed))
		}
		if ok+native != len(ents) {
			floor.Note = fmt.Sprintf("mabd verified %d architectures, the floor ran %d probes", ok+native, len(ents))
		}
	}
	if ok, native, failed := verifyCounts(filepath.Join(b.work, "verify-subset.json")); ok+native > 0 {
		sub.A = fmt.Sprintf("%s: %d emulated ok + %d native", sub.A, ok, native)
		if failed > 0 {
			sub.Note = fmt.Sprintf("%d of mabd's results failed", failed)
		}
	}
	if raw, err := os.ReadFile(filepath.Join(b.work, "archutil.json")); err == nil && json.Unmarshal(raw, &au) == nil {
		foreign := map[string]bool{}
		for _, p := range au.Platforms {
			if f := strings.Split(p, "/"); len(f) > 1 && f[1] != runtime.GOARCH {
				foreign[f[1]] = true
			}
		}
		a.B = fmt.Sprintf("%s: %d platforms, %d architectures other than %s", bName, len(au.Platforms), len(foreign), runtime.GOARCH)
		sub.B = a.B
		a.Values = map[string]float64{"archutil_call_ms_last": au.CallMS, "archutil_platforms": float64(len(au.Platforms))}
		a.Detail = "archutil: " + strings.Join(au.Platforms, " ")
		notes = append(notes, fmt.Sprintf("the archutil call itself took %s of its process", fmtMS(au.CallMS)))
	}
	if fl, au := times["probeloop"], times["archutil"]; len(fl) > 0 && len(au) > 0 {
		notes = append(notes, fmt.Sprintf("the floor of 3b is %s× archutil's time (median)", fmtNum(median(fl)/median(au))))
	}
	a.Note = strings.Join(notes, "; ")
	return []Row{a, floor, sub}
}

// readVerify reads a `mabd verify --json` answer; nil when it cannot.
func readVerify(path string) *verifyJSON {
	var v verifyJSON
	raw, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(raw, &v) != nil {
		return nil
	}
	return &v
}

// verified returns the QEMU names of the architectures a `mabd verify
// --json` answer passed (ok or native).
func verified(path string) []string {
	var names []string
	if v := readVerify(path); v != nil {
		for _, x := range v.Results {
			if x.State == "ok" || x.State == "native" {
				names = append(names, x.QEMUArch)
			}
		}
	}
	return names
}

// verifyCounts counts the results of a `mabd verify --json` answer by
// state; all 0 when the file cannot be read.
func verifyCounts(path string) (ok, native, failed int) {
	v := readVerify(path)
	if v == nil {
		return 0, 0, 0
	}
	for _, x := range v.Results {
		switch x.State {
		case "ok":
			ok++
		case "native":
			native++
		default:
			failed++
		}
	}
	return ok, native, failed
}

// copyProbes copies the tiny probes of arches (emulator/probes/ARCH.elf,
// the very programs `mabd verify` embeds and runs) into the work
// directory for the floor of row 3b, executable, and returns that
// directory. An architecture mabd proves with its Go probe (no tiny one)
// is left out; row 3b's note then says how many ran.
func (b *bench) copyProbes(arches []string) (string, error) {
	if len(arches) == 0 {
		return "", errors.New("mabd verified no architecture: no probe for the floor")
	}
	dir := filepath.Join(b.work, "probes")
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	for _, a := range arches {
		raw, err := os.ReadFile(filepath.Join(b.cfg.root, "emulator", "probes", a+".elf"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("the floor runs mabd's tiny probes: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, a), raw, 0o755); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// emulation is row 7: per architecture, the slowdown `mabd verify
// --bench` reports under each candidate emulator — Debian 12's QEMU 7.2
// (A, /usr/bin) and Debian 13's QEMU 10 (B, emulatortest.SecondDir, from
// make deps) — registered alternately in one instance (`mabd install all
// i386 --emulate-native --replace --emulator-dir DIR`), emuRuns rounds of
// one verify each; and one `mabd verify --deep` under each, whose
// workload probe times go in the notes.
func (b *bench) emulation(ctx context.Context) []Row {
	title := "emulation slowdown (`mabd verify --bench --json`)"
	dirA, dirB := emulatortest.FirstDir, emulatortest.SecondDir
	if _, err := os.Stat(filepath.Join(dirB, "qemu-aarch64")); err != nil {
		return []Row{naRow("7", title, "`mabd verify --bench`", "", fmt.Sprintf("%v: run make deps (it extracts Debian 13's QEMU there)", err))}
	}
	script := `use() {
	"$MABD" install all i386 --emulate-native --replace --binfmt-mount "$BINFMT" --state-dir - --emulator-dir "$1" >/dev/null
}
i=0
while [ $i -lt "$ROUNDS" ]; do
	for c in a b; do
		if [ $c = a ]; then use "$DIR_A"; else use "$DIR_B"; fi
		T -o "$W/bench-$c-$i.json" verify-$c -- "$MABD" verify --binfmt-mount "$BINFMT" --state-dir - --json --bench || true
	done
	i=$((i+1))
done
for c in a b; do
	if [ $c = a ]; then use "$DIR_A"; else use "$DIR_B"; fi
	"$MABD" verify --deep --binfmt-mount "$BINFMT" --state-dir - --json >"$W/deep-$c.json" || true
done
`
	out, err := b.sandboxScript(ctx, script, fmt.Sprintf("ROUNDS=%d", b.cfg.emuRuns), "DIR_A="+dirA, "DIR_B="+dirB)
	if err != nil {
		return []Row{naRow("7", title, "`mabd verify --bench`", "", firstLine(err))}
	}
	times, _ := parseTimes(out)
	type sides struct{ a, b []float64 }
	slow := map[string]*sides{}
	failed := map[string]map[string]string{"a": {}, "b": {}} // why a side has no slowdown, by architecture
	var order []string
	for i := 0; i < b.cfg.emuRuns; i++ {
		for _, side := range []string{"a", "b"} {
			var v verifyJSON
			raw, err := os.ReadFile(filepath.Join(b.work, fmt.Sprintf("bench-%s-%d.json", side, i)))
			if err != nil || json.Unmarshal(raw, &v) != nil {
				continue
			}
			for _, x := range v.Results {
				key := x.Platform + " (" + x.QEMUArch + ")"
				if x.State == "native" || (x.Slowdown <= 0 && x.State != "failed") {
					continue // native, or no bench program for it (the tiny probe's architectures)
				}
				if _, ok := slow[key]; !ok {
					slow[key] = &sides{}
					order = append(order, key)
				}
				if x.Slowdown <= 0 {
					reason, _, _ := strings.Cut(x.Reason, ":")
					failed[side][key] = reason
					continue
				}
				if side == "a" {
					slow[key].a = append(slow[key].a, x.Slowdown)
				} else {
					slow[key].b = append(slow[key].b, x.Slowdown)
				}
			}
		}
	}
	if len(order) == 0 {
		return []Row{naRow("7", title, "`mabd verify --bench`", "", "no slowdown in the output")}
	}
	slices.Sort(order)
	versions := map[string]string{"a": "QEMU 7.2 (Debian 12, " + dirA + ")", "b": "QEMU 10 (Debian 13, " + dirB + ")"}
	workload := map[string]map[string]float64{"a": b.workloadTimes("deep-a.json"), "b": b.workloadTimes("deep-b.json")}
	var rows []Row
	for i, k := range order {
		s := slow[k]
		id, rowTitle := fmt.Sprintf("7%c", 'a'+i), "emulation slowdown "+k
		aName, bName := "fixed CPU workload, emulated / native, under "+versions["a"], "the same under "+versions["b"]
		var r Row
		switch {
		case len(s.a) > 0 && len(s.b) > 0:
			r = compareRow(id, rowTitle, aName, bName, s.a, s.b)
			r.Unit = "×"
		case len(s.a) > 0:
			r = Row{ID: id, Title: rowTitle, A: aName, Unit: "×", ASamples: s.a, N: len(s.a), Value: fmtSlowdowns(s.a)}
		case len(s.b) > 0:
			r = Row{ID: id, Title: rowTitle, A: "fixed CPU workload, emulated / native, under " + versions["b"], Unit: "×", ASamples: s.b, N: len(s.b), Value: fmtSlowdowns(s.b)}
		default:
			r = naRow(id, rowTitle, aName, bName, "no slowdown under either")
		}
		var notes []string
		for _, side := range []string{"a", "b"} {
			name := map[string]string{"a": "7.2", "b": "10"}[side]
			if why := failed[side][k]; why != "" {
				notes = append(notes, fmt.Sprintf("QEMU %s fails verification: %s", name, why))
			}
			if ms, ok := workload[side][k]; ok {
				notes = append(notes, fmt.Sprintf("workload probe under QEMU %s: %s", name, fmtMS(ms)))
			}
		}
		r.Note = strings.Join(notes, "; ")
		rows = append(rows, r)
	}
	if ts := times["verify-a"]; len(ts) > 0 {
		note := fmt.Sprintf("one `mabd verify --bench` of all of them takes %s under QEMU 7.2", fmtMS(median(ts)))
		if tb := times["verify-b"]; len(tb) > 0 {
			note += fmt.Sprintf(", %s under QEMU 10", fmtMS(median(tb)))
		}
		rows[0].Note = strings.TrimPrefix(rows[0].Note+"; "+note, "; ")
	}
	return rows
}

// fmtSlowdowns formats the median (min–max) of slowdowns.
func fmtSlowdowns(xs []float64) string {
	v := fmtNum(median(xs)) + "×"
	if len(xs) > 1 {
		v += fmt.Sprintf(" (%s–%s)", fmtNum(slices.Min(xs)), fmtNum(slices.Max(xs)))
	}
	return v
}

// workloadTimes reads a `mabd verify --deep --json` of the work
// directory: the workload probe's time by platform key, of those that
// passed it.
func (b *bench) workloadTimes(file string) map[string]float64 {
	out := map[string]float64{}
	raw, err := os.ReadFile(filepath.Join(b.work, file))
	if err != nil {
		return out
	}
	var v struct {
		Results []struct {
			Platform string `json:"platform"`
			QEMUArch string `json:"qemu_arch"`
			Workload *struct {
				State      string  `json:"state"`
				DurationMS float64 `json:"duration_ms"`
			} `json:"workload"`
		} `json:"results"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return out
	}
	for _, x := range v.Results {
		if x.Workload != nil && x.Workload.State == "ok" {
			out[x.Platform+" ("+x.QEMUArch+")"] = x.Workload.DurationMS
		}
	}
	return out
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		rest := strings.TrimSpace(s[i+1:])
		s = s[:i]
		if rest != "" {
			// Keep the last line of the detail: usually the reason.
			ls := strings.Split(rest, "\n")
			s += ": " + strings.TrimSpace(ls[len(ls)-1])
		}
	}
	return s
}
