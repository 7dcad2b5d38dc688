// Command flasher-hosttool stands in for the host vendor tools ironlib runs (dmidecode, lshw,
// smartctl, lsblk, nvme, hdparm, smc-ipmicfg, mlxup, storcli64, sum, msecli, ethtool,
// flashrom) and for Dell update packages. It picks the tool from its argv[0] base name (a
// simulated host's bin/ holds one link per tool) or from its first argument, and finds the
// host it serves through hosttool.json next to that bin/ directory. See docs/hosttools.md.
package main

import (
	"os"

	"github.com/flasher-dev/flasher/sim/hosttools"
)

func main() {
	os.Exit(hosttools.Main(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
