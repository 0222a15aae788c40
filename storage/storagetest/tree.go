package storagetest

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Awkward names every backend must carry unchanged.
var AwkwardNames = []string{
	"with space.txt",
	"new\nline",
	"tab\there",
	"ünïcødé-文件.txt",
	"-leading-dash",
	"--",
	"back\\slash",
	"quote\"and'apostrophe",
	"star*question?",
	"a b",
	"a-b",
	"trailing space ",
	".hidden",
	"..dots",
	strings.Repeat("long", 50), // 200 bytes
	"\xff\xfe-not-utf8",
}

// baseTime is the mtime (with a ns fraction) the helpers give files.
var baseTime = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

// WriteFile writes a file with mode and a fixed mtime offset by sec seconds.
func WriteFile(t testing.TB, p string, data []byte, mode fs.FileMode, sec int) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, data, 0o600))
	must(t, os.Chmod(p, mode))
	SetMtime(t, p, baseTime.Add(time.Duration(sec)*time.Second+time.Duration(sec)*time.Nanosecond))
}

// SetMtime sets the mtime (and atime) of p without following a symlink.
func SetMtime(t testing.TB, p string, tm time.Time) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(tm.UnixNano()), unix.NsecToTimespec(tm.UnixNano())}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
}

// Symlink makes a symlink with a fixed mtime.
func Symlink(t testing.TB, target, p string, sec int) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.Symlink(target, p))
	SetMtime(t, p, baseTime.Add(time.Duration(sec)*time.Second))
}

