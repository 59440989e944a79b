package build

import (
	"errors"
	"testing"
)

// FuzzParseSpecs: the specs people type for --output, --cache-to,
// --cache-from and --annotation parse or are refused with a *UsageError,
// never a panic.
func FuzzParseSpecs(f *testing.F) {
	for _, s := range []string{
		"type=oci,dest=out.tar", "type=local,dest=DIR", `"type=image","name=a/b:1,a/b:2",push=true`, "type=registry,ref=r/c,mode=max",
		"type=local,src=DIR", "type=inline", "manifest[linux/arm64]:org.example.k=v", "index:k=v", `type="oci`, "=,=,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		var ue *UsageError
		if _, err := ParseOutput(spec); err != nil && !errors.As(err, &ue) {
			t.Errorf("ParseOutput(%q): %T %v, want a *UsageError", spec, err, err)
		}
		for _, export := range []bool{true, false} {
			if _, err := ParseCache(spec, export); err != nil && !errors.As(err, &ue) {
				t.Errorf("ParseCache(%q, %v): %T %v, want a *UsageError", spec, export, err, err)
			}
		}
		if _, _, err := SplitAnnotations([]string{spec}); err != nil && !errors.As(err, &ue) {
			t.Errorf("SplitAnnotations(%q): %T %v, want a *UsageError", spec, err, err)
		}
	})
}
