//go:build unix

package server

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockDB takes an exclusive advisory lock on "<db>.lock" so that a second
// ferry server cannot open the same database file: two Temporal servers on
// one SQLite file would both believe they own the history shard. The lock
// goes with the process, so a crashed server never leaves it behind.
func lockDB(dbPath string) (*os.File, error) {
	name := dbPath + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("database file %s: create lock file %s: %w", dbPath, name, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("database file %s is in use by another ferry server (lock %s is held); stop it or give another --db", dbPath, name)
		}
		return nil, fmt.Errorf("database file %s: lock %s: %w", dbPath, name, err)
	}
	return f, nil
}

func unlockDB(f *os.File) {
	if f == nil {
		return
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	_ = f.Close()
}
