package systemd

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

// SyslogIdentifier is the SYSLOG_IDENTIFIER of mabd's journal entries
// (`journalctl -t mabd`).
const SyslogIdentifier = "mabd"

// NewLogger returns mabd's logger, writing entries at level or above.
//
// level is debug, info, warn or error ("" means info). format is one of
//
//   - auto (or ""): journal when stderr is connected to the journal
//     (JOURNAL_STREAM, which systemd sets for StandardError=journal, names
//     stderr's device and inode), else console when stderr is a terminal,
//     else json;
//   - console: human-readable lines, without colours, on stderr;
//   - json: one JSON object per line on stderr (keys ts, level, logger,
//     caller, msg, stacktrace, then the fields);
//   - journal: native journald entries (see below), or json on stderr if
//     journald's socket does not answer, in which case the first entry
//     says so.
//
// A journal entry has MESSAGE, PRIORITY (debug 7, info 6, warn 4, error 3,
// dpanic and panic 2, fatal 1), SYSLOG_IDENTIFIER=mabd, CODE_FILE,
// CODE_LINE and CODE_FUNC of the caller, LOGGER (the zap logger's name, if
// any), STACKTRACE (if any), and every zap field as a journald field: its
// key upper-cased with every character other than A-Z, 0-9 and _ made _
// (leading _ dropped, a leading digit prefixed with F_, at most 64
// characters), so zap.Int("repairs", 3) is REPAIRS=3 and
// `journalctl REPAIRS=3` finds it. Strings, numbers, booleans, durations
// and errors are their usual text; times are RFC 3339; objects and arrays
// are JSON. A field whose name would be one of those mabd sets (MESSAGE,
// PRIORITY, CODE_FILE, …) is prefixed with FIELD_.
func NewLogger(level, format string) (*zap.Logger, error) {
	l, _, err := newLogger(level, format, defaultLogEnv())
	return l, err
}

// logEnv is what NewLogger looks at and writes to; tests replace it.
type logEnv struct {
	stderr         zapcore.WriteSyncer
	journalStream  func() bool // stderr is connected to the journal
	terminal       func() bool // stderr is a terminal
	journalEnabled func() bool // journald's socket answers
	journalSend    sendFunc
}

func defaultLogEnv() logEnv {
	return logEnv{
		stderr:         zapcore.Lock(os.Stderr),
		journalStream:  stderrIsJournalStream,
		terminal:       func() bool { return isTerminal(2) },
		journalEnabled: journal.Enabled,
		journalSend:    journal.Send,
	}
}

// newLogger is NewLogger in env; it also returns the format it chose
// (console, json or journal; json when journal fell back).
func newLogger(level, format string, env logEnv) (*zap.Logger, string, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, "", err
	}
	switch format {
	case "", "auto":
		format = detectFormat(env)
	case "console", "json", "journal":
	default:
		return nil, "", fmt.Errorf("log format %q: want auto, console, json or journal", format)
	}
	fellBack := false
	if format == "journal" && !env.journalEnabled() {
		format, fellBack = "json", true
	}
	var core zapcore.Core
	switch format {
	case "journal":
		core = newJournalCore(lvl, env.journalSend)
	case "console":
		core = zapcore.NewCore(zapcore.NewConsoleEncoder(consoleEncoderConfig()), env.stderr, lvl)
	default:
		core = zapcore.NewCore(zapcore.NewJSONEncoder(jsonEncoderConfig()), env.stderr, lvl)
	}
	l := zap.New(core,
		zap.AddCaller(),
		zap.AddStacktrace(zapcore.DPanicLevel),
		zap.ErrorOutput(env.stderr),
	)
	if fellBack {
		l.WithOptions(zap.WithCaller(false)).Warn("journald is not reachable (" + journalSocketPath + "); logging JSON to stderr")
	}
	return l, format, nil
}

// journalSocketPath is where go-systemd's journal package sends entries.
const journalSocketPath = "/run/systemd/journal/socket"

