package build

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/moby/buildkit/client"
)

// Cache types that [ParseCache] accepts: the build cache kept in a
// registry (as an image-like cache manifest beside the image, or anywhere
// else), in a directory of the client (an OCI image layout), or inline in
// the image's config (exported only; imported as CacheRegistry from the
// image).
const (
	CacheRegistry = "registry"
	CacheLocal    = "local"
	CacheInline   = "inline"
)

// ParseCache parses a cache spec, BuildKit's and docker buildx's syntax,
// for a cache export (--cache-to, export true) or import (--cache-from):
//
//	type=registry,ref=REG/REPO:TAG[,mode=min|max]   both ways
//	type=local,dest=DIR[,mode=min|max]              export
//	type=local,src=DIR                              import
//	type=inline                                     export: the cache in the image's config
//	REG/REPO:TAG                                    type=registry,ref=REG/REPO:TAG
//
// Other attributes (image-manifest=, oci-mediatypes=, compression=,
// ignore-error=, tag=, …) pass to BuildKit as they are. An export's mode
// defaults to min (only the layers of the result; max keeps every
// intermediate step, which is what makes a multi-stage build cached).
// An import of a directory that does not exist yet is not an error: the
// first run of a CI job has no cache. A bad spec is a *[UsageError] with
// Option "CacheTo" or "CacheFrom".
func ParseCache(spec string, export bool) (client.CacheOptionsEntry, error) {
	option := "CacheFrom"
	if export {
		option = "CacheTo"
	}
	bad := func(format string, args ...any) (client.CacheOptionsEntry, error) {
		return client.CacheOptionsEntry{}, &UsageError{Option: option, Value: spec, Err: fmt.Errorf(format, args...)}
	}
	e := client.CacheOptionsEntry{Attrs: map[string]string{}}
	if spec != "" && !strings.Contains(spec, "=") {
		e.Type, e.Attrs["ref"] = CacheRegistry, spec // buildx's shorthand
	} else {
		fields, err := specFields(spec)
		if err != nil {
			return bad("%v", err)
		}
		for _, f := range fields {
			if f[0] == "type" {
				e.Type = f[1]
			} else {
				e.Attrs[f[0]] = f[1]
			}
		}
	}
	if m, ok := e.Attrs["mode"]; ok && m != "min" && m != "max" {
		return bad("mode=%q: want min or max", m)
	}
	switch e.Type {
	case "":
		return bad("no type= (registry, local, inline)")
	case CacheRegistry:
		if e.Attrs["ref"] == "" {
			return bad("type=registry needs ref=REGISTRY/REPOSITORY:TAG")
		}
		if strings.ContainsAny(e.Attrs["ref"], " \t") || strings.Contains(e.Attrs["ref"], "://") {
			return bad("ref=%q is not an image reference", e.Attrs["ref"])
		}
	case CacheLocal:
		key := "src"
		if export {
			key = "dest"
		}
		dir := e.Attrs[key]
		if dir == "" {
			return bad("type=local needs %s=DIR", key)
		}
		if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
			return bad("%s is not a directory", dir)
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return bad("%v", err)
		}
	case CacheInline:
		if !export {
			return bad("an inline cache is read from its image: --cache-from type=registry,ref=IMAGE")
		}
	default:
		return bad("unknown cache type %q (registry, local, inline)", e.Type)
	}
	if export && e.Type != CacheInline && e.Attrs["mode"] == "" {
		e.Attrs["mode"] = "min"
	}
	return e, nil
}

// cacheEntries parses the cache exports and imports of opt; a registry on
// this machine or among the insecure ones is reached over plain HTTP, as
// the image's own.
func cacheEntries(opt Options, insecure map[string]bool) (exports, imports []client.CacheOptionsEntry, err error) {
	parse := func(specs []string, export bool) ([]client.CacheOptionsEntry, error) {
		var out []client.CacheOptionsEntry
		for _, s := range specs {
			e, err := ParseCache(s, export)
			if err != nil {
				return nil, err
			}
			if ref := e.Attrs["ref"]; e.Type == CacheRegistry && isInsecure(ref, insecure) {
				if _, set := e.Attrs["registry.insecure"]; !set {
					e.Attrs["registry.insecure"] = "true"
				}
			}
			out = append(out, e)
		}
		return out, nil
	}
	if exports, err = parse(opt.CacheTo, true); err != nil {
		return nil, nil, err
	}
	if imports, err = parse(opt.CacheFrom, false); err != nil {
		return nil, nil, err
	}
	return exports, imports, nil
}
