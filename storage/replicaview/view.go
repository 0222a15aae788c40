// Package replicaview keeps the replica where an administrator looks: on a
// target, <root>/<dataset> is a directory ferry made that holds one relative
// symlink per complete snapshot (named by the snapshot) and `latest`, the
// newest by Seq, each pointing into .ferry/snapshots. It is derived state:
// Sync rebuilds it from the snapshot list, idempotently, after every commit
// and around every destroy, so a crash between the two is repaired by the
// next one. Every entry is switched by symlink-to-temp + rename(2), so a
// reader sees the old target or the new one, never a missing or torn entry.
//
// Nothing ferry did not make is ever changed: a dataset path that exists
// without ferry's marker is refused (Check), and inside ferry's directory
// only symlinks into the dataset's own snapshot area are replaced or removed.
package replicaview

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferry-nas/ferry/storage"
)

const (
	// Latest is the entry pointing at the newest snapshot.
	Latest = "latest"
	// Marker is the file that says a directory is ferry's view (or a
	// directory ferry made to hold a nested dataset's view).
	Marker = ".ferry-replica"
	// tmpPrefix names a symlink being switched into place.
	tmpPrefix = ".ferry-tmp-"
	// viewMode leaves the view read-only for everyone; ferry lifts it for
	// the moment of an update.
	viewMode = 0o555
)

// View is one dataset's view under one backend root.
type View struct {
	// Root is the backend's root (absolute, symlinks resolved).
	Root string
	// Dataset is the dataset, a clean relative path already checked.
	Dataset string
	// Target is the path, relative to Root with forward slashes, of the
	// directory holding snapshot name's files (the backend's layout).
	Target func(name string) string
}

// Path is <root>/<dataset>, where the view lives.
func (v View) Path() string { return filepath.Join(v.Root, filepath.FromSlash(v.Dataset)) }

// area is the dataset's snapshot area every entry of ours points into.
func (v View) area() string {
	return filepath.Join(v.Root, storage.MetaDir, "snapshots", storage.EscapeDataset(v.Dataset)) + string(filepath.Separator)
}

// IsView reports whether dir carries ferry's marker.
func IsView(dir string) bool {
	fi, err := os.Lstat(filepath.Join(dir, Marker))
	return err == nil && fi.Mode().IsRegular()
}

// Check refuses a receive whose view could not be made without touching
// something ferry did not make: the dataset path, or one of its parents, is
// a symlink or a file, or a directory without ferry's marker. It changes
// nothing.
func (v View) Check(op string) error {
	p := v.Root
	comps := strings.Split(v.Dataset, "/")
	for i, c := range comps {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return storage.Wrap(err, storage.KindTemporary, op, v.Dataset, "")
		}
		last := i == len(comps)-1
		switch {
		case fi.Mode().Type() == fs.ModeSymlink || !fi.IsDir():
			return v.conflict(op, p, "is not a directory ferry made")
		case last && !IsView(p):
			return v.conflict(op, p, "exists and holds data ferry did not put there")
		}
	}
	return nil
}

func (v View) conflict(op, p, what string) error {
	return storage.Errorf(storage.KindConflict, op, v.Dataset, "",
		fmt.Sprintf("move %s out of the way (ferry shows the replica there and never overwrites what it did not make), or give the job another target dataset", p),
		"the replica's view %s %s", p, what)
}

// Refuse is the Conflict of taking a snapshot of a view: a target's replica
// is not a live dataset.
func Refuse(op, root, dataset string) error {
	p := filepath.Join(root, filepath.FromSlash(dataset))
	if !IsView(p) {
		return nil
	}
	return storage.Errorf(storage.KindConflict, op, dataset, "",
		"replicate from the source's dataset, or restore the replica to a new dataset first",
		"%s is ferry's view of a received replica, not a live dataset", p)
}

