package demo

import "github.com/ferry-nas/ferry/internal/sampleshare"

// WriteShare writes the demo's sample share (see sampleshare.Write).
func WriteShare(dir string, size int64, seed uint64) error { return sampleshare.Write(dir, size, seed) }

// ChangeShare makes the demo's changes between runs (see sampleshare.Change).
func ChangeShare(dir string, seed uint64) ([]string, error) { return sampleshare.Change(dir, seed) }
