package host_test

import "mabd/host"

// The trials of candidate emulators re-execute the test binary in a
// private namespace.
func init() { host.MaybeRunTrial() }
