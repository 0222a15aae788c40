//go:build !unix

package server

import "os"

// lockDB is a no-op where flock is not available.
func lockDB(string) (*os.File, error) { return nil, nil }

func unlockDB(*os.File) {}
