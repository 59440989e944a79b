// Package buildertest starts real buildkitd supervisors for tests: the
// binaries `make deps` builds into bin/ and a state directory that
// overlayfs works on.
//
// The supervisors use private emulation: buildkitd runs in a user and
// mount namespace of its own whose binfmt_misc instance holds the handlers
// of the foreign platforms asked for, with Debian's static emulators. The
// host's table is neither read nor changed, whatever it holds. A test
// binary that imports this package gets the builder's agent hook
// ([builder.MaybeRunAgent]) from its init function.
package buildertest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"mabd/builder"
	"mabd/testing/fixtures"
)

// Bin returns the path of bin/<name> (buildkitd, buildctl) at the
// repository root, failing the test when it is missing.
func Bin(t testing.TB, name string) string {
	t.Helper()
	root, err := fixtures.Root()
	if err != nil {
		t.Fatalf("buildertest: %v", err)
	}
	p := filepath.Join(root, "bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("buildertest: %s missing: run `make deps` (scripts/buildkit-deps.sh builds it from go.mod's tool directive)", p)
	}
	return p
}

// Dir returns a new, short directory for a builder's state, removed when
// the test ends: under /var/tmp when /tmp is a tmpfs (overlayfs's upper
// layer and the builder's cache want a real disk), else under the default
// temporary directory.
func Dir(t testing.TB) string {
	t.Helper()
	base := os.TempDir()
	var st unix.Statfs_t
	if unix.Statfs(base, &st) == nil && st.Type == unix.TMPFS_MAGIC {
		base = "/var/tmp"
	}
	dir, err := os.MkdirTemp(base, "mabd-bk-")
	if err != nil {
		t.Fatalf("buildertest: %v", err)
	}
	t.Cleanup(func() {
		if ms, _ := builder.MountsUnder(dir); len(ms) > 0 {
			t.Errorf("buildertest: still mounted under %s: %v", dir, ms)
			return // never remove through a mount
		}
		os.RemoveAll(dir)
	})
	return dir
}

func init() { builder.MaybeRunAgent() }

// Options returns supervisor options for a test: bin/buildkitd, state in
// dir, the socket at dir/bk.sock, private emulation of the given platforms
// (their handlers made from Debian's static emulators), a 1 GB cache and
// the supervisor's log (info and above) in the test's log.
func Options(t testing.TB, dir string, platforms ...string) builder.Options {
	return builder.Options{
		Binary:      Bin(t, "buildkitd"),
		Root:        filepath.Join(dir, "root"),
		Socket:      filepath.Join(dir, "bk.sock"),
		Platforms:   platforms,
		KeepStorage: 1e9,
		StopTimeout: 10 * time.Second,
		Logger:      zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)),
	}
}

// Start starts a supervisor with [Options] in a new [Dir] and stops it
// when the test ends, failing the test if Stop fails (a mount or the
// socket left behind). Foreign platforms among platforms are emulated in
// the builder's private binfmt_misc instance.
func Start(t testing.TB, platforms ...string) *builder.Supervisor {
	t.Helper()
	s := builder.NewSupervisor(Options(t, Dir(t), platforms...))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("buildertest: start buildkitd: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("buildertest: stop buildkitd: %v", err)
		}
	})
	return s
}

// WriteCert signs a certificate for name (and 127.0.0.1) with parent (self
// when nil) and writes name.pem and name-key.pem into dir.
func WriteCert(t testing.TB, dir, name string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	cert, key, err := NewCert(dir, name, isCA, parent, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// NewCert is [WriteCert] without a test: it signs a certificate for name
// (and 127.0.0.1), valid for an hour, with parent (self when nil) and
// writes name.pem and name-key.pem (mode 0600) into dir.
func NewCert(dir, name string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		IsCA:                  isCA,
		BasicConstraintsValid: true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// PKI is the files of a node's mutual TLS that [MakePKI] makes: a CA, and
// a server's and a client's certificate and key, both signed by it and
// valid for 127.0.0.1.
type PKI struct {
	// Dir holds the files.
	Dir string
	// CA is the CA's certificate (ca.pem; its key is ca-key.pem).
	CA string
	// ServerCert and ServerKey are the server's (server.pem,
	// server-key.pem), ClientCert and ClientKey the client's (client.pem,
	// client-key.pem).
	ServerCert, ServerKey string
	ClientCert, ClientKey string
}

// MakePKI makes a CA and a server's and a client's certificate signed by
// it ([NewCert]: valid for an hour, for 127.0.0.1) in dir, which must
// exist. It needs no test: the bench uses it too.
func MakePKI(dir string) (PKI, error) {
	ca, caKey, err := NewCert(dir, "ca", true, nil, nil)
	if err != nil {
		return PKI{}, err
	}
	for _, name := range []string{"server", "client"} {
		if _, _, err := NewCert(dir, name, false, ca, caKey); err != nil {
			return PKI{}, err
		}
	}
	return PKI{
		Dir:        dir,
		CA:         filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
	}, nil
}

// Remote is a buildkitd that answers on 127.0.0.1 over mutual TLS, as a
// remote node of a build fleet does, and the client's side of its TLS.
type Remote struct {
	*builder.Supervisor
	// Address is tcp://127.0.0.1:PORT.
	Address string
	// CA signed the server's and the client's certificates; Cert and Key
	// are the client's. PKI is the directory that holds them.
	CA, Cert, Key, PKI string
}

// StartRemote starts a supervisor with [Options] (private emulation of
// the foreign platforms among platforms) listening on a free port of
// 127.0.0.1 with mutual TLS, its certificates made here, and stops it when
// the test ends.
func StartRemote(t testing.TB, platforms ...string) *Remote {
	t.Helper()
	dir := Dir(t)
	pki := filepath.Join(dir, "pki")
	if err := os.Mkdir(pki, 0o700); err != nil {
		t.Fatal(err)
	}
	files, err := MakePKI(pki)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp := l.Addr().String()
	l.Close()
	o := Options(t, dir, platforms...)
	o.TCPAddress = tcp
	o.TLSCert, o.TLSKey, o.TLSCA = files.ServerCert, files.ServerKey, files.CA
	s := builder.NewSupervisor(o)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("buildertest: start buildkitd on %s: %v", tcp, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("buildertest: stop buildkitd: %v", err)
		}
	})
	return &Remote{Supervisor: s, Address: "tcp://" + tcp, PKI: pki,
		CA: files.CA, Cert: files.ClientCert, Key: files.ClientKey}
}
