package manifest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// DefaultTimeout is how long a registry has to answer each request when
// [Options.Timeout] is zero.
const DefaultTimeout = 30 * time.Second

// TimeoutError is the error of a registry request that got no answer in
// time: the connection, the TLS handshake or the response headers did not
// come within the timeout, a manifest or token was not all there by then,
// or a blob stalled for that long. It is not retried.
type TimeoutError struct {
	// Host is the registry's host[:port].
	Host string
	// Timeout is the time it had.
	Timeout time.Duration
	// Request is the request: "GET https://host/v2/".
	Request string
	// Stage is what was awaited: "connecting", "in the TLS handshake",
	// "sending the request", "waiting for the response headers",
	// "reading the response body".
	Stage string
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("registry %s did not answer within %s: %s: %s", e.Host, e.Timeout, e.Request, e.Stage)
}

// Unwrap makes errors.Is(err, context.DeadlineExceeded) true.
func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

// timeout returns the timeout of registry requests.
func (opt Options) timeout() time.Duration {
	if opt.Timeout <= 0 {
		return DefaultTimeout
	}
	return opt.Timeout
}

// transport returns the HTTP transport to registries: go-containerregistry's
// default with every stage bounded by the timeout (connecting, the TLS
// handshake, the response headers), under a watchdog that bounds each
// request as a whole ([deadlineTransport]).
func (opt Options) transport() http.RoundTripper {
	d := opt.timeout()
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: d, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = d
	t.ResponseHeaderTimeout = d
	if opt.Insecure {
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{}
		}
		t.TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // asked for with --insecure
	}
	return &deadlineTransport{base: t, timeout: d}
}

// deadlineTransport gives each request timeout to get its answer: from the
// start of the request to the end of the response body for manifests,
// tokens and pings; for blobs (paths with /blobs/), whose size has no
// bound, the timeout starts again whenever bytes move, so a layer may take
// as long as it needs but may not stall.
type deadlineTransport struct {
	base    http.RoundTripper
	timeout time.Duration
}

func (t *deadlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watchdog{d: t.timeout, cancel: cancel, deadline: time.Now().Add(t.timeout),
		te: TimeoutError{Host: req.URL.Host, Timeout: t.timeout, Request: req.Method + " " + req.URL.Redacted(), Stage: "connecting"}}
	w.timer = time.AfterFunc(t.timeout, w.fire)
	r := req.WithContext(httptrace.WithClientTrace(ctx, w.trace()))
	blob := strings.Contains(req.URL.Path, "/blobs/")
	if blob && req.Body != nil && req.Body != http.NoBody {
		r.Body = &watchedBody{rc: req.Body, w: w, progress: true}
	}
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		if te := w.stop(); te != nil {
			return nil, te
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && req.Context().Err() == nil {
			// One of the transport's own timeouts (connect, TLS,
			// headers) came first; not the caller's deadline.
			return nil, w.timedOut()
		}
		return nil, err
	}
	w.setStage("reading the response body")
	resp.Body = &watchedBody{rc: resp.Body, w: w, progress: blob, response: true}
	return resp, nil
}

// watchdog cancels a request when its deadline passes.
type watchdog struct {
	d      time.Duration
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	timer    *time.Timer
	deadline time.Time
	te       TimeoutError
	fired    bool
	stopped  bool
}

// fire cancels the request, unless it made progress since the timer was
// set or is over.
func (w *watchdog) fire() {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	if left := time.Until(w.deadline); left > 0 {
		w.timer.Reset(left)
		w.mu.Unlock()
		return
	}
	w.fired = true
	te := w.te
	w.mu.Unlock()
	w.cancel(&te)
}

// progress moves the deadline: bytes moved.
func (w *watchdog) progress() {
	w.mu.Lock()
	w.deadline = time.Now().Add(w.d)
	w.mu.Unlock()
}

func (w *watchdog) setStage(s string) {
	w.mu.Lock()
	w.te.Stage = s
	w.mu.Unlock()
}

// timedOut returns the error of the request at its current stage.
func (w *watchdog) timedOut() *TimeoutError {
	w.mu.Lock()
	defer w.mu.Unlock()
	te := w.te
	return &te
}

// stop ends the watch and releases the request's context; it returns the
// timeout error if the deadline passed.
func (w *watchdog) stop() *TimeoutError {
	w.mu.Lock()
	w.stopped = true
	w.timer.Stop()
	fired, te := w.fired, w.te
	w.mu.Unlock()
	w.cancel(nil)
	if fired {
		return &te
	}
	return nil
}

// expired returns the timeout error if the deadline passed, else nil.
func (w *watchdog) expired() *TimeoutError {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.fired {
		return nil
	}
	te := w.te
	return &te
}

// trace follows the request's stages, for the error.
func (w *watchdog) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GetConn:           func(string) { w.setStage("connecting") },
		TLSHandshakeStart: func() { w.setStage("in the TLS handshake") },
		GotConn:           func(httptrace.GotConnInfo) { w.setStage("sending the request") },
		WroteRequest:      func(httptrace.WroteRequestInfo) { w.setStage("waiting for the response headers") },
	}
}

// watchedBody is a request or response body under a watchdog: its reads
// move the deadline when progress is set, and a read cut short by the
// deadline fails with the [TimeoutError]. Closing a response body (or
// reading it to its end) ends the watch.
type watchedBody struct {
	rc       io.ReadCloser
	w        *watchdog
	progress bool
	response bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 && b.progress {
		b.w.progress()
	}
	switch {
	case err == io.EOF && b.response:
		b.w.stop()
	case err != nil && err != io.EOF:
		if te := b.w.expired(); te != nil {
			return n, te
		}
	}
	return n, err
}

func (b *watchedBody) Close() error {
	err := b.rc.Close()
	if b.response {
		b.w.stop()
	}
	return err
}
