package dir

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/internal/prereq"
	"github.com/ferry-nas/ferry/storage/storagetest"
)

func newTestBackend(t testing.TB, opts ...Option) *Backend {
	t.Helper()
	root := t.TempDir()
	t.Cleanup(func() { removeTree(root) }) // snapshots are read-only
	opts = append([]Option{WithCheckpointEvery(16<<10, time.Hour)}, opts...)
	b, err := New(root, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func harness(t *testing.T) storagetest.Harness {
	src, dst := newTestBackend(t), newTestBackend(t)
	pick := func(s storagetest.Side) *Backend {
		if s == storagetest.Source {
			return src
		}
		return dst
	}
	return storagetest.Harness{
		Source: src,
		Target: dst,
		CreateDataset: func(t testing.TB, s storagetest.Side, ds string) {
			if err := os.MkdirAll(pick(s).live(ds), 0o755); err != nil {
				t.Fatal(err)
			}
		},
		LivePath:     func(s storagetest.Side, ds string) string { return pick(s).live(ds) },
		RootDir:      func(s storagetest.Side) string { return pick(s).root },
		SnapshotPath: func(s storagetest.Side, ds, name string) string { return pick(s).snapTree(ds, name) },
		Tamper:       func(t testing.TB, s storagetest.Side, ds, name string) { tamper(t, pick(s).snapTree(ds, name)) },
		Backdate: func(t testing.TB, s storagetest.Side, ds, name string, at time.Time) {
			storagetest.BackdateMetaFile(t, pick(s).metaPath(ds, name), at)
		},
		ResumeByOffset:      true,
		HostileStreams:      hostileStreams,
		IndependentReceives: true,
		ReplicaView:         true,
		SmallTarget:         smallTarget,
	}
}

// smallTarget is a dir backend on a fresh 32 MiB tmpfs (root only).
func smallTarget(t testing.TB) storagetest.SmallTarget {
	prereq.Need(t, "dir", prereq.Root)
	const capacity = 32 << 20
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", capacity)); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	b, err := New(mnt, WithCheckpointEvery(16<<10, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return storagetest.SmallTarget{Backend: b, Root: mnt, Capacity: capacity}
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, harness)
}

// tamper flips a byte of the first non-empty file in a snapshot tree,
// keeping its mode and mtime.
func tamper(t testing.TB, tree string) {
	t.Helper()
	done := false
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil || done || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil || fi.Size() == 0 {
			return err
		}
		os.Chmod(p, fi.Mode()|0o200)
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		b := make([]byte, 1)
		f.ReadAt(b, 0)
		b[0] ^= 0xff
		f.WriteAt(b, 0)
		f.Close()
		os.Chmod(p, fi.Mode())
		os.Chtimes(p, fi.ModTime(), fi.ModTime())
		done = true
		return nil
	})
	if err != nil || !done {
		t.Fatalf("tamper: %v (done %v)", err, done)
	}
}

// ---- hand-built streams ----

type streamBuilder struct {
	buf bytes.Buffer
	tw  *tar.Writer
	n   int
}

func newStream(t testing.TB, name string, extra map[string]string) *streamBuilder {
	s := &streamBuilder{}
	s.tw = tar.NewWriter(&s.buf)
	rec := map[string]string{paxVersion: streamVersion, paxDataset: "hostile", paxSnapshot: name,
		paxGUID: "11111111-2222-3333-4444-555555555555", paxManifestDigest: "sha256:unknown"}
	for k, v := range extra {
		rec[k] = v
	}
	if err := s.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "ferry-stream", PAXRecords: rec, Format: tar.FormatPAX}); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *streamBuilder) dir(t testing.TB, name string) *streamBuilder {
	return s.add(t, &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: time.Unix(1, 0)}, nil)
}