// Random returns n deterministic pseudo-random bytes.
func Random(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// IsRoot reports whether the tests run as root (ownership is then set and checked).
func IsRoot() bool { return os.Geteuid() == 0 }

// MakeTree fills root (an existing, empty directory) with a varied tree of
// about 3 MiB: nested and empty directories, files of sizes around the tar
// block size, a multi-MiB file, permissions with setuid/setgid/sticky, a
// read-only directory, relative, absolute, dangling and directory symlinks,
// awkward names, ns mtimes, hard links, xattrs (security.* and trusted.*
// as root), POSIX access and default ACLs, sparse files and (as root)
// foreign ownership.
func MakeTree(t testing.TB, root string) {
	t.Helper()
	p := func(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }
	WriteFile(t, p("empty"), nil, 0o644, 1)
	WriteFile(t, p("one"), []byte("1"), 0o644, 2)
	WriteFile(t, p("block-511"), Random(1, 511), 0o644, 3)
	WriteFile(t, p("block-512"), Random(2, 512), 0o644, 4)
	WriteFile(t, p("block-513"), Random(3, 513), 0o644, 5)
	WriteFile(t, p("docs/big.bin"), Random(4, 2<<20+77), 0o640, 6)
	WriteFile(t, p("docs/medium.bin"), Random(5, 300<<10), 0o644, 7)
	WriteFile(t, p("docs/deep/er/est/leaf.txt"), []byte("leaf\n"), 0o644, 8)
	WriteFile(t, p("docs/deep/er/sibling.txt"), []byte("sibling\n"), 0o644, 9)
	WriteFile(t, p("exec.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755, 10)
	WriteFile(t, p("private"), []byte("secret"), 0o600, 11)
	WriteFile(t, p("setuid-file"), []byte("suid"), 0o755|fs.ModeSetuid, 12)
	WriteFile(t, p("setgid-dir/inside.txt"), []byte("inside"), 0o644, 13)
	WriteFile(t, p("a/b"), []byte("a/b"), 0o644, 14)
	WriteFile(t, p(strings.Repeat("nested-directory-name/", 8)+"deep-file-with-a-long-path.txt"), []byte("long path"), 0o644, 15)
	for i, n := range AwkwardNames {
		WriteFile(t, p(n), []byte(fmt.Sprintf("awkward %q\n", n)), 0o644, 20+i)
	}
	must(t, os.MkdirAll(p("empty-dir"), 0o755))
	WriteFile(t, p("ro-dir/file"), []byte("in a read-only dir"), 0o444, 40)
	must(t, os.MkdirAll(p("sticky"), 0o755))
	must(t, os.Chmod(p("sticky"), 0o777|fs.ModeSticky))
	must(t, os.Chmod(p("setgid-dir"), 0o775|fs.ModeSetgid))
	Symlink(t, "docs/deep/er/est/leaf.txt", p("link-rel"), 50)
	Symlink(t, "/nonexistent/ferry/target", p("link-abs-dangling"), 51)
	Symlink(t, "docs", p("link-dir"), 52)
	Symlink(t, "../one", p("docs/link-up"), 53)
	Symlink(t, "with space.txt", p("link to awkward"), 54)
	if IsRoot() {
		must(t, os.Lchown(p("private"), 1234, 5678))
		must(t, os.Lchown(p("link-rel"), 4321, 8765))
		must(t, os.Lchown(p("docs/deep"), 1111, 2222))
		must(t, os.Chmod(p("setuid-file"), 0o755|fs.ModeSetuid)) // chown clears it
	}
	makeFidelity(t, root)
	must(t, os.Chmod(p("ro-dir"), 0o555))
}

// MutateTree changes the tree MakeTree made. Step 1 covers every kind of
// change (added, modified with a new and with the same size, deleted files
// and directories, renamed file and directory, permissions only, mtime
// only, symlinks added/retargeted/removed, empty files, awkward names, a
// file becoming a directory and a directory becoming a file); steps 2 and 3
// make further, smaller changes for a chain of incrementals.
func MutateTree(t testing.TB, root string, step int) {
	t.Helper()
	p := func(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }
	switch step {
	case 1:
		WriteFile(t, p("new-file"), []byte("new file\n"), 0o644, 100)
		WriteFile(t, p("new-dir/sub/x.txt"), Random(6, 70000), 0o644, 101)
		WriteFile(t, p("new-empty"), nil, 0o600, 102)
		// Modified, new size.
		f, err := os.OpenFile(p("docs/big.bin"), os.O_WRONLY|os.O_APPEND, 0)
		must(t, err)
		_, err = f.Write([]byte("appended"))
		must(t, err)
		must(t, f.Close())
		// Modified, same size, same mtime: only the ctime tells.
		fi, err := os.Lstat(p("block-512"))
		must(t, err)
		data, err := os.ReadFile(p("block-512"))
		must(t, err)
		data[100] ^= 0xff
		must(t, os.WriteFile(p("block-512"), data, 0o644))
		SetMtime(t, p("block-512"), fi.ModTime())
		// Deleted file and directory tree.
		must(t, os.Remove(p("one")))
		must(t, os.RemoveAll(p("docs/deep")))
		// Renamed file and directory.
		must(t, os.Rename(p("with space.txt"), p("renamed file.txt")))
		must(t, os.Rename(p("setgid-dir"), p("moved-dir")))
		// Permissions only, mtime only.
		must(t, os.Chmod(p("exec.sh"), 0o700))
		SetMtime(t, p("private"), baseTime.Add(time.Hour))
		// Symlinks added, retargeted, removed.
		Symlink(t, "new-file", p("new-link"), 103)
		must(t, os.Remove(p("link-rel")))
		Symlink(t, "exec.sh", p("link-rel"), 104)
		must(t, os.Remove(p("link-abs-dangling")))
		// File becomes a directory, directory becomes a file.
		must(t, os.Remove(p("block-513")))
		WriteFile(t, p("block-513/inside"), []byte("now a dir"), 0o644, 105)
		must(t, os.Remove(p("empty-dir")))
		WriteFile(t, p("empty-dir"), []byte("now a file"), 0o644, 106)
		// A change inside a read-only directory.
		must(t, os.Chmod(p("ro-dir"), 0o755))
		WriteFile(t, p("ro-dir/added"), []byte("added"), 0o644, 107)
		must(t, os.Chmod(p("ro-dir"), 0o555))
		// Awkward names.
		WriteFile(t, p("new\nline 2"), []byte("x"), 0o644, 108)
		WriteFile(t, p("-x"), nil, 0o644, 109)
		must(t, os.Remove(p("--")))
		mutateFidelity(t, root)
	case 2:
		WriteFile(t, p("new-file"), []byte("new file, second version\n"), 0o644, 200)
		must(t, os.Remove(p("renamed file.txt")))
		WriteFile(t, p("s2/x"), []byte("step 2"), 0o644, 201)
		must(t, os.Remove(p("link-dir")))
		WriteFile(t, p("link-dir"), []byte("a symlink became a file"), 0o644, 202)
		must(t, os.Chmod(p("docs"), 0o750))
	case 3:
		must(t, os.RemoveAll(p("new-dir")))
		WriteFile(t, p("s2/x"), []byte("step 3!"), 0o644, 300)
		must(t, os.Remove(p("empty")))
		must(t, os.Mkdir(p("empty"), 0o700))
		SetMtime(t, p("moved-dir"), baseTime.Add(3*time.Hour))
		if IsRoot() {
			must(t, os.Lchown(p("exec.sh"), 777, 888))
		}
	default:
		t.Fatalf("MutateTree: no step %d", step)
	}
}

// Ownership lists "path uid:gid" for every entry below root, sorted.
func Ownership(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(root, p)
		out = append(out, fmt.Sprintf("%q %d:%d", rel, st.Uid, st.Gid))
		return nil
	}))
	slices.Sort(out)
	return out
}

// Footprint lists every path below root with its type, for checking that a
// failed or discarded receive left nothing behind.
func Footprint(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, fmt.Sprintf("%q %s", rel, d.Type()))
		return nil
	}))
	slices.Sort(out)
	return out
}

// Canary is a directory outside every backend's root with one file in it;
// Check fails the test if anything in it changed.
type Canary struct {
	Dir  string
	want []byte
}

// NewCanary makes a canary directory.
func NewCanary(t testing.TB) *Canary {
	c := &Canary{Dir: t.TempDir(), want: []byte("canary\n")}
	must(t, os.WriteFile(filepath.Join(c.Dir, "canary.txt"), c.want, 0o644))
	return c
}

// Check fails t if the canary directory holds anything but the untouched canary file.
func (c *Canary) Check(t testing.TB) {
	t.Helper()
	names, err := os.ReadDir(c.Dir)
	must(t, err)
	if len(names) != 1 || names[0].Name() != "canary.txt" {
		var got []string
		for _, n := range names {
			got = append(got, n.Name())
		}
		t.Fatalf("canary directory %s was written to: %q", c.Dir, got)
	}
	data, err := os.ReadFile(filepath.Join(c.Dir, "canary.txt"))
	must(t, err)
	if !bytes.Equal(data, c.want) {
		t.Fatalf("canary file was modified: %q", data)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func statIno(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}