// Sync makes the view show names (oldest first; the last is `latest`).
// create: make the view when it does not exist yet (a receive); otherwise
// an absent view, or a path that is not ferry's, is left alone. It returns
// the entries it left in place because something ferry did not make holds
// their name.
func (v View) Sync(names []string, create bool) (skipped []string, err error) {
	p := v.Path()
	if !IsView(p) {
		if !create || len(names) == 0 {
			return nil, nil
		}
		if err := v.make(); err != nil {
			return nil, err
		}
	}
	// Writable for the update, read-only again after it whatever it was.
	if err := os.Chmod(p, 0o755); err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, os.Chmod(p, viewMode)) }()

	want := map[string]string{}
	for _, n := range names {
		if n != Latest {
			want[n] = v.link(n)
		}
	}
	// New entries first, then latest, then the stale ones: at every moment
	// each entry present resolves to a complete snapshot.
	for n, target := range want {
		ok, err := v.place(p, n, target)
		if err != nil {
			return skipped, err
		}
		if !ok {
			skipped = append(skipped, n)
		}
	}
	if len(names) > 0 {
		ok, err := v.place(p, Latest, v.link(names[len(names)-1]))
		if err != nil {
			return skipped, err
		}
		if !ok {
			skipped = append(skipped, Latest)
		}
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return skipped, err
	}
	for _, e := range entries {
		n := e.Name()
		if _, keep := want[n]; keep || (n == Latest && len(names) > 0) || !v.ours(filepath.Join(p, n)) {
			continue
		}
		if err := os.Remove(filepath.Join(p, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return skipped, err
		}
	}
	return skipped, syncDir(p)
}

// link is the relative symlink target of name's entry.
func (v View) link(name string) string {
	depth := strings.Count(v.Dataset, "/") + 1
	return strings.Repeat("../", depth) + v.Target(name)
}

// ours reports whether entry is a symlink into the dataset's snapshot area
// (an entry of this view, possibly stale) or a temporary one of ours.
func (v View) ours(entry string) bool {
	fi, err := os.Lstat(entry)
	if err != nil || fi.Mode().Type() != fs.ModeSymlink {
		return false
	}
	t, err := os.Readlink(entry)
	if err != nil || filepath.IsAbs(t) {
		return false
	}
	abs := filepath.Join(filepath.Dir(entry), t)
	return strings.HasPrefix(abs+string(filepath.Separator), v.area()) || strings.HasPrefix(filepath.Base(entry), tmpPrefix)
}

// place points entry n at target unless something not ours holds the name
// (then false).
func (v View) place(dir, n, target string) (bool, error) {
	entry := filepath.Join(dir, n)
	if cur, err := os.Readlink(entry); err == nil && cur == target {
		return true, nil
	}
	if _, err := os.Lstat(entry); err == nil && !v.ours(entry) {
		return false, nil
	}
	if err := v.traversable(n); n != Latest && err != nil {
		return false, err
	}
	tmp := filepath.Join(dir, tmpPrefix+randHex())
	if err := os.Symlink(target, tmp); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, entry); err != nil {
		os.Remove(tmp)
		return false, err
	}
	return true, nil
}

// make creates the view directory and any missing parent, each marked as
// ferry's (so a nested dataset's parent can later become a view itself);
// an existing path without the marker is refused, as Check does.
func (v View) make() error {
	p := v.Root
	comps := strings.Split(v.Dataset, "/")
	for i, c := range comps {
		parent := p
		p = filepath.Join(p, c)
		if fi, err := os.Lstat(p); err == nil {
			if fi.Mode().Type() == fs.ModeSymlink || !fi.IsDir() || (i == len(comps)-1 && !IsView(p)) {
				return v.Check("show the replica")
			}
			continue
		}
		restore, err := writable(parent)
		if err != nil {
			return err
		}
		err = os.Mkdir(p, 0o755)
		if err == nil {
			err = writeMarker(p, v.Dataset)
		}
		if err == nil {
			err = os.Chmod(p, viewMode)
		}
		if err = errors.Join(err, restore()); err != nil {
			return err
		}
	}
	return nil
}

