package audit

import (
	"archive/tar"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// Finding is an ELF file found in a layer.
type Finding struct {
	// Path is its absolute path in the image: "/usr/bin/app".
	Path string `json:"path"`
	// Identity is what its header says it is for.
	Identity
	// Arch names that, as mabd names architectures: "x86_64", "aarch64".
	Arch string `json:"arch"`
	// Type is its e_type: an executable, a shared object (which PIE
	// executables also are), a relocatable object…
	Type elf.Type `json:"type"`
	// Size is the file's size.
	Size int64 `json:"size"`
}

// LayerStats count what a layer holds.
type LayerStats struct {
	// Files counts regular files (whiteouts are not files).
	Files int `json:"files"`
	// ELF counts the ELF files among them.
	ELF int `json:"elf"`
}

// ScanLayer reads an uncompressed layer (a tar stream) once, to its end,
// and returns its ELF files in the order they come. Only the first
// [HeaderSize] bytes of each regular file are read; the rest is skipped
// (discarded as it streams by, or seeked over when r is an io.Seeker), so
// memory stays the same whatever the size of the layer and of its files.
// Directories, links, devices, whiteouts, scripts, data and short files
// give no finding.
func ScanLayer(r io.Reader) ([]Finding, error) {
	var out []Finding
	_, err := scan(r, func(_ string, _ *tar.Header, f *Finding) {
		if f != nil {
			out = append(out, *f)
		}
	})
	return out, err
}

// scan reads a layer tar, calling visit with each entry's cleaned absolute
// path, its header, and the finding when it is an ELF regular file. It
// reads r to its end, past the tar's end-of-archive blocks, so that a
// reader that checks a digest at EOF does.
func scan(r io.Reader, visit func(p string, h *tar.Header, f *Finding)) (LayerStats, error) {
	var st LayerStats
	var buf [HeaderSize]byte
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("read tar: %w", err)
		}
		p := CleanPath(h.Name)
		var f *Finding
		whiteout := strings.HasPrefix(path.Base(p), ".wh.")
		if (h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA) && !whiteout { //nolint:staticcheck // old tars still have TypeRegA
			st.Files++
			n, err := io.ReadFull(tr, buf[:])
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				return st, fmt.Errorf("read %s: %w", p, err)
			}
			if id, typ, ok := ParseHeader(buf[:n]); ok {
				st.ELF++
				f = &Finding{Path: p, Identity: id, Arch: id.String(), Type: typ, Size: h.Size}
			}
		}
		visit(p, h, f)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return st, fmt.Errorf("read past the end of the tar: %w", err)
	}
	return st, nil
}

// CleanPath turns a tar entry's name into an absolute, clean path:
// "./usr/bin/" is "/usr/bin".
func CleanPath(name string) string {
	return path.Clean("/" + strings.TrimPrefix(name, "./"))
}
