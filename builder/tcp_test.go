package builder_test

import (
	"context"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/moby/buildkit/client"

	"mabd/builder"
	"mabd/builder/buildertest"
)

// TestTCPMutualTLS: with a TCP address, buildkitd answers a client with a
// certificate of the CA and refuses one without; the unix socket gets the
// mode and group asked for.
func TestTCPMutualTLS(t *testing.T) {
	dir := buildertest.Dir(t)
	pki := filepath.Join(dir, "pki")
	if err := os.Mkdir(pki, 0o700); err != nil {
		t.Fatal(err)
	}
	ca, caKey := buildertest.WriteCert(t, pki, "ca", true, nil, nil)
	buildertest.WriteCert(t, pki, "server", false, ca, caKey)
	buildertest.WriteCert(t, pki, "client", false, ca, caKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp := l.Addr().String()
	l.Close()

	o := buildertest.Options(t, dir, "linux/amd64")
	o.TCPAddress = tcp
	o.TLSCert, o.TLSKey, o.TLSCA = filepath.Join(pki, "server.pem"), filepath.Join(pki, "server-key.pem"), filepath.Join(pki, "ca.pem")
	o.SocketMode, o.SocketGroup = 0o600, "daemon"
	s := builder.NewSupervisor(o)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Stop(ctx); err != nil {
			t.Error(err)
		}
	}()

	gr, err := user.LookupGroup("daemon")
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(o.Socket, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o777 != 0o600 || strconv.Itoa(int(st.Gid)) != gr.Gid {
		t.Errorf("socket mode %o group %d, want 600 and daemon (%s)", st.Mode&0o777, st.Gid, gr.Gid)
	}

	list := func(opts ...client.ClientOpt) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := client.New(ctx, "tcp://"+tcp, opts...)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.ListWorkers(ctx)
		return err
	}
	server := client.WithServerConfig("127.0.0.1", filepath.Join(pki, "ca.pem"))
	if err := list(server, client.WithCredentials(filepath.Join(pki, "client.pem"), filepath.Join(pki, "client-key.pem"))); err != nil {
		t.Errorf("client with a certificate of the CA: %v", err)
	}
	if err := list(server); err == nil {
		t.Error("a client without a certificate was answered")
	}
}
