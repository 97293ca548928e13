//go:build !linux

package main

import "syscall"

// rankProcAttr: see dist_linux.go (no parent-death signal here).
func rankProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