// traversable lets everyone pass (not list) the directories between the
// root and a snapshot's files, which ferry makes 0700: who may read the
// files is then decided by the snapshot's own modes, as on the source.
func (v View) traversable(name string) error {
	p := v.Root
	comps := strings.Split(v.Target(name), "/")
	for _, c := range comps[:len(comps)-1] {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if fi.IsDir() && fi.Mode().Perm()&0o011 != 0o011 {
			if err := os.Chmod(p, fi.Mode().Perm()|0o011); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeMarker(dir, dataset string) error {
	text := fmt.Sprintf("This directory is ferry's view of the replica of dataset %q.\n"+
		"Each entry is a read-only snapshot, named by its time; `latest` is the newest.\n"+
		"ferry rewrites it after every receive and prune: do not put files here.\n", dataset)
	tmp := filepath.Join(dir, tmpPrefix+randHex())
	if err := os.WriteFile(tmp, []byte(text), 0o444); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, Marker)); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// writable lifts a read-only directory of ferry's for an update and
// returns what puts the mode back (a no-op when nothing was lifted).
func writable(dir string) (func() error, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o200 != 0 || !IsView(dir) {
		return func() error { return nil }, nil
	}
	if err := os.Chmod(dir, fi.Mode().Perm()|0o200); err != nil {
		return nil, err
	}
	return func() error { return os.Chmod(dir, fi.Mode().Perm()) }, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func randHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// SyncSnapshots is Sync over a backend's ListSnapshots answer: the view is
// made only for a dataset that holds a received snapshot (a target), so a
// source's live dataset, at the same path, is never touched.
func (v View) SyncSnapshots(snaps []storage.Snapshot) ([]string, error) {
	names := make([]string, 0, len(snaps))
	create := false
	for _, s := range snaps {
		names = append(names, s.Name)
		create = create || s.ReceivedGUID != ""
	}
	return v.Sync(names, create)
}

// Shows reports whether nothing needs doing for a mark of name: the path
// is not ferry's (a source's live dataset), or the view already has name's
// entry and latest at it. A mark can then skip the full rebuild, which
// lists (and on dir checks) every snapshot.
func (v View) Shows(name string) bool {
	p := v.Path()
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return false
	} else if err != nil || !IsView(p) {
		return true
	}
	want := v.link(name)
	l1, err1 := os.Readlink(filepath.Join(p, Latest))
	l2, err2 := os.Readlink(filepath.Join(p, name))
	return err1 == nil && err2 == nil && l1 == want && l2 == want
}

// Remove takes the view away (a restore that makes a live dataset at its
// path): ferry's entries, its marker, then the directory. Anything else in
// it is someone's: then nothing is removed and the Conflict names it.
func (v View) Remove(op string) error {
	p := v.Path()
	if !IsView(p) {
		return nil
	}
	es, err := os.ReadDir(p)
	if err != nil {
		return storage.Wrap(err, storage.KindTemporary, op, v.Dataset, "")
	}
	var theirs []string
	for _, e := range es {
		if e.Name() != Marker && !v.ours(filepath.Join(p, e.Name())) {
			theirs = append(theirs, e.Name())
		}
	}
	if len(theirs) > 0 {
		return v.conflict(op, p, fmt.Sprintf("holds %q, which ferry did not put there", theirs))
	}
	if err := os.Chmod(p, 0o755); err != nil {
		return storage.Wrap(err, storage.KindTemporary, op, v.Dataset, "")
	}
	for _, e := range es {
		if err := os.Remove(filepath.Join(p, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return storage.Wrap(err, storage.KindTemporary, op, v.Dataset, "")
		}
	}
	restore, err := writable(filepath.Dir(p))
	if err != nil {
		return storage.Wrap(err, storage.KindTemporary, op, v.Dataset, "")
	}
	err = os.Remove(p)
	return storage.Wrap(errors.Join(err, restore()), storage.KindTemporary, op, v.Dataset, "")
}
