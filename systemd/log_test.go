package systemd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// sent is one journal.Send call.
type sent struct {
	msg  string
	pri  journal.Priority
	vars map[string]string
}

// testLogEnv is a logEnv whose stderr is buf and whose journal records
// what would be sent.
func testLogEnv(buf *bytes.Buffer, journalStream, terminal, journalUp bool) (logEnv, *[]sent) {
	var got []sent
	return logEnv{
		stderr:         zapcore.AddSync(buf),
		journalStream:  func() bool { return journalStream },
		terminal:       func() bool { return terminal },
		journalEnabled: func() bool { return journalUp },
		journalSend: func(msg string, pri journal.Priority, vars map[string]string) error {
			got = append(got, sent{msg, pri, vars})
			return nil
		},
	}, &got
}

// jsonLines decodes every line of buf.
func jsonLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestNewLoggerJSON(t *testing.T) {
	var buf bytes.Buffer
	env, _ := testLogEnv(&buf, false, false, true)
	l, format, err := newLogger("info", "json", env)
	if err != nil {
		t.Fatal(err)
	}
	if format != "json" {
		t.Fatalf("format %q, want json", format)
	}
	l.Named("reconcile").Info("repaired", zap.Int("repairs", 3), zap.String("arch", "aarch64"), zap.Error(errors.New("boom")))
	l.Debug("not shown")
	lines := jsonLines(t, &buf)
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1:\n%s", len(lines), buf.String())
	}
	m := lines[0]
	want := map[string]any{"level": "info", "msg": "repaired", "logger": "reconcile", "repairs": 3.0, "arch": "aarch64", "error": "boom"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %#v, want %#v", k, m[k], v)
		}
	}
	if ts, _ := m["ts"].(string); ts == "" {
		t.Errorf("no ts: %v", m)
	} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		t.Errorf("ts %q: %v", ts, err)
	}
	if c, _ := m["caller"].(string); !strings.HasPrefix(c, "systemd/log_test.go:") {
		t.Errorf("caller %q, want systemd/log_test.go:LINE", c)
	}
}

