// Package hosttools simulates the host vendor tools ironlib v1.1.4 runs in-band, so the real
// ironlib can inventory and update a simulated host. A simulated host is a directory holding
// hosttool.json, a bin/ of links to one stand-in binary (flasher-hosttool, one link per tool
// name), and a state dir with the installed firmware versions, armed faults and the install
// history. The stand-ins print ironlib's own captures of a Dell R6515 and a Supermicro X11DPH-T
// (read at run time from the ironlib module's fixtures/), rewritten with the versions in the
// state dir, and updates (sum, mlxup, msecli, Dell update packages) parse the sim/image
// header, refuse images for another component, vendor or model, and record the new version.
// The package owns nothing of Flasher's domain: it must not import internal/ packages.
package hosttools
