// Package systemd speaks systemd's protocols for mabd: sd_notify (READY,
// STATUS, WATCHDOG, STOPPING), socket activation, journald logging and the
// unit files.
//
// It is filled in by the daemon issue; the foundation only reserves the name.
package systemd
