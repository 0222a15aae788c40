package storage

import (
	"os"

	"golang.org/x/sys/unix"
)

// PipeSize is the capacity Pipe asks for: 1 MiB (Linux's default
// pipe-max-size) instead of the default 64 KiB, so a send or receive tool
// and the worker exchange large reads and writes rather than switching
// every 64 KiB.
const PipeSize = 1 << 20

// Pipe is os.Pipe with a PipeSize buffer where the kernel allows it (a
// smaller pipe only costs speed, so a refusal is ignored).
func Pipe() (r, w *os.File, err error) {
	r, w, err = os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	if rc, err := r.SyscallConn(); err == nil {
		// SyscallConn, not Fd: Fd would put the pipe in blocking mode.
		_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, PipeSize) })
	}
	return r, w, nil
}
