package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mabd/host"
	"net"
	"net/http"
	"time"
)

// Client talks to a running daemon's control API.
type Client struct {
	// Socket is the daemon's unix socket; "" means Socket(): the user's
	// own daemon's when it runs, else the system daemon's.
	Socket string
	http   *http.Client
}

// NewClient returns a client for the daemon listening on socket.
func NewClient(socket string) *Client {
	if socket == "" {
		socket = Socket()
	}
	return &Client{Socket: socket, http: &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
			MaxIdleConnsPerHost: 4,
		},
	}}
}

// Answers reports whether a daemon answers on the socket within timeout.
func (c *Client) Answers(ctx context.Context, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := c.do(ctx, http.MethodGet, "/healthz", nil)
	return err == nil
}

// host.Status returns GET /v1/status.
func (c *Client) Status(ctx context.Context) (*DaemonStatus, error) {
	var st DaemonStatus
	_, err := c.do(ctx, http.MethodGet, "/v1/status", &st)
	return &st, err
}

// Verify runs POST /v1/verify.
func (c *Client) Verify(ctx context.Context) (*host.Verification, error) {
	var v host.Verification
	_, err := c.do(ctx, http.MethodPost, "/v1/verify", &v)
	return &v, err
}

// host.Reconcile runs POST /v1/reconcile.
func (c *Client) Reconcile(ctx context.Context) (*host.Reconciled, error) {
	var r host.Reconciled
	_, err := c.do(ctx, http.MethodPost, "/v1/reconcile", &r)
	return &r, err
}

// Fleet returns GET /v1/fleet, or with check POST /v1/fleet/check (every
// node checked now).
func (c *Client) Fleet(ctx context.Context, check bool) (*FleetInfo, error) {
	var fi FleetInfo
	method, path := http.MethodGet, "/v1/fleet"
	if check {
		method, path = http.MethodPost, "/v1/fleet/check"
	}
	_, err := c.do(ctx, method, path, &fi)
	return &fi, err
}

// do sends a bodiless request and decodes a JSON answer into out. A 503 of
// /healthz is an answer, not an error.
func (c *Client) do(ctx context.Context, method, path string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://mabd"+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("mabd daemon at %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("mabd daemon at %s: %s %s: %w", c.Socket, method, path, err)
	}
	if resp.StatusCode != http.StatusOK && !(path == "/healthz" && resp.StatusCode == http.StatusServiceUnavailable) {
		var e struct{ Error string }
		_ = json.Unmarshal(b, &e)
		return resp.StatusCode, fmt.Errorf("mabd daemon at %s: %s %s: %s: %s", c.Socket, method, path, resp.Status, e.Error)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("mabd daemon at %s: %s %s: %w", c.Socket, method, path, err)
		}
	}
	return resp.StatusCode, nil
}
