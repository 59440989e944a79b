package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serve runs a net/http server — what the daemon serves the API with —
// on a unix socket of the test's own.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "mabd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// TestClientAgainstNetHTTP: the client's HTTP/1.0 against net/http's
// server: small and large answers, the codes that are answers and those
// that are errors, the bound on a body, and a context that ends.
func TestClientAgainstNetHTTP(t *testing.T) {
	large := strings.Repeat("x", 1<<20) // written in pieces: no Content-Length
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/fleet", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"nodes":[{"name":"local","address":"unix:///run/mabd/buildkitd.sock","local":true}],"check_interval_seconds":15}`)
	})
	mux.HandleFunc("POST /v1/fleet/check", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"nodes":[{"name":"`))
		for i := 0; i < len(large); i += 4096 {
			w.Write([]byte(large[i : i+4096]))
		}
		w.Write([]byte(`"}]}`))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "degraded", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("POST /v1/verify", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusConflict)
		fmt.Fprint(w, `{"error":"a verification runs already"}`)
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte(" "), 1<<20)
		for range 17 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("POST /v1/reconcile", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	c := NewClient(serve(t, mux))
	ctx := context.Background()

	fi, err := c.Fleet(ctx, false)
	if err != nil || len(fi.Nodes) != 1 || fi.Nodes[0].Name != "local" || !fi.Nodes[0].Local || fi.CheckIntervalSeconds != 15 {
		t.Fatalf("Fleet = %+v, %v", fi, err)
	}
	if fi, err = c.Fleet(ctx, true); err != nil || len(fi.Nodes) != 1 || fi.Nodes[0].Name != large {
		t.Fatalf("Fleet(check) with a 1 MiB answer: %d nodes, %v", len(fi.Nodes), err)
	}
	if !c.Answers(ctx, 5*time.Second) {
		t.Fatal("Answers = false for a 503 of /healthz; want true: a degraded daemon answers")
	}
	if _, err := c.Verify(ctx); err == nil || !strings.Contains(err.Error(), "409 Conflict: a verification runs already") {
		t.Fatalf("Verify = %v; want the 409 with the daemon's message", err)
	}
	if _, err := c.Status(ctx); err == nil || !strings.Contains(err.Error(), "more than the 16777216 bytes") {
		t.Fatalf("Status of a 17 MiB answer = %v; want it refused", err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := c.Reconcile(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Reconcile against a daemon that never answers = %v; want the context's deadline", err)
	}
	if NewClient(filepath.Join(t.TempDir(), "none.sock")).Answers(ctx, time.Second) {
		t.Fatal("Answers = true with no daemon")
	}
}

// TestReadResponse: what the parser accepts and refuses.
func TestReadResponse(t *testing.T) {
	tests := []struct {
		name, in string
		code     int
		body     string
		says     string // an error containing this
	}{
		{name: "content-length", in: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", code: 200, body: "{}"},
		{name: "to the end", in: "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\ndegraded\n", code: 503, body: "degraded\n"},
		{name: "LF only", in: "HTTP/1.0 404 Not Found\nContent-Length: 0\n\n", code: 404},
		{name: "extra after the length", in: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n{}", code: 200, body: "{"},
		{name: "empty", in: "", says: "read the status line"},
		{name: "not HTTP", in: "SSH-2.0-OpenSSH_9.2\r\n", says: "not an HTTP answer"},
		{name: "bad code", in: "HTTP/1.0 abc OK\r\n\r\n", says: "not an HTTP answer"},
		{name: "headers cut", in: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n", says: "read the headers"},
		{name: "body cut", in: "HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\n{}", says: "read the body"},
		{name: "negative length", in: "HTTP/1.0 200 OK\r\nContent-Length: -1\r\n\r\n", says: "bad Content-Length"},
		{name: "huge length", in: "HTTP/1.0 200 OK\r\nContent-Length: 99999999999\r\n\r\n", says: "more than the"},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", says: "Transfer-Encoding"},
		{name: "endless headers", in: "HTTP/1.0 200 OK\r\n" + strings.Repeat("X-A: b\r\n", 20000), says: "read the headers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := readResponse(strings.NewReader(tt.in))
			if tt.says != "" {
				if err == nil || !strings.Contains(err.Error(), tt.says) {
					t.Fatalf("readResponse = %+v, %v; want an error saying %q", r, err, tt.says)
				}
				return
			}
			if err != nil || r.Code != tt.code || string(r.Body) != tt.body {
				t.Fatalf("readResponse = %+v, %v; want %d %q", r, err, tt.code, tt.body)
			}
		})
	}
}

// FuzzReadResponse: any bytes from the socket give an answer within the
// bounds or an error, never a panic.
func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}"))
	f.Add([]byte("HTTP/1.1 503 Service Unavailable\r\n\r\ndegraded"))
	f.Add([]byte("HTTP/1.0 200 OK\r\nTransfer-Encoding: identity\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := readResponse(bytes.NewReader(b))
		if err == nil && (len(r.Body) > maxBodyBytes || len(r.Body) > len(b) || r.Code < 100 || r.Code > 999) {
			t.Fatalf("readResponse = code %d, %d bytes of body from %d bytes", r.Code, len(r.Body), len(b))
		}
	})
}

// TestStatusJSON: the answer comes back byte for byte with its health;
// an answer that is not a status is an error.
func TestStatusJSON(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		health     string // "": an error is wanted
		says       string
	}{
		{"healthy", "{\n  \"health\": \"healthy\",\n  \"handlers\": []\n}\n", "healthy", ""},
		{"degraded", `{"source":"daemon","health":"degraded","problems":["x"]}`, "degraded", ""},
		{"no health", `{"source":"daemon"}`, "", "the answer has no health"},
		{"not json", `<html>`, "", "invalid character"},
		{"health not a string", `{"health":1}`, "", "cannot unmarshal number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mux := http.NewServeMux()
			mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, tc.body) })
			body, health, err := NewClient(serve(t, mux)).StatusJSON(context.Background())
			if tc.health == "" {
				if err == nil || !strings.Contains(err.Error(), tc.says) || body != nil {
					t.Fatalf("StatusJSON = %q, %v; want an error that says %q", body, err, tc.says)
				}
				return
			}
			if err != nil || string(body) != tc.body || health != tc.health {
				t.Fatalf("StatusJSON = %q, %q, %v; want the body as served and health %s", body, health, err, tc.health)
			}
		})
	}
}
