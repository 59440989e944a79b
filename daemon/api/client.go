package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"mabd/host"
)

// Client talks to a running daemon's control API.
//
// It speaks HTTP/1.0 itself, one request per connection: the API is a
// handful of small JSON answers on a local socket, and doing so keeps
// net/http — and the TLS, HTTP/2 and proxy code it links — out of the host
// agent, whose start-up is measured against a Go hello-world (`make
// bench` row 0). The daemon serves it with net/http; the tests hold the
// two to each other.
type Client struct {
	// Socket is the daemon's unix socket; "" means Socket(): the user's
	// own daemon's when it runs, else the system daemon's.
	Socket string
}

// NewClient returns a client for the daemon listening on socket.
func NewClient(socket string) *Client {
	if socket == "" {
		socket = Socket()
	}
	return &Client{Socket: socket}
}

// Answers reports whether a daemon answers on the socket within timeout.
func (c *Client) Answers(ctx context.Context, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := c.do(ctx, "GET", "/healthz", nil)
	return err == nil
}

// Status returns GET /v1/status.
func (c *Client) Status(ctx context.Context) (*DaemonStatus, error) {
	var st DaemonStatus
	_, err := c.do(ctx, "GET", "/v1/status", &st)
	return &st, err
}

// StatusJSON returns GET /v1/status's answer as the daemon encoded it
// (compact JSON; `mabd status --json` prints it indented) and its health
// ("healthy" or "degraded"), the one field it decodes: a caller that
// passes the answer on need not decode and encode it again.
func (c *Client) StatusJSON(ctx context.Context) ([]byte, string, error) {
	var st struct {
		Health string `json:"health"`
	}
	body, _, err := c.doRaw(ctx, "GET", "/v1/status")
	if err == nil {
		err = c.decode(body, "GET", "/v1/status", &st)
	}
	if err == nil && st.Health == "" {
		err = fmt.Errorf("mabd daemon at %s: GET /v1/status: the answer has no health", c.Socket)
	}
	if err != nil {
		return nil, "", err
	}
	return body, st.Health, nil
}

// Verify runs POST /v1/verify.
func (c *Client) Verify(ctx context.Context) (*host.Verification, error) {
	var v host.Verification
	_, err := c.do(ctx, "POST", "/v1/verify", &v)
	return &v, err
}

// Reconcile runs POST /v1/reconcile.
func (c *Client) Reconcile(ctx context.Context) (*host.Reconciled, error) {
	var r host.Reconciled
	_, err := c.do(ctx, "POST", "/v1/reconcile", &r)
	return &r, err
}

// Fleet returns GET /v1/fleet, or with check POST /v1/fleet/check (every
// node checked now).
func (c *Client) Fleet(ctx context.Context, check bool) (*FleetInfo, error) {
	var fi FleetInfo
	method, path := "GET", "/v1/fleet"
	if check {
		method, path = "POST", "/v1/fleet/check"
	}
	_, err := c.do(ctx, method, path, &fi)
	return &fi, err
}

// Bounds of an answer: its status line and headers, and its body.
const (
	maxHeaderBytes = 64 << 10
	maxBodyBytes   = 16 << 20
)

// do sends a bodiless request and decodes a JSON answer into out (when
// not nil). A 503 of /healthz is an answer, not an error. ctx bounds the
// whole exchange.
func (c *Client) do(ctx context.Context, method, path string, out any) (int, error) {
	body, code, err := c.doRaw(ctx, method, path)
	if err == nil && out != nil {
		err = c.decode(body, method, path, out)
	}
	return code, err
}

