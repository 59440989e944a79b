package registry

import (
	"net"
	"sync"
	"testing"
)

// Silent listens on 127.0.0.1, accepts connections and never answers: a
// registry host that hangs. It returns its address ("127.0.0.1:PORT"); the
// listener and every connection it accepted are closed when the test ends.
func Silent(t testing.TB) (addr string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	var mu sync.Mutex
	var conns []net.Conn // held open, never written to
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}
