package build

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
)

// Output is one output of a build ([BuildOptions.Outputs]), parsed by
// [ParseOutput]: a BuildKit exporter and where it writes.
type Output struct {
	// Type is the exporter: "oci", "docker", "tar", "local" or "image"
	// (docker buildx's "registry" is "image" with push=true).
	Type string
	// Dest is the file or, when Dir is set, the directory the exporter
	// writes; "" for "image", which writes to an image store or registry.
	Dest string
	// Dir says that Dest is a directory: type=local, and type=oci or
	// type=docker with tar=false (an OCI image layout directory).
	Dir bool
	// Attrs are the exporter's other attributes (name, push, tar, …),
	// with their keys in lower case.
	Attrs map[string]string
}

// ParseOutput parses an output spec, BuildKit's and docker buildx's
// syntax: comma-separated key=value pairs with CSV quoting, one of them
// type= ("type=oci,dest=out.tar", "type=local,dest=DIR",
// "type=image,name=REF,push=true"). A spec that does not parse, lacks a
// dest= its type needs, or whose file dest is an existing directory, is a
// *[UsageError] with Option "Outputs". Nothing is created: a file is only
// created when BuildKit writes it.
func ParseOutput(spec string) (Output, error) {
	bad := func(format string, args ...any) (Output, error) {
		return Output{}, &UsageError{Option: "Outputs", Value: spec, Err: fmt.Errorf(format, args...)}
	}
	o := Output{Attrs: map[string]string{}}
	fields, err := specFields(spec)
	if err != nil {
		return bad("%v", err)
	}
	for _, f := range fields {
		switch k, v := f[0], f[1]; k {
		case "type":
			o.Type = v
		case "dest":
			o.Dest = v
		default:
			o.Attrs[k] = v
		}
	}
	if o.Type == "registry" { // docker buildx's shorthand
		o.Type = client.ExporterImage
		o.Attrs["push"] = "true"
	}
	switch o.Type {
	case "":
		return bad("no type= (oci, docker, tar, local, image)")
	case client.ExporterLocal:
		o.Dir = true
	case client.ExporterTar:
	case client.ExporterOCI, client.ExporterDocker:
		if v, ok := o.Attrs["tar"]; ok {
			tar, err := strconv.ParseBool(v)
			if err != nil {
				return bad("tar=%q: want true or false", v)
			}
			o.Dir = !tar
		}
	case client.ExporterImage:
		if o.Dest != "" {
			return bad("type=image takes no dest")
		}
		return o, nil
	default:
		return bad("unknown type %q (oci, docker, tar, local, image, registry)", o.Type)
	}
	if o.Dest == "" {
		return bad("type=%s needs dest=", o.Type)
	}
	if !o.Dir {
		if fi, err := os.Stat(o.Dest); err == nil && fi.IsDir() {
			return bad("%s is a directory", o.Dest)
		}
	}
	return o, nil
}

// specFields splits an option spec in BuildKit's and docker buildx's
// syntax — comma-separated key=value pairs with CSV quoting
// ("type=oci,dest=out.tar", `"name=a/b:1,a/b:2"`) — into its pairs, in
// order, each key trimmed and in lower case.
func specFields(spec string) ([][2]string, error) {
	r := csv.NewReader(strings.NewReader(spec))
	r.LazyQuotes = true
	fields, err := r.Read()
	if err != nil {
		return nil, err
	}
	out := make([][2]string, 0, len(fields))
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not key=value", f)
		}
		out = append(out, [2]string{strings.ToLower(strings.TrimSpace(k)), v})
	}
	return out, nil
}

// exportEntry is o as BuildKit's client takes it.
func (o Output) exportEntry() client.ExportEntry {
	e := client.ExportEntry{Type: o.Type, Attrs: o.Attrs}
	switch {
	case o.Dest == "":
	case o.Dir:
		e.OutputDir = o.Dest
	default:
		dest := o.Dest
		var once sync.Once
		e.Output = func(map[string]string) (io.WriteCloser, error) {
			var f *os.File
			var err error
			once.Do(func() { f, err = os.Create(dest) })
			if f == nil && err == nil {
				err = fmt.Errorf("%s: written twice", dest)
			}
			return f, err
		}
	}
	return e
}

// exportEntries turns -t/--push and --output into BuildKit's exports.
func exportEntries(opt Options, insecure map[string]bool) ([]client.ExportEntry, error) {
	if opt.Push && len(opt.Tags) == 0 {
		return nil, &UsageError{Option: "Push", Err: errors.New("no image name (Tags) to push")}
	}
	for _, t := range opt.Tags {
		if t == "" || strings.ContainsAny(t, ", \t") {
			return nil, &UsageError{Option: "Tags", Value: t, Err: errors.New("not an image reference")}
		}
	}
	var out []client.ExportEntry
	names := strings.Join(opt.Tags, ",")
	markInsecure := func(attrs map[string]string, names string) {
		if _, set := attrs[string(exptypes.OptKeyInsecure)]; set || names == "" {
			return
		}
		for _, n := range strings.Split(names, ",") {
			if isInsecure(n, insecure) {
				attrs[string(exptypes.OptKeyInsecure)] = "true"
				return
			}
		}
	}
	for _, spec := range opt.Outputs {
		o, err := ParseOutput(spec)
		if err != nil {
			return nil, err
		}
		switch o.Type {
		case client.ExporterImage:
			if o.Attrs["name"] == "" && names != "" {
				o.Attrs["name"] = names
			}
			if opt.Push && o.Attrs["push"] == "" {
				o.Attrs["push"] = "true"
			}
			markInsecure(o.Attrs, o.Attrs["name"])
		case client.ExporterOCI, client.ExporterDocker:
			if o.Attrs["name"] == "" && names != "" {
				o.Attrs["name"] = names
			}
		}
		out = append(out, o.exportEntry())
	}
	hasImage := slices.ContainsFunc(out, func(e client.ExportEntry) bool { return e.Type == client.ExporterImage })
	if len(opt.Tags) > 0 && !hasImage {
		attrs := map[string]string{"name": names}
		if opt.Push {
			attrs["push"] = "true"
		}
		markInsecure(attrs, names)
		out = append(out, client.ExportEntry{Type: client.ExporterImage, Attrs: attrs})
	}
	return out, nil
}

// annotateExports adds the annotations to the image and oci exports;
// index says whether the image is an index.
func annotateExports(exports []client.ExportEntry, as []annotation, index bool) error {
	for _, a := range as {
		attrs, err := a.exporterAttrs(index)
		if err != nil {
			return err
		}
		for i := range exports {
			if t := exports[i].Type; t != client.ExporterImage && t != client.ExporterOCI {
				continue
			}
			if exports[i].Attrs == nil {
				exports[i].Attrs = map[string]string{}
			}
			maps.Copy(exports[i].Attrs, attrs)
		}
	}
	return nil
}
