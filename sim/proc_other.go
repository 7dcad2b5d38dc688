//go:build !linux

package main

import "syscall"

// childAttr: without Pdeathsig, agents are stopped by flasher-sim's Close only.
func childAttr() *syscall.SysProcAttr { return nil }
