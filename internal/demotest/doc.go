// Package demotest runs `make demo` (scripts/demo.sh) in its non-interactive mode, so the
// test suite and CI check that the whole system works end to end on a simulated fleet: the
// binaries build, flasher-sim starts BMCs and hosts with agents, flasher-server plans, refuses,
// flashes out-of-band and in-band, and explains an injected failure. It has no code of its own.
package demotest
