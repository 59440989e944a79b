// Package builder supervises the BuildKit daemon that mabd runs, generates
// its configuration from the verified platforms, and drives BuildKit's
// client for multi-platform builds, manifests and image audits.
//
// It is filled in by the BuildKit issue; the foundation only reserves the
// name so that the import direction (cmd → daemon → builder → emulator →
// binfmt) is fixed from the start.
package builder
