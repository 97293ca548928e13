//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package dirlock

import (
	"errors"
	"os"
)

// Systems without flock get no protection: the lock always succeeds.
var errWouldBlock = errors.New("would block")

func tryLock(*os.File) error { return nil }
func unlock(*os.File) error  { return nil }