func TestNewLoggerConsole(t *testing.T) {
	var buf bytes.Buffer
	env, _ := testLogEnv(&buf, false, true, true)
	l, format, err := newLogger("debug", "auto", env)
	if err != nil {
		t.Fatal(err)
	}
	if format != "console" {
		t.Fatalf("auto on a terminal chose %q, want console", format)
	}
	l.Debug("hello", zap.Int("repairs", 3))
	out := buf.String()
	if !strings.Contains(out, "\tDEBUG\t") || !strings.Contains(out, "hello") || !strings.Contains(out, `{"repairs": 3}`) {
		t.Errorf("console line %q", out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("console line has colours: %q", out)
	}
}

func TestNewLoggerLevels(t *testing.T) {
	tests := []struct {
		level string
		want  zapcore.Level
	}{
		{"debug", zapcore.DebugLevel},
		{"info", zapcore.InfoLevel},
		{"", zapcore.InfoLevel},
		{"warn", zapcore.WarnLevel},
		{"error", zapcore.ErrorLevel},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		env, _ := testLogEnv(&buf, false, false, true)
		l, _, err := newLogger(tt.level, "json", env)
		if err != nil {
			t.Fatalf("level %q: %v", tt.level, err)
		}
		if !l.Core().Enabled(tt.want) || (tt.want > zapcore.DebugLevel && l.Core().Enabled(tt.want-1)) {
			t.Errorf("level %q: logger does not start at %v", tt.level, tt.want)
		}
	}
	for _, bad := range [][2]string{{"trace", "json"}, {"warning", "json"}, {"info", "text"}, {"info", "syslog"}} {
		if _, err := NewLogger(bad[0], bad[1]); err == nil {
			t.Errorf("NewLogger(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

func TestDetectFormat(t *testing.T) {
	tests := []struct {
		journalStream, terminal, journalUp bool
		want                               string
	}{
		{true, false, true, "journal"},
		{true, true, true, "journal"}, // journal wins over a terminal
		{true, false, false, "json"},  // falls back
		{false, true, true, "console"},
		{false, false, true, "json"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		env, _ := testLogEnv(&buf, tt.journalStream, tt.terminal, tt.journalUp)
		_, got, err := newLogger("info", "auto", env)
		if err != nil || got != tt.want {
			t.Errorf("journal stream %v, terminal %v, journald up %v: format %q, %v; want %q",
				tt.journalStream, tt.terminal, tt.journalUp, got, err, tt.want)
		}
	}
}

func TestStderrIsJournalStream(t *testing.T) {
	var st syscall.Stat_t
	if err := syscall.Fstat(2, &st); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, env string
		want      bool
	}{
		{"Match", fmt.Sprintf("%d:%d", st.Dev, st.Ino), true},
		{"OtherInode", fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), false},
		{"OtherDevice", fmt.Sprintf("%d:%d", st.Dev+1, st.Ino), false},
		{"Fake", "8:1234567", false},
		{"Malformed", "journal", false},
		{"Empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setOrUnset(t, "JOURNAL_STREAM", tt.env)
			if got := stderrIsJournalStream(); got != tt.want {
				t.Errorf("JOURNAL_STREAM=%q (stderr is %d:%d): %v, want %v", tt.env, st.Dev, st.Ino, got, tt.want)
			}
		})
	}
}

func TestNewLoggerJournalFallback(t *testing.T) {
	var buf bytes.Buffer
	env, got := testLogEnv(&buf, false, false, false)
	l, format, err := newLogger("info", "journal", env)
	if err != nil {
		t.Fatal(err)
	}
	if format != "json" {
		t.Fatalf("format %q, want json (journald is down)", format)
	}
	l.Info("still logged", zap.Int("repairs", 3))
	lines := jsonLines(t, &buf)
	if len(lines) != 2 || lines[0]["level"] != "warn" || !strings.Contains(lines[0]["msg"].(string), "journald is not reachable") ||
		lines[1]["msg"] != "still logged" || lines[1]["repairs"] != 3.0 {
		t.Errorf("fallback output:\n%s", buf.String())
	}
	if len(*got) != 0 {
		t.Errorf("sent to journald although it is down: %v", *got)
	}
}

// TestNewLoggerRealJournal runs NewLogger as mabd would, with the real
// journal socket (absent here, present on a systemd host): no panic, no
// error, whichever way it goes.
func TestNewLoggerRealJournal(t *testing.T) {
	var st syscall.Stat_t
	if err := syscall.Fstat(2, &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	for _, format := range []string{"journal", "auto"} {
		// At level error, so that the test prints nothing.
		l, err := NewLogger("error", format)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		l.Info("systemd package test: ignore", zap.Int("repairs", 3), zap.String("format", format))
		_ = l.Sync()
	}
}

func TestJournalCore(t *testing.T) {
	var buf bytes.Buffer
	env, got := testLogEnv(&buf, true, false, true)
	l, format, err := newLogger("debug", "auto", env)
	if err != nil {
		t.Fatal(err)
	}
	if format != "journal" {
		t.Fatalf("format %q, want journal", format)
	}
	l = l.Named("reconcile").With(zap.String("component", "binfmt"))
	_, _, line, _ := runtime.Caller(0)
	l.Info("repaired handlers", zap.Int("repairs", 3), zap.String("arch", "aarch64"),
		zap.Error(errors.New("boom")), zap.Duration("took", 1500*time.Millisecond),
		zap.Bool("dry-run", false), zap.Strings("arches", []string{"aarch64", "riscv64"}),
		zap.String("message", "not the message"), zap.String("multi", "a\nb"))
	if buf.Len() != 0 {
		t.Errorf("journal mode wrote to stderr: %q", buf.String())
	}
	if len(*got) != 1 {
		t.Fatalf("%d entries sent, want 1", len(*got))
	}
	e := (*got)[0]
	if e.msg != "repaired handlers" || e.pri != journal.PriInfo {
		t.Errorf("message %q priority %d, want %q 6", e.msg, e.pri, "repaired handlers")
	}
	want := map[string]string{
		"SYSLOG_IDENTIFIER": "mabd",
		"LOGGER":            "reconcile",
		"COMPONENT":         "binfmt",
		"REPAIRS":           "3",
		"ARCH":              "aarch64",
		"ERROR":             "boom",
		"TOOK":              "1.5s",
		"DRY_RUN":           "false",
		"ARCHES":            `["aarch64","riscv64"]`,
		"FIELD_MESSAGE":     "not the message",
		"MULTI":             "a\nb",
		"CODE_LINE":         strconv.Itoa(line + 1), // the l.Info line
	}
	for k, v := range want {
		if e.vars[k] != v {
			t.Errorf("%s=%q, want %q", k, e.vars[k], v)
		}
	}
	if !strings.HasSuffix(e.vars["CODE_FILE"], "/systemd/log_test.go") {
		t.Errorf("CODE_FILE=%q", e.vars["CODE_FILE"])
	}
	if !strings.HasSuffix(e.vars["CODE_FUNC"], "systemd.TestJournalCore") {
		t.Errorf("CODE_FUNC=%q", e.vars["CODE_FUNC"])
	}
	valid := regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)
	for k := range e.vars {
		if !valid.MatchString(k) || k == "MESSAGE" || k == "PRIORITY" {
			t.Errorf("invalid journald field %q, or one journal.Send sets", k)
		}
	}
}

func TestJournalPriorities(t *testing.T) {
	tests := []struct {
		log  func(*zap.Logger)
		want journal.Priority
	}{
		{func(l *zap.Logger) { l.Debug("m") }, journal.PriDebug},
		{func(l *zap.Logger) { l.Info("m") }, journal.PriInfo},
		{func(l *zap.Logger) { l.Warn("m") }, journal.PriWarning},
		{func(l *zap.Logger) { l.Error("m") }, journal.PriErr},
		{func(l *zap.Logger) { l.DPanic("m") }, journal.PriCrit}, // not in development mode: no panic
		{func(l *zap.Logger) { defer func() { _ = recover() }(); l.Panic("m") }, journal.PriCrit},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		env, got := testLogEnv(&buf, false, false, true)
		l, _, err := newLogger("debug", "journal", env)
		if err != nil {
			t.Fatal(err)
		}
		tt.log(l)
		if len(*got) != 1 || (*got)[0].pri != tt.want {
			t.Errorf("sent %v, want one entry with priority %d", *got, tt.want)
		}
	}
	if p := journalPriority(zapcore.FatalLevel); p != journal.PriAlert {
		t.Errorf("fatal → %d, want %d (alert, not emerg)", p, journal.PriAlert)
	}
	// Below the level: nothing sent.
	var buf bytes.Buffer
	env, got := testLogEnv(&buf, false, false, true)
	l, _, _ := newLogger("warn", "journal", env)
	l.Info("m")
	if len(*got) != 0 {
		t.Errorf("info sent at level warn: %v", *got)
	}
}

func TestJournalFieldName(t *testing.T) {
	tests := map[string]string{
		"repairs":               "REPAIRS",
		"REPAIRS":               "REPAIRS",
		"dry-run":               "DRY_RUN",
		"http.status":           "HTTP_STATUS",
		"_trusted":              "TRUSTED",
		"__x":                   "X",
		"9lives":                "F_9LIVES",
		"":                      "FIELD",
		"___":                   "FIELD",
		"größe":                 "GR__E",
		"message":               "FIELD_MESSAGE",
		"priority":              "FIELD_PRIORITY",
		"syslog_identifier":     "FIELD_SYSLOG_IDENTIFIER",
		"code_line":             "FIELD_CODE_LINE",
		"message_id":            "MESSAGE_ID", // journald's own meaning, on purpose
		strings.Repeat("a", 70): strings.Repeat("A", 64),
	}
	for in, want := range tests {
		if got := journalFieldName(in); got != want {
			t.Errorf("journalFieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestJournalSendErrorReported(t *testing.T) {
	var buf bytes.Buffer
	env, _ := testLogEnv(&buf, false, false, true)
	env.journalSend = func(string, journal.Priority, map[string]string) error { return errors.New("journald gone") }
	l, _, err := newLogger("info", "journal", env)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("lost")
	if !strings.Contains(buf.String(), "journald gone") {
		t.Errorf("send error not reported on stderr: %q", buf.String())
	}
}
