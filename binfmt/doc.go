// Package binfmt is mabd's interface to the kernel's binfmt_misc facility:
// the register-line format, the entry files, the operations on a mounted
// instance, and the table of architectures QEMU can emulate.
//
// # Handlers
//
// A handler tells the kernel which interpreter runs a file it cannot run
// itself. It is registered with one write of a line to the register file of
// a binfmt_misc mount:
//
//	:name:type:offset:magic:mask:interpreter:flags
//
// The first character is the delimiter (conventionally ':'). Type is M (the
// file's bytes at offset, ANDed with mask, equal magic) or E (the file name
// ends in "."+magic). Magic and mask may carry bytes as \xHH escapes; an empty
// offset means 0 and an empty mask means all ones. Flags are letters:
//
//	P  preserve argv[0]: the interpreter gets the original argv[0] too
//	O  open the binary and pass the interpreter an fd to it
//	C  run with the binary's credentials (implies O); setuid programs then
//	   run the interpreter as root, so mabd sets it only when asked
//	F  open the interpreter at registration; it then works inside chroots
//	   and containers, and must be statically linked
//
// [Spec] is one handler; [Parse] and [Spec.Line] convert it from and to the
// register line, and Parse(s.Line()) gives back s. The limits are the
// kernel's (a line of at most 1920 bytes, no '/' in the name, an interpreter
// of at most 127 bytes) plus two of mabd's: offset+magic must stay under 128
// bytes, the limit older kernels enforce, and the interpreter must be an
// absolute path.
//
// # Instances
//
// A [Mount] is one mounted binfmt_misc instance. Each handler appears there
// as a file (read by [ParseEntry]); writing 1, 0 or -1 to it enables,
// disables or removes it, and the same to the status file applies to the
// whole facility. Since Linux 6.7 every user namespace may mount its own,
// private instance, which is how mabd's tests and `mabd exec` work without
// touching the host. Unmounting the last mount of an instance destroys its
// entries, so this package can mount ([EnsureMounted]) but never unmounts.
//
// # Architectures
//
// [Arches] lists every target Debian's qemu-user-static ships, with the
// magic and mask that identify its ELF files and its OCI platform where one
// exists; [Lookup] resolves a QEMU name, OCI platform or alias to it.
package binfmt
