package builder

import (
	"strings"
	"sync"

	"go.uber.org/zap"
)

// tailWriter receives buildkitd's output: it logs each line (at debug
// level, warnings and errors at warn) and keeps the last few.
type tailWriter struct {
	mu      sync.Mutex
	log     *zap.Logger
	partial []byte
	lines   []string
	max     int
}

func newTailWriter(log *zap.Logger, max int) *tailWriter {
	if log == nil {
		log = zap.NewNop()
	}
	return &tailWriter{log: log, max: max}
}

func (w *tailWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, b...)
	for {
		i := strings.IndexByte(string(w.partial), '\n')
		if i < 0 {
			break
		}
		w.line(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 64*1024 { // a line without end: take it as is
		w.line(string(w.partial))
		w.partial = nil
	}
	return len(b), nil
}

func (w *tailWriter) line(l string) {
	l = strings.TrimRight(l, "\r")
	if strings.TrimSpace(l) == "" {
		return
	}
	if strings.Contains(l, "level=error") || strings.Contains(l, "level=fatal") || strings.Contains(l, "level=warning") || strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "buildkitd:") {
		w.log.Warn(l, zap.String("from", "buildkitd"))
	} else {
		w.log.Debug(l, zap.String("from", "buildkitd"))
	}
	w.lines = append(w.lines, l)
	if len(w.lines) > w.max {
		w.lines = w.lines[len(w.lines)-w.max:]
	}
}

// last returns the last line that looks like an error, or else the last
// line.
func (w *tailWriter) last() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.lines) - 1; i >= 0; i-- {
		l := w.lines[i]
		if strings.Contains(l, "level=fatal") || strings.Contains(l, "level=error") || strings.HasPrefix(l, "buildkitd:") || strings.HasPrefix(l, "panic:") {
			return l
		}
	}
	if len(w.lines) > 0 {
		return w.lines[len(w.lines)-1]
	}
	return ""
}

// Lines returns the lines kept.
func (w *tailWriter) Lines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.lines...)
}
