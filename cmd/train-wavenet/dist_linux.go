package main

import "syscall"

// rankProcAttr puts a rank in its own process group, so a terminal's Ctrl-C
// reaches only the launcher, which passes it on once (a second signal
// would make the ranks quit without saving); Pdeathsig stops the ranks if
// the launcher is killed.
func rankProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
