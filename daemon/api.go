package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"mabd/host"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The control API, HTTP+JSON on a unix socket:
//
//	GET  /v1/status     the object of `mabd status --json`, plus "daemon"
//	POST /v1/verify     run the probes now; the object of `mabd verify --json`
//	POST /v1/reconcile  reconcile now; what was repaired
//	GET  /v1/fleet      the BuildKit nodes, their last checks, the routes
//	POST /v1/fleet/check  check every node now; then as GET /v1/fleet
//	GET  /healthz       200 healthy, 503 degraded
//	GET  /metrics       Prometheus text format

// Limits of the control API. A request must send its headers within
// readHeaderTimeout; bodies are not read (every request is bodiless).
const (
	readHeaderTimeout = 5 * time.Second
	maxHeaderBytes    = 16 << 10
	handlerTimeout    = 2 * time.Minute
)

func (d *Daemon) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", d.whenReady(func(w http.ResponseWriter, r *http.Request) {
		body, err := d.statusBody(r.Context())
		if err != nil {
			reply(w, nil, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	mux.HandleFunc("POST /v1/verify", d.whenReady(func(w http.ResponseWriter, r *http.Request) {
		v, err := d.VerifyNow(r.Context())
		reply(w, v, err)
	}))
	mux.HandleFunc("POST /v1/reconcile", d.whenReady(func(w http.ResponseWriter, r *http.Request) {
		rec, err := d.ReconcileNow(r.Context())
		reply(w, rec, err)
	}))
	mux.HandleFunc("GET /v1/fleet", d.whenReady(func(w http.ResponseWriter, r *http.Request) {
		reply(w, d.Fleet(r.Context(), false), nil)
	}))
	mux.HandleFunc("POST /v1/fleet/check", d.whenReady(func(w http.ResponseWriter, r *http.Request) {
		reply(w, d.Fleet(r.Context(), true), nil)
	}))
	mux.HandleFunc("GET /healthz", d.whenReady(func(w http.ResponseWriter, r *http.Request) {
		st, err := d.Status(r.Context())
		if err != nil {
			reply(w, nil, err)
			return
		}
		code := http.StatusOK
		if !st.Healthy() {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"health": st.Health, "problems": st.Problems})
	}))
	mux.Handle("GET /metrics", d.metricsHandler())
	return http.TimeoutHandler(limitBody(mux), handlerTimeout, `{"error":"timed out"}`)
}

// statusBody is GET /v1/status's answer, encoded at most once per
// statusTTL while the host's status holds (a burst of clients costs one
// encoding) and anew once the daemon changed something (dropStatus). It
// is compact — a third fewer bytes for every client to read and parse
// than indented; `mabd status --json` indents it for people.
func (d *Daemon) statusBody(ctx context.Context) ([]byte, error) {
	c := &d.body
	c.mu.Lock()
	defer c.mu.Unlock()
	gen := d.status.generation()
	if c.body != nil && c.gen == gen && time.Since(c.at) < statusTTL {
		return c.body, nil
	}
	st, err := d.Status(ctx)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	if err := enc.Encode(st); err != nil {
		return nil, err
	}
	c.body, c.at, c.gen = b.Bytes(), time.Now(), gen
	return c.body, nil
}

// bodyCache holds the encoded answer of GET /v1/status.
type bodyCache struct {
	mu   sync.Mutex
	body []byte
	at   time.Time
	gen  uint64 // the status cache's generation it was made in
}

// whenReady holds a request until the daemon is ready (registered,
// verified, BuildKit started): under socket activation the first request
// arrives while the daemon starts, and it gets the answer of a started
// daemon rather than a 503. Metrics are not held.
func (d *Daemon) whenReady(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-d.ready:
			h(w, r)
		case <-r.Context().Done():
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the daemon is still starting"})
		}
	}
}

// metricsHandler serves the Prometheus metrics; alone, it is what the
// optional TCP metrics address serves.
func (d *Daemon) metricsHandler() http.Handler {
	return promhttp.HandlerFor(d.metrics.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// limitBody refuses requests that carry a body: no endpoint takes one.
func limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != http.NoBody && r.Method != http.MethodGet) {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "request bodies are not accepted"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		code := http.StatusInternalServerError
		var in *host.InputError
		if errors.As(err, &in) {
			code = http.StatusBadRequest
		}
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// serve runs the control API on l until ctx ends.
func (d *Daemon) serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readHeaderTimeout,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          nil,
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
