// Package emulator finds QEMU user-mode emulators (qemu-<arch>-static and
// qemu-<arch>) on the host, tells whether each one is usable with
// binfmt_misc's F ("fix binary") flag, and reports facts about it, such as
// its version and whether that version honours binfmt_misc's P
// ("preserve argv[0]") flag.
//
// The F flag makes the kernel open the interpreter when the binfmt_misc
// entry is registered and reuse that open file for every later execution,
// including inside chroots and containers whose root file system does not
// hold the emulator. A dynamically linked emulator cannot work there: its
// shared libraries are looked up in the container's file system. Only a
// statically linked emulator (as shipped by Debian's qemu-user-static) is
// usable with F; see [Emulator.CheckFixBinary].
//
// Discovery ([Find], [FindAll], [IsStatic]) only opens files; [Version] and
// [Emulator.Inspect] start the emulator once with --version. Later work adds
// probes here that run foreign binaries through the emulators found.
//
// The package is meant for Linux hosts.
package emulator