// doRaw sends the request and returns the body of a successful answer.
func (c *Client) doRaw(ctx context.Context, method, path string) ([]byte, int, error) {
	resp, err := c.roundTrip(ctx, method, path)
	if err != nil {
		return nil, 0, fmt.Errorf("mabd daemon at %s: %s %s: %w", c.Socket, method, path, err)
	}
	if resp.Code != 200 && !(path == "/healthz" && resp.Code == 503) {
		var e struct{ Error string }
		_ = json.Unmarshal(resp.Body, &e)
		return nil, resp.Code, fmt.Errorf("mabd daemon at %s: %s %s: %s: %s", c.Socket, method, path, resp.Status, e.Error)
	}
	return resp.Body, resp.Code, nil
}

// decode reads the answer to method path into out.
func (c *Client) decode(body []byte, method, path string, out any) error {
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("mabd daemon at %s: %s %s: %w", c.Socket, method, path, err)
	}
	return nil
}

// roundTrip sends method path as an HTTP/1.0 request without a body on a
// new connection to the socket and reads the answer whole.
func (c *Client) roundTrip(ctx context.Context, method, path string) (*response, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// When ctx is done (its deadline included) the connection's reads and
	// writes fail at once, and ctx.Err() says why: it is set before
	// AfterFunc runs.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(conn, method+" "+path+" HTTP/1.0\r\nHost: mabd\r\nContent-Length: 0\r\n\r\n"); err != nil {
		return nil, ctxErr(ctx, err)
	}
	resp, err := readResponse(conn)
	return resp, ctxErr(ctx, err)
}

// ctxErr prefers the context's error to the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// response is an HTTP answer: its code, its status ("404 Not Found") and
// its body.
type response struct {
	Code   int
	Status string
	Body   []byte
}

// readResponse reads an HTTP/1.x answer from conn: the status line, the
// headers (at most maxHeaderBytes in all) and the body — Content-Length
// bytes when given, else up to the end of the connection — of at most
// maxBodyBytes. A chunked body, which an HTTP/1.0 request never gets, is
// an error.
func readResponse(conn io.Reader) (*response, error) {
	hr := bufio.NewReader(&io.LimitedReader{R: conn, N: maxHeaderBytes})
	line, err := readLine(hr)
	if err != nil {
		return nil, fmt.Errorf("read the status line: %w", err)
	}
	proto, status, _ := strings.Cut(line, " ")
	code, err := strconv.Atoi(strings.SplitN(status, " ", 2)[0])
	if !strings.HasPrefix(proto, "HTTP/1.") || err != nil || code < 100 || code > 999 {
		return nil, fmt.Errorf("not an HTTP answer: %q", quoteStart(line))
	}
	length := int64(-1)
	for {
		line, err := readLine(hr)
		if err != nil {
			return nil, fmt.Errorf("read the headers: %w", err)
		}
		if line == "" {
			break
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "content-length":
			if length, err = strconv.ParseInt(value, 10, 64); err != nil || length < 0 {
				return nil, fmt.Errorf("bad Content-Length %q", quoteStart(value))
			}
		case "transfer-encoding":
			if !strings.EqualFold(value, "identity") {
				return nil, fmt.Errorf("unexpected Transfer-Encoding %q", quoteStart(value))
			}
		}
	}
	if length > maxBodyBytes {
		return nil, fmt.Errorf("an answer of %d bytes, more than the %d one may have", length, maxBodyBytes)
	}
	// What hr buffered past the headers, then the rest of the connection.
	body := io.MultiReader(io.LimitReader(hr, int64(hr.Buffered())), conn)
	var b []byte
	if length >= 0 {
		b = make([]byte, length)
		_, err = io.ReadFull(body, b)
	} else {
		b, err = io.ReadAll(io.LimitReader(body, maxBodyBytes+1))
		if err == nil && len(b) > maxBodyBytes {
			err = fmt.Errorf("an answer of more than the %d bytes one may have", maxBodyBytes)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read the body: %w", err)
	}
	return &response{Code: code, Status: status, Body: b}, nil
}

// readLine reads a line ending in LF (CRLF accepted) without it.
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}

// quoteStart is the first 64 bytes of s, for an error message.
func quoteStart(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
