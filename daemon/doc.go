// Package daemon is mabd's long-running loop: configuration, the reconcile
// loop that keeps binfmt_misc handlers registered, the control API, metrics
// and lifecycle.
//
// It is filled in by the daemon issue; the foundation only reserves the name.
package daemon
