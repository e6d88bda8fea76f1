//go:build !linux

package harness

import "syscall"

func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// waitStopped cannot tell without /proc that a process has stopped: it
// trusts the signal.
func waitStopped(int) error { return nil }
