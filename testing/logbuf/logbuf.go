// Package logbuf is a buffer that several goroutines may write to at once
// and read while they write: the stdout and stderr of a daemon a test
// started, copied by os/exec's goroutines while the test reads them.
package logbuf

import (
	"bytes"
	"sync"
)

// Buffer collects output; its zero value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
