package storage

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// FixNoSpace is the advice of a NoSpace error that carries no figures.
const FixNoSpace = "free space on the target or raise its quota, then run the job again"

// NoSpaceError is the cause of a receive that ran out of space: what it was
// writing and how much room the snapshot needs against what is free. Every
// backend discards the partial receive before returning it (ferry never
// leaves a NAS disk full), so Free is measured after that.
type NoSpaceError struct {
	// File is what was being written when the filesystem refused: a path
	// inside the snapshot, or the backend's spool named as such.
	File string
	// Need is the snapshot's expected stream size in bytes when known,
	// otherwise the bytes received before the filesystem was full (a lower
	// bound: AtLeast is then set).
	Need    int64
	AtLeast bool
	// Free is the space available to ferry on the target's filesystem
	// (statfs f_bavail; a quota may allow less), -1 when unknown.
	Free int64
	// FSPath is the path Free was measured on (the backend's root), and
	// Host the ferry host it is on (filled in by the activity reporting it).
	FSPath, Host string
	// Err is the filesystem's or the tool's own error.
	Err error
}

func (e *NoSpaceError) Error() string {
	need := FormatBytes(e.Need)
	if e.AtLeast {
		need = "at least " + need
	}
	free := "an unknown amount"
	if e.Free >= 0 {
		free = FormatBytes(e.Free)
	}
	return fmt.Sprintf("no space left writing %s: the snapshot needs %s, %s free on %s after discarding the partial receive: %v",
		e.File, need, free, e.where(), e.Err)
}

// where names the filesystem: "/srv/backup (nas-c)".
func (e *NoSpaceError) where() string {
	switch {
	case e.FSPath == "":
		return "the target's filesystem"
	case e.Host == "":
		return e.FSPath
	}
	return e.FSPath + " (" + e.Host + ")"
}

func (e *NoSpaceError) Unwrap() error { return e.Err }

// NoSpace builds the KindNoSpace error of a receive into dataset@name that
// ran out of space writing file. need is the expected stream size (0:
// unknown, then received, the bytes that had arrived, is the lower bound
// given); fsPath is any path on the target's filesystem, for statfs. Call
// it after discarding the partial receive.
func NoSpace(op, dataset, name, file string, need, received int64, fsPath string, cause error) *Error {
	e := &NoSpaceError{File: file, Need: need, Free: -1, FSPath: fsPath, Err: cause}
	if need <= 0 {
		e.Need, e.AtLeast = received, true
	}
	var sfs unix.Statfs_t
	if fsPath != "" && unix.Statfs(fsPath, &sfs) == nil {
		e.Free = int64(sfs.Bavail) * sfs.Bsize
	}
	fix := FixNoSpace
	if short := e.Need - e.Free; e.Free >= 0 && short > 0 {
		there := "there"
		if fsPath == "" {
			there = "on the target"
		}
		fix = fmt.Sprintf("free at least %s %s or raise its quota, then run the job again", FormatBytes(short), there)
	}
	fix += "; nothing of this receive was kept"
	return &Error{Kind: KindNoSpace, Op: op, Dataset: dataset, Snapshot: name, Err: e, Fix: fix}
}

// IsNoSpace reports whether err is, or was caused by, a full filesystem or
// quota (ENOSPC, EDQUOT, or an error already classified KindNoSpace).
func IsNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) || KindOf(err) == KindNoSpace
}

// FormatBytes writes n in binary units with the exact count: "1.5 GiB
// (1610612736 bytes)".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", v, "KMGTPE"[i], n)
}
