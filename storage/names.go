package storage

import (
	"path"
	"regexp"
	"strings"
)

// MetaDir is the one name at the top of a backend's root that belongs to
// ferry: snapshots, staging, marks. No dataset may start with it.
const MetaDir = ".ferry"

var snapshotNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:@+=-]{0,199}$`)

// reservedSuffixes end the names of files backends keep beside snapshots.
var reservedSuffixes = []string{".json", ".manifest", ".spool", ".tmp"}

// CheckSnapshotName refuses a snapshot name a backend cannot store safely
// (KindInvalid): letters, digits and _ . : @ + = -, not starting with a dot,
// at most 200 bytes, not ending like one of ferry's own files.
func CheckSnapshotName(op, dataset, name string) error {
	bad := !snapshotNameRE.MatchString(name)
	for _, s := range reservedSuffixes {
		bad = bad || strings.HasSuffix(name, s)
	}
	if bad {
		return Errorf(KindInvalid, op, dataset, name,
			"use a snapshot name of letters, digits and _ . : @ + = - that does not start with a dot",
			"invalid snapshot name %q", name)
	}
	return nil
}

// CheckDataset refuses a dataset that is not a clean relative path inside the
// host's root (KindInvalid): empty, absolute, with empty, "." or ".."
// components, control characters, too long, or inside MetaDir. Config checks
// the same and more; backends check again because activities take input
// from the workflow.
func CheckDataset(op, dataset string) error {
	bad := func(why string) error {
		return Errorf(KindInvalid, op, dataset, "", "datasets are relative paths inside the host's root", "invalid dataset %q: %s", dataset, why)
	}
	switch {
	case dataset == "":
		return bad("empty")
	case strings.ContainsFunc(dataset, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return bad("contains a control character")
	case path.IsAbs(dataset):
		return bad("absolute path")
	case len(EscapeDataset(dataset)) > 250:
		return bad("too long")
	}
	for i, c := range strings.Split(dataset, "/") {
		switch {
		case c == "" || c == ".":
			return bad("empty or '.' path component")
		case c == "..":
			return bad("'..' escapes the root")
		case i == 0 && c == MetaDir:
			return bad("the root's " + MetaDir + " directory belongs to ferry")
		}
	}
	return nil
}

// EscapeDataset makes a dataset path one path component ('%' -> %25,
// '/' -> %2F), so that nested datasets such as a and a/s never collide
// under MetaDir.
func EscapeDataset(dataset string) string {
	return strings.ReplaceAll(strings.ReplaceAll(dataset, "%", "%25"), "/", "%2F")
}
