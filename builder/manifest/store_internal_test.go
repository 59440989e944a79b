package manifest

import (
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// zeros is a reader that never ends, like /dev/zero or a file someone
// keeps appending to.
type zeros struct{ read int64 }

func (z *zeros) Read(p []byte) (int, error) {
	clear(p)
	z.read += int64(len(p))
	return len(p), nil
}

func (z *zeros) Close() error { return nil }

// TestVerifyReaderStopsAtSize: a blob that never ends is read no further
// than one read past its descriptor's size, and ends with an error.
func TestVerifyReaderStopsAtSize(t *testing.T) {
	const size = 1000
	z := &zeros{}
	h, _ := v1.Hasher("sha256")
	r := newVerifyReader(z, v1.Descriptor{Size: size, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}}, h, "test")
	n, err := io.Copy(io.Discard, r)
	if err == nil || !strings.Contains(err.Error(), "longer than the 1000 bytes its descriptor says") {
		t.Errorf("error %v", err)
	}
	if n != size || z.read > size+1 {
		t.Errorf("gave %d bytes and read %d of an endless blob of declared size %d", n, z.read, size)
	}
}
