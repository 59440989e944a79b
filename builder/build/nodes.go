package build

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mabd/builder/fleet"
	"os"
	"strings"
	"sync"
	"time"

	controlapi "github.com/moby/buildkit/api/services/control"

	"github.com/moby/buildkit/client"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// The nodes of the build fleet, over BuildKit's gRPC: their checks, and
// how to reach them.

// ClientOpts are the BuildKit client options that reach node n: the
// mutual TLS of a tcp:// address.
func ClientOpts(n fleet.Node) []client.ClientOpt {
	var opts []client.ClientOpt
	if strings.HasPrefix(n.Address, "tcp://") && (n.CA != "" || n.Cert != "") {
		server := n.ServerName
		if server == "" {
			server = hostOf(n.Address)
		}
		opts = append(opts, client.WithServerConfig(server, n.CA), client.WithCredentials(n.Cert, n.Key))
	}
	return opts
}

// hostOf is the host of a tcp://host:port address.
func hostOf(addr string) string {
	h := strings.TrimPrefix(addr, "tcp://")
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	return strings.Trim(h, "[]")
}

// CheckNode asks node n for its workers and its running builds, within
// timeout.
func CheckNode(ctx context.Context, n fleet.Node, timeout time.Duration) fleet.State {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	c, err := client.New(ctx, n.Address, ClientOpts(n)...)
	if err != nil {
		return fleet.Down(n, err)
	}
	defer c.Close()
	ws, err := c.ListWorkers(ctx)
	latency := time.Since(start)
	switch {
	case err != nil:
		if terr := tlsError(ctx, n); terr != nil && !strings.Contains(err.Error(), terr.Error()) {
			err = fmt.Errorf("%w (%v)", err, terr)
		}
		return fleet.Down(n, err)
	case len(ws) == 0:
		return fleet.Down(n, errors.New("it reports no worker"))
	}
	var all []ocispecs.Platform
	for _, w := range ws {
		all = append(all, w.Platforms...)
	}
	active, err := ActiveBuilds(ctx, c)
	if err != nil {
		active = 0 // a node without build history still builds
	}
	return fleet.Up(n, all, latency, active)
}

// tlsError says why a node over TCP with TLS refuses mabd, when TLS is
// why: the handshake's error, or the alert the node sends after it (with
// TLS 1.3 a node that refuses the client's certificate says so only
// then, and gRPC reports the broken connection instead). nil when the
// node is not over TLS, or its TLS is fine.
func tlsError(ctx context.Context, n fleet.Node) error {
	if !strings.HasPrefix(n.Address, "tcp://") || n.CA == "" {
		return nil
	}
	cfg := &tls.Config{ServerName: n.ServerName, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
	if cfg.ServerName == "" {
		cfg.ServerName = hostOf(n.Address)
	}
	ca, err := os.ReadFile(n.CA)
	if err != nil {
		return err
	}
	cfg.RootCAs = x509.NewCertPool()
	if !cfg.RootCAs.AppendCertsFromPEM(ca) {
		return fmt.Errorf("%s holds no PEM certificate", n.CA)
	}
	if n.Cert != "" {
		cert, err := tls.LoadX509KeyPair(n.Cert, n.Key)
		if err != nil {
			return err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(n.Address, "tcp://"))
	if err != nil {
		if strings.Contains(err.Error(), "tls:") || strings.Contains(err.Error(), "x509:") {
			return err
		}
		return nil // not TLS's doing
	}
	defer conn.Close()
	// A node that refuses the certificate sends its alert now; one that
	// took it waits for the HTTP/2 preface.
	conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Read(make([]byte, 1)); err != nil && strings.Contains(err.Error(), "tls:") {
		return err
	}
	return nil
}

// CheckNodes checks every node, concurrently, each within timeout, and
// returns the states in the order of the nodes.
func CheckNodes(ctx context.Context, nodes []fleet.Node, timeout time.Duration) []fleet.State {
	out := make([]fleet.State, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { out[i] = CheckNode(ctx, n, timeout) })
	}
	wg.Wait()
	return out
}

// ActiveBuilds counts the builds the buildkitd c talks to is running, from
// its build history.
func ActiveBuilds(ctx context.Context, c *client.Client) (int, error) {
	stream, err := c.ControlClient().ListenBuildHistory(ctx, &controlapi.BuildHistoryRequest{ActiveOnly: true, EarlyExit: true})
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil // the list is complete
		}
		if err != nil {
			return 0, err
		}
		if ev.Type == controlapi.BuildHistoryEventType_STARTED {
			n++
		}
	}
}
