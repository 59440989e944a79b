package emulator

import "mabd/binfmt"

// LookupArch is [binfmt.Lookup].
//
// Deprecated: the architecture table and its lookup live in binfmt; call
// binfmt.Lookup.
func LookupArch(name string) (binfmt.Arch, error) { return binfmt.Lookup(name) }