func (s *streamBuilder) file(t testing.TB, name, content string) *streamBuilder {
	sum := sha256.Sum256([]byte(content))
	return s.add(t, &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(1, 0),
		PAXRecords: map[string]string{paxSHA256: hex.EncodeToString(sum[:])}}, []byte(content))
}

func (s *streamBuilder) symlink(t testing.TB, name, target string) *streamBuilder {
	return s.add(t, &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, ModTime: time.Unix(1, 0)}, nil)
}

func (s *streamBuilder) add(t testing.TB, h *tar.Header, content []byte) *streamBuilder {
	t.Helper()
	h.Format = tar.FormatPAX
	if err := s.tw.WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	if content != nil {
		if _, err := s.tw.Write(content); err != nil {
			t.Fatal(err)
		}
	}
	s.n++
	return s
}

func (s *streamBuilder) bytes(t testing.TB) []byte {
	t.Helper()
	if err := s.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "ferry-end", PAXRecords: map[string]string{paxEnd: strconv.Itoa(s.n)}, Format: tar.FormatPAX}); err != nil {
		t.Fatal(err)
	}
	if err := s.tw.Close(); err != nil {
		t.Fatal(err)
	}
	return s.buf.Bytes()
}

// hostileStreams are crafted dir streams a receive must refuse (KindInvalid)
// without writing outside its root.
func hostileStreams(t testing.TB, canary string) []storagetest.HostileStream {
	ups := "../../../../../../../../../../../../../../../../../../.."
	hs := func(what string, s *streamBuilder) storagetest.HostileStream {
		return storagetest.HostileStream{What: what, Name: "evil", Stream: s.bytes(t)}
	}
	return []storagetest.HostileStream{
		hs("dotdot path", newStream(t, "evil", nil).dir(t, ".").file(t, ups+canary+"/pwned", "x")),
		hs("dotdot inside path", newStream(t, "evil", nil).dir(t, ".").dir(t, "a").file(t, "a/../../pwned", "x")),
		hs("absolute path", newStream(t, "evil", nil).dir(t, ".").file(t, canary+"/pwned", "x")),
		hs("write through planted symlink", newStream(t, "evil", nil).dir(t, ".").symlink(t, "evil", canary).file(t, "evil/pwned", "x")),
		hs("directory through planted symlink", newStream(t, "evil", nil).dir(t, ".").symlink(t, "evil", canary).dir(t, "evil/sub")),
		hs("whiteout through planted symlink", newStream(t, "evil", nil).dir(t, ".").symlink(t, "evil", canary).
			add(t, &tar.Header{Typeflag: tar.TypeReg, Name: "evil/canary.txt", PAXRecords: map[string]string{paxWhiteout: "1"}}, nil)),
		hs("symlink then replaced by file in order", newStream(t, "evil", nil).dir(t, ".").symlink(t, "z", canary+"/canary.txt").file(t, "z", "overwrite")),
		hs("hard link", newStream(t, "evil", nil).dir(t, ".").add(t, &tar.Header{Typeflag: tar.TypeLink, Name: "hl", Linkname: canary + "/canary.txt"}, nil)),
		hs("hard link with a wrong manifest digest", newStream(t, "evil", nil).dir(t, ".").file(t, "f", "x").add(t, &tar.Header{Typeflag: tar.TypeLink, Name: "hl", Linkname: "f"}, nil)),
		hs("hard link to a later path", newStream(t, "evil", nil).dir(t, ".").add(t, &tar.Header{Typeflag: tar.TypeLink, Name: "a", Linkname: "b"}, nil).file(t, "b", "x")),
		hs("hard link to itself", newStream(t, "evil", nil).dir(t, ".").add(t, &tar.Header{Typeflag: tar.TypeLink, Name: "a", Linkname: "a"}, nil)),
		hs("hard link through planted symlink", newStream(t, "evil", nil).dir(t, ".").symlink(t, "evil", canary).
			add(t, &tar.Header{Typeflag: tar.TypeLink, Name: "x", Linkname: "evil/canary.txt"}, nil)),
		hs("hard link to a symlink", newStream(t, "evil", nil).dir(t, ".").symlink(t, "a", canary+"/canary.txt").
			add(t, &tar.Header{Typeflag: tar.TypeLink, Name: "b", Linkname: "a"}, nil)),
		hs("hard link to a directory", newStream(t, "evil", nil).dir(t, ".").dir(t, "d").add(t, &tar.Header{Typeflag: tar.TypeLink, Name: "e", Linkname: "d"}, nil)),
		hs("hard link with dotdot", newStream(t, "evil", nil).dir(t, ".").dir(t, "d").add(t, &tar.Header{Typeflag: tar.TypeLink, Name: "e", Linkname: "d/../" + ups + canary + "/canary.txt"}, nil)),
		hs("xattr ferry never sends", newStream(t, "evil", nil).dir(t, ".").add(t, &tar.Header{Typeflag: tar.TypeDir, Name: "d", Mode: 0o755,
			PAXRecords: map[string]string{paxXattr + "system.nfs4_acl": "x"}}, nil)),
		hs("sparse data beyond the size", newStream(t, "evil", nil).dir(t, ".").add(t, &tar.Header{Typeflag: tar.TypeReg, Name: "f", Size: 1,
			PAXRecords: map[string]string{paxSparse: "10+1", paxSize: "5"}}, []byte("x"))),
		hs("sparse segments overlapping", newStream(t, "evil", nil).dir(t, ".").add(t, &tar.Header{Typeflag: tar.TypeReg, Name: "f", Size: 4,
			PAXRecords: map[string]string{paxSparse: "0+2,1+2", paxSize: "5"}}, []byte("xxxx"))),
		hs("sparse segments longer than the body", newStream(t, "evil", nil).dir(t, ".").add(t, &tar.Header{Typeflag: tar.TypeReg, Name: "f", Size: 1,
			PAXRecords: map[string]string{paxSparse: "0+2", paxSize: "5"}}, []byte("x"))),
		hs("char device", newStream(t, "evil", nil).dir(t, ".").add(t, &tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}, nil)),
		hs("block device", newStream(t, "evil", nil).dir(t, ".").add(t, &tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Devmajor: 8}, nil)),
		hs("fifo", newStream(t, "evil", nil).dir(t, ".").add(t, &tar.Header{Typeflag: tar.TypeFifo, Name: "fifo"}, nil)),
		hs("duplicate entry", newStream(t, "evil", nil).dir(t, ".").file(t, "f", "1").file(t, "f", "2")),
		hs("out of order", newStream(t, "evil", nil).dir(t, ".").file(t, "b", "1").file(t, "a", "2")),
		hs("unclean name", newStream(t, "evil", nil).dir(t, ".").file(t, "./a", "1")),
		hs("trailing slash", newStream(t, "evil", nil).dir(t, ".").dir(t, "a/")),
		hs("empty component", newStream(t, "evil", nil).dir(t, ".").dir(t, "a").file(t, "a//b", "1")),
		hs("missing parent", newStream(t, "evil", nil).dir(t, ".").file(t, "nodir/f", "1")),
		hs("root as a file", newStream(t, "evil", nil).file(t, ".", "1")),
		hs("content hash mismatch", newStream(t, "evil", nil).dir(t, ".").add(t, &tar.Header{Typeflag: tar.TypeReg, Name: "f", Size: 1,
			PAXRecords: map[string]string{paxSHA256: "00"}}, []byte("x"))),
		hs("manifest digest mismatch", newStream(t, "evil", nil).dir(t, ".").file(t, "f", "1")),
		hs("wrong end count", func() *streamBuilder { s := newStream(t, "evil", nil).dir(t, "."); s.n = 5; return s }()),
		hs("incremental claimed as full", newStream(t, "evil", map[string]string{paxParentGUID: "x", paxParentSnapshot: "p"}).dir(t, ".")),
	}
}