// parseLevel accepts debug, info, warn and error.
func parseLevel(level string) (zapcore.Level, error) {
	switch level {
	case "debug":
		return zapcore.DebugLevel, nil
	case "", "info":
		return zapcore.InfoLevel, nil
	case "warn":
		return zapcore.WarnLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	return 0, fmt.Errorf("log level %q: want debug, info, warn or error", level)
}

// detectFormat is what auto means in env.
func detectFormat(env logEnv) string {
	switch {
	case env.journalStream():
		return "journal"
	case env.terminal():
		return "console"
	default:
		return "json"
	}
}

// stderrIsJournalStream reports whether JOURNAL_STREAM names stderr's
// device and inode ("dev:ino", decimal), as systemd sets it for a service
// whose stderr goes to the journal. A malformed JOURNAL_STREAM is false.
func stderrIsJournalStream() bool {
	ok, err := journal.StderrIsJournalStream()
	return err == nil && ok
}

// isTerminal reports whether fd is a terminal.
func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

func jsonEncoderConfig() zapcore.EncoderConfig {
	return zapcore.EncoderConfig{
		TimeKey:        "ts",
		LevelKey:       "level",
		NameKey:        "logger",
		CallerKey:      "caller",
		FunctionKey:    zapcore.OmitKey,
		MessageKey:     "msg",
		StacktraceKey:  "stacktrace",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     zapcore.RFC3339NanoTimeEncoder,
		EncodeDuration: zapcore.StringDurationEncoder,
		EncodeCaller:   zapcore.ShortCallerEncoder,
	}
}

func consoleEncoderConfig() zapcore.EncoderConfig {
	c := jsonEncoderConfig()
	c.EncodeLevel = zapcore.CapitalLevelEncoder // no colours
	c.EncodeTime = zapcore.TimeEncoderOfLayout("2006-01-02T15:04:05.000Z0700")
	return c
}

// sendFunc is journal.Send.
type sendFunc func(message string, priority journal.Priority, vars map[string]string) error

// journalCore is a zapcore.Core that writes native journald entries.
type journalCore struct {
	zapcore.LevelEnabler
	send   sendFunc
	fields map[string]string // from With, already journald fields
}

func newJournalCore(enab zapcore.LevelEnabler, send sendFunc) *journalCore {
	return &journalCore{LevelEnabler: enab, send: send, fields: map[string]string{}}
}

// With returns a core that adds fields to every entry.
func (c *journalCore) With(fields []zapcore.Field) zapcore.Core {
	clone := &journalCore{LevelEnabler: c.LevelEnabler, send: c.send, fields: maps.Clone(c.fields)}
	addJournalFields(clone.fields, fields)
	return clone
}

// Check adds c to ce if the entry's level is enabled.
func (c *journalCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

// Write sends the entry to journald.
func (c *journalCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	vars := make(map[string]string, len(c.fields)+len(fields)+6)
	maps.Copy(vars, c.fields)
	addJournalFields(vars, fields)
	vars["SYSLOG_IDENTIFIER"] = SyslogIdentifier
	if e.LoggerName != "" {
		vars["LOGGER"] = e.LoggerName
	}
	if e.Caller.Defined {
		vars["CODE_FILE"] = e.Caller.File
		vars["CODE_LINE"] = strconv.Itoa(e.Caller.Line)
		if e.Caller.Function != "" {
			vars["CODE_FUNC"] = e.Caller.Function
		}
	}
	if e.Stack != "" {
		vars["STACKTRACE"] = e.Stack
	}
	return c.send(e.Message, journalPriority(e.Level), vars)
}

// Sync does nothing: every entry is a datagram of its own.
func (c *journalCore) Sync() error { return nil }

// reservedJournalFields are set by journalCore (or journal.Send) and so
// not available to zap fields.
var reservedJournalFields = map[string]bool{
	"MESSAGE": true, "PRIORITY": true, "SYSLOG_IDENTIFIER": true, "LOGGER": true,
	"CODE_FILE": true, "CODE_LINE": true, "CODE_FUNC": true, "STACKTRACE": true,
}

// addJournalFields encodes fields into vars as journald fields.
func addJournalFields(vars map[string]string, fields []zapcore.Field) {
	if len(fields) == 0 {
		return
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	for k, v := range enc.Fields {
		vars[journalFieldName(k)] = journalValue(v)
	}
}

// journalFieldName turns a zap key into a valid journald field name: A-Z,
// 0-9 and _, not starting with _ (journald's trusted fields) or a digit,
// at most 64 characters, and not one of the names mabd sets itself.
func journalFieldName(key string) string {
	b := make([]byte, 0, len(key))
	for _, r := range key {
		switch {
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b = append(b, byte(r))
		case r >= 'a' && r <= 'z':
			b = append(b, byte(r-'a'+'A'))
		default:
			b = append(b, '_')
		}
	}
	name := strings.TrimLeft(string(b), "_")
	switch {
	case name == "":
		name = "FIELD"
	case name[0] >= '0' && name[0] <= '9':
		name = "F_" + name
	case reservedJournalFields[name]:
		name = "FIELD_" + name
	}
	if len(name) > 64 {
		name = name[:64]
	}
	return name
}

// journalValue is the text of a value as zapcore.MapObjectEncoder holds
// it.
func journalValue(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case time.Time:
		return v.Format(time.RFC3339Nano)
	case time.Duration:
		return v.String()
	case error:
		return v.Error()
	case fmt.Stringer:
		return v.String()
	case bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, uintptr, float32, float64, complex64, complex128:
		return fmt.Sprint(v)
	}
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return fmt.Sprint(v)
}

// journalPriority maps a zap level to a syslog priority. Fatal is alert,
// not emerg: journald broadcasts emerg to every terminal.
func journalPriority(l zapcore.Level) journal.Priority {
	switch {
	case l <= zapcore.DebugLevel:
		return journal.PriDebug
	case l == zapcore.InfoLevel:
		return journal.PriInfo
	case l == zapcore.WarnLevel:
		return journal.PriWarning
	case l == zapcore.ErrorLevel:
		return journal.PriErr
	case l == zapcore.DPanicLevel, l == zapcore.PanicLevel:
		return journal.PriCrit
	default:
		return journal.PriAlert
	}
}
