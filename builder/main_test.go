package builder

// The test binary runs the builder's agent when a supervisor with private
// emulation starts it (see MaybeRunAgent).
func init() { MaybeRunAgent() }
