package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// WriteJSON writes the artifact's manifest or index: exactly the stored
// bytes when raw is set, and otherwise the same JSON indented, its fields
// in their stored order, with a final newline.
func (a *Artifact) WriteJSON(w io.Writer, raw bool) error {
	if raw {
		_, err := w.Write(a.Raw)
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, a.Raw, "", "   "); err != nil {
		return fmt.Errorf("%s: the manifest is not JSON: %w", a.Ref, err)
	}
	buf.WriteByte('\n')
	_, err := buf.WriteTo(w)
	return err
}

// VerboseEntry is what `mabd manifest inspect --verbose` prints for one
// image manifest, in the shape of `docker manifest inspect --verbose`.
type VerboseEntry struct {
	// Ref refers to the manifest by digest.
	Ref string
	// Descriptor is how the index lists it, platform included (for a
	// lone image, the platform of its config).
	Descriptor v1.Descriptor
	// Raw are the manifest's bytes (base64 in JSON).
	Raw []byte
	// SchemaV2Manifest is a Docker image manifest, as stored.
	SchemaV2Manifest json.RawMessage `json:",omitempty"`
	// OCIManifest is an OCI image manifest, as stored.
	OCIManifest json.RawMessage `json:",omitempty"`
}

// Verbose returns the verbose entries of manifests.
func Verbose(ms []Manifest) []VerboseEntry {
	out := make([]VerboseEntry, 0, len(ms))
	for _, m := range ms {
		e := VerboseEntry{Ref: m.Ref, Descriptor: m.Descriptor, Raw: m.Raw}
		if m.Descriptor.MediaType == types.DockerManifestSchema2 {
			e.SchemaV2Manifest = json.RawMessage(m.Raw)
		} else {
			e.OCIManifest = json.RawMessage(m.Raw)
		}
		out = append(out, e)
	}
	return out
}

// WriteVerbose writes the verbose form of the artifact, indented: one
// object for an image, an array of them for an index (as docker does).
func (a *Artifact) WriteVerbose(w io.Writer) error {
	ms, err := a.Manifests()
	if err != nil {
		return err
	}
	es := Verbose(ms)
	var v any = es
	if a.Image != nil && len(es) == 1 {
		v = es[0]
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "   ")
	return enc.Encode(v)
}

// Row is one line of `mabd manifest inspect --format table`.
type Row struct {
	// Digest is the manifest's digest.
	Digest v1.Hash `json:"digest"`
	// Platform is "os/arch[/variant]".
	Platform string `json:"platform"`
	// MediaType is the manifest's media type.
	MediaType types.MediaType `json:"mediaType"`
	// Size is what pulling the image downloads: its config and its
	// (compressed) layers.
	Size int64 `json:"size"`
	// Layers is how many layers it has.
	Layers int `json:"layers"`
	// Attestation marks BuildKit's attestation manifests.
	Attestation bool `json:"attestation,omitempty"`
}

// Table returns the table rows of manifests.
func Table(ms []Manifest) ([]Row, error) {
	var rows []Row
	for _, m := range ms {
		man, err := v1.ParseManifest(bytes.NewReader(m.Raw))
		if err != nil {
			return nil, fmt.Errorf("parse manifest %s: %w", m.Ref, err)
		}
		r := Row{Digest: m.Descriptor.Digest, Platform: PlatformString(m.Descriptor.Platform), MediaType: m.Descriptor.MediaType,
			Size: man.Config.Size, Layers: len(man.Layers), Attestation: m.Attestation()}
		for _, l := range man.Layers {
			r.Size += l.Size
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// WriteTable writes rows as an aligned table with a header.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DIGEST\tPLATFORM\tSIZE\tLAYERS\tMEDIA TYPE")
	for _, r := range rows {
		p := r.Platform
		if r.Attestation {
			p += " (attestation)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", r.Digest, p, HumanSize(r.Size), r.Layers, r.MediaType)
	}
	return tw.Flush()
}

// HumanSize formats a byte count with decimal units: "812B", "1.05MB".
func HumanSize(n int64) string {
	const units = "kMGTPE"
	if n < 1000 {
		return fmt.Sprintf("%dB", n)
	}
	f := float64(n)
	i := -1
	for f >= 999.5 && i < len(units)-1 {
		f /= 1000
		i++
	}
	switch {
	case f >= 99.95:
		return fmt.Sprintf("%.0f%cB", f, units[i])
	case f >= 9.995:
		return fmt.Sprintf("%.1f%cB", f, units[i])
	}
	return fmt.Sprintf("%.2f%cB", f, units[i])
}
