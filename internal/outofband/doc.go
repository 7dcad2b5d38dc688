// Package outofband flashes firmware through a server's BMC with bmclib v2.3.5. It owns the BMC
// session layer (provider detection and pinning, login retries, one session per BMC at a time,
// Flasher's own hard deadline around every bmclib call because bmclib does not honour context
// cancellation) and the scheduler's executor for OUT_OF_BAND tasks: re-plan against the live BMC
// inventory, download and verify each image through the artifact cache, run the install steps the
// BMC lists, poll with bounded time, power-cycle the host or wait for the BMC when needed, verify
// the installed version of each component instance, and restore the host's power state.
//
// It never uploads an image whose checksum was not verified, never starts a second flash of a
// component whose job it already recorded, never logs credentials, and never talks to anything but
// the BMC it was told about and the artifact cache.
package outofband
