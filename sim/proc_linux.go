package main

import "syscall"

// childAttr makes the kernel kill an agent when flasher-sim dies, even by SIGKILL, so no
// simulated host's agent outlives its simulator.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
