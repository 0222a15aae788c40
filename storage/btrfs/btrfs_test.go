package btrfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/internal/loopfs"
	"github.com/ferry-nas/ferry/internal/prereq"
	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/storagetest"
)

var ctx = context.Background()

func TestMain(m *testing.M) {
	// A crashed earlier run may have left loop devices and mounts behind;
	// only ferry's own (by their image path) whose process is gone are reaped.
	if os.Geteuid() == 0 {
		if reaped, err := loopfs.ReapStale(""); err != nil {
			fmt.Fprintf(os.Stderr, "btrfs tests: reaping stale loop filesystems: %v\n", err)
		} else if len(reaped) > 0 {
			fmt.Fprintf(os.Stderr, "btrfs tests: reaped %d stale loop filesystem(s) of a crashed run: %q\n", len(reaped), reaped)
		}
	}
	os.Exit(m.Run())
}

// need skips (or, with FERRY_REQUIRE=btrfs, fails) without root, btrfs-progs,
// kernel btrfs or loop devices.
func need(t testing.TB) {
	t.Helper()
	prereq.Need(t, "btrfs", prereq.All(
		prereq.Root,
		prereq.Commands("btrfs", "mkfs.btrfs", "losetup"),
		prereq.Filesystem("btrfs"),
		prereq.LoopDevices,
	))
}

const imageSize = 384 << 20

// newBackend makes a btrfs filesystem and a checked backend on it.
func newBackend(t testing.TB, size int64, opts ...Option) *Backend {
	t.Helper()
	mnt := loopfs.New(t, size)
	b, err := New(mnt, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

// createDataset makes the live subvolume <root>/<ds> (parents as plain directories).
func createDataset(t testing.TB, b *Backend, ds string) string {
	t.Helper()
	p := b.live(ds)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	btrfsCmd(t, "subvolume", "create", p)
	return p
}

func btrfsCmd(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("btrfs", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("btrfs %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// tamperWithSnapshot does what an administrator should never do to a
// received snapshot: make it writable, change a file (keeping its size and
// mtime), make it read-only again.
func tamperWithSnapshot(t testing.TB, p string) {
	t.Helper()
	btrfsCmd(t, "property", "set", "-f", "-ts", p, "ro", "false")
	flipFirstByte(t, p)
	btrfsCmd(t, "property", "set", "-ts", p, "ro", "true")
}

func flipFirstByte(t testing.TB, root string) {
	t.Helper()
	done := false
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || done || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil || fi.Size() == 0 {
			return err
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		c := make([]byte, 1)
		f.ReadAt(c, 0)
		c[0] ^= 0xff
		f.WriteAt(c, 0)
		f.Close()
		os.Chtimes(p, fi.ModTime(), fi.ModTime())
		done = true
		return nil
	})
	if err != nil || !done {
		t.Fatalf("tamper: %v (done %v)", err, done)
	}
}

// harness builds the conformance harness on two fresh loop filesystems.
// staged makes every receive of unknown size spool first (threshold 0), and
// checkpoint every 16 KiB so that cuts resume past the start.
func harness(staged bool) func(t *testing.T) storagetest.Harness {
	return func(t *testing.T) storagetest.Harness {
		need(t)
		opts := []Option{WithCheckpointEvery(16<<10, time.Hour)}
		if staged {
			opts = append(opts, WithStagedThreshold(0))
		}
		src, dst := newBackend(t, imageSize, opts...), newBackend(t, imageSize, opts...)
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
				createDataset(t, pick(s), ds)
			},
			LivePath:     func(s storagetest.Side, ds string) string { return pick(s).live(ds) },
			RootDir:      func(s storagetest.Side) string { return pick(s).root },
			SnapshotPath: func(s storagetest.Side, ds, name string) string { return pick(s).subvolPath(ds, name) },
			Tamper: func(t testing.TB, s storagetest.Side, ds, name string) {
				tamperWithSnapshot(t, pick(s).subvolPath(ds, name))
			},
			Backdate: func(t testing.TB, s storagetest.Side, ds, name string, at time.Time) {
				storagetest.BackdateMetaFile(t, pick(s).metaPath(ds, name), at)
			},
			// Measured (TestSendIsDeterministic): btrfs send gives the same
			// bytes for the same request, so a staged receive resumes by
			// offset. In off mode nothing is resumable.
			ResumeByOffset:      staged,
			HostileStreams:      hostileStreams,
			IndependentReceives: true,
			ReplicaView:         true,
			SmallTarget: func(t testing.TB) storagetest.SmallTarget {
				const capacity = 128 << 20 // loopfs's smallest btrfs
				b := newBackend(t, capacity, opts...)
				return storagetest.SmallTarget{Backend: b, Root: b.root, Capacity: capacity}
			},
		}
	}
}

// TestConformanceStaged runs the suite with every receive spooled first:
// partials are resumable by offset.
func TestConformanceStaged(t *testing.T) {
	need(t)
	storagetest.Run(t, harness(true))
}

// TestConformanceOff runs the suite with every receive piped straight into
// btrfs receive: partials are discarded, never resumed.
func TestConformanceOff(t *testing.T) {
	need(t)
	storagetest.Run(t, harness(false))
}

// ---- hand-made streams ----

type tlv struct {
	typ uint16
	val []byte
}

func tStr(typ uint16, s string) tlv { return tlv{typ, []byte(s)} }
func tU64(typ uint16, v uint64) tlv {
	return tlv{typ, binary.LittleEndian.AppendUint64(nil, v)}
}
func tUUID(typ uint16, u uuid.UUID) tlv { return tlv{typ, u[:]} }

const (
	attrIno      = 3
	attrMode     = 5
	attrXattrNam = 13
)

// streamBuilder writes btrfs send streams (version 1) command by command.
type streamBuilder struct{ buf bytes.Buffer }

func newStreamBuilder() *streamBuilder {
	s := &streamBuilder{}
	s.buf.WriteString(streamMagic)
	s.buf.Write(binary.LittleEndian.AppendUint32(nil, 1))
	return s
}

var hostileUUID = uuid.MustParse("6b1e8e5c-7d1f-4a55-9a0e-2f3c4d5e6f70")

// subvol starts a full stream of subvolume name.
func subvolStream(name string) *streamBuilder {
	return newStreamBuilder().cmd(cmdSubvol, tStr(attrPath, name), tUUID(attrUUID, hostileUUID), tU64(attrCtransid, 7))
}

func (s *streamBuilder) cmd(typ uint16, attrs ...tlv) *streamBuilder {
	var payload []byte
	for _, a := range attrs {
		payload = binary.LittleEndian.AppendUint16(payload, a.typ)
		payload = binary.LittleEndian.AppendUint16(payload, uint16(len(a.val)))
		payload = append(payload, a.val...)
	}
	hdr := make([]byte, cmdHeaderLen)
	binary.LittleEndian.PutUint32(hdr[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint16(hdr[4:], typ)
	raw := append(hdr, payload...)
	binary.LittleEndian.PutUint32(raw[6:], btrfsCRC(raw))
	s.buf.Write(raw)
	return s
}

func (s *streamBuilder) end() *streamBuilder { return s.cmd(cmdEnd) }
func (s *streamBuilder) bytes() []byte       { return bytes.Clone(s.buf.Bytes()) }

func (s *streamBuilder) mkfile(p string, ino uint64) *streamBuilder {
	return s.cmd(cmdMkfile, tStr(attrPath, p), tU64(attrIno, ino))
}

// hostileStreams are crafted btrfs streams a receive must refuse with
// KindInvalid, leaving nothing behind and nothing written outside the root.
func hostileStreams(t testing.TB, canary string) []storagetest.HostileStream {
	ups := strings.Repeat("../", 20)
	hs := func(what string, s *streamBuilder) storagetest.HostileStream {
		return storagetest.HostileStream{What: what, Name: "evil", Stream: s.bytes()}
	}
	badCRC := subvolStream("evil").mkfile("f", 257).end().bytes()
	badCRC[streamHeaderLen+cmdHeaderLen+2] ^= 0xff
	return []storagetest.HostileStream{
		hs("not a btrfs stream", &streamBuilder{buf: *bytes.NewBufferString("this is not a btrfs send stream at all, just text")}),
		hs("future stream version", func() *streamBuilder {
			s := &streamBuilder{}
			s.buf.WriteString(streamMagic)
			s.buf.Write(binary.LittleEndian.AppendUint32(nil, 99))
			return s
		}()),
		{What: "bad CRC", Name: "evil", Stream: badCRC},
		hs("unknown command", subvolStream("evil").cmd(200, tStr(attrPath, "x")).end()),
		hs("dotdot path", subvolStream("evil").mkfile(ups+canary+"/pwned", 257).end()),
		hs("dotdot inside path", subvolStream("evil").cmd(cmdMkdir, tStr(attrPath, "a"), tU64(attrIno, 257)).mkfile("a/../../pwned", 258).end()),
		hs("absolute path", subvolStream("evil").mkfile(canary+"/pwned", 257).end()),
		hs("rename out", subvolStream("evil").mkfile("f", 257).cmd(cmdRename, tStr(attrPath, "f"), tStr(attrPathTo, "../pwned")).end()),
		hs("hard link to outside", subvolStream("evil").cmd(cmdLink, tStr(attrPath, "hl"), tStr(attrPathLink, "../../../"+canary+"/canary.txt")).end()),
		hs("write through planted symlink", subvolStream("evil").
			cmd(cmdSymlink, tStr(attrPath, "link"), tU64(attrIno, 257), tStr(attrPathLink, canary)).
			mkfile("link/pwned", 258).end()),
		hs("write through symlink to the receive root", subvolStream("evil").
			cmd(cmdSymlink, tStr(attrPath, "link"), tU64(attrIno, 257), tStr(attrPathLink, "/")).
			mkfile("link/pwned", 258).end()),
		hs("clone from a foreign subvolume", subvolStream("evil").mkfile("f", 257).
			cmd(cmdClone, tStr(attrPath, "f"), tU64(18, 0), tU64(24, 4096), tUUID(attrCloneUUID, uuid.New()), tU64(attrCloneCtransid, 1),
				tStr(attrClonePath, "x"), tU64(23, 0)).end()),
		hs("two subvolumes", subvolStream("evil").cmd(cmdSubvol, tStr(attrPath, "evil2"), tUUID(attrUUID, uuid.New()), tU64(attrCtransid, 1)).end()),
		hs("data after the end", subvolStream("evil").end().mkfile("late", 257)),
		hs("no end command", subvolStream("evil").mkfile("f", 257)),
		hs("subvolume of another name", subvolStream("other").end()),
		hs("subvolume path with a slash", subvolStream("../evil").end()),
		hs("incremental claimed as full", newStreamBuilder().cmd(cmdSnapshot, tStr(attrPath, "evil"), tUUID(attrUUID, hostileUUID), tU64(attrCtransid, 7),
			tUUID(attrCloneUUID, uuid.New()), tU64(attrCloneCtransid, 3)).end()),
		hs("command longer than the stream", func() *streamBuilder {
			s := subvolStream("evil")
			hdr := make([]byte, cmdHeaderLen)
			binary.LittleEndian.PutUint32(hdr, 1<<20)
			binary.LittleEndian.PutUint16(hdr[4:], cmdWrite)
			s.buf.Write(hdr)
			return s
		}()),
	}
}

// ---- btrfs-specific behaviour ----

// pair is a source with a dataset of MakeTree content and one snapshot, and
// an empty target.
type pair struct {
	src, dst *Backend
	live     string
	s1       storage.Snapshot
	full     []byte
}

func newPair(t *testing.T, dstSize int64, opts ...Option) *pair {
	t.Helper()
	need(t)
	p := &pair{src: newBackend(t, imageSize), dst: newBackend(t, dstSize, opts...)}
	p.live = createDataset(t, p.src, storagetest.SourceDataset)
	storagetest.MakeTree(t, p.live)
	var err error
	if p.s1, err = p.src.CreateSnapshot(ctx, storagetest.SourceDataset, "snap1"); err != nil {
		t.Fatal(err)
	}
	p.full = sendBytes(t, p.src, storage.SendRequest{Dataset: storagetest.SourceDataset, To: "snap1"})
	return p
}

func sendBytes(t testing.TB, b *Backend, req storage.SendRequest) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := b.Send(ctx, req, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func kindIs(t testing.TB, err error, want storage.Kind) {
	t.Helper()
	if err == nil {
		t.Fatalf("expected a %v error, got success", want)
	}
	if got := storage.KindOf(err); got != want {
		t.Fatalf("error kind %v, want %v: %v", got, want, err)
	}
}

func partialsOf(t testing.TB, b *Backend, ds string) []storage.Partial {
	t.Helper()
	ps, err := b.Partials(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func listedNames(t testing.TB, b *Backend, ds string) []string {
	t.Helper()
	list, err := b.ListSnapshots(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range list {
		out = append(out, s.Name)
	}
	return out
}

var errCut = errors.New("test: link dropped")

// TestOffModeCutLeavesDiscardablePartial: the Rockstor failure, in ferry.
// A receive cut half-way in off mode leaves a writable subvolume without
// received_uuid in staging; it is reported, never listed, and discarded.
func TestOffModeCutLeavesDiscardablePartial(t *testing.T) {
	p := newPair(t, imageSize)
	ds := storagetest.TargetDataset
	before := storagetest.Footprint(t, p.dst.root)
	req := storage.ReceiveRequest{Dataset: ds, Name: "snap1", SourceGUID: p.s1.GUID, Mode: storage.ResumeOff}
	_, err := p.dst.Receive(ctx, req, storagetest.CutStream(t, p.full, resume.Position{}, int64(len(p.full)/2), errCut))
	kindIs(t, err, storage.KindTemporary)
	if !errors.Is(err, errCut) {
		t.Fatalf("the stream's error is not in the chain: %v", err)
	}
	if names := listedNames(t, p.dst, ds); len(names) != 0 {
		t.Fatalf("a cut receive is listed: %q", names)
	}
	sv, err := p.dst.show(ctx, p.dst.stage(ds, "snap1")+"/snap1")
	if err != nil {
		t.Fatalf("the partial subvolume is not in staging: %v", err)
	}
	if sv.ReadOnly || sv.ReceivedUUID != "" {
		t.Fatalf("a cut receive's subvolume is %s: btrfs receive must never have finished it", describe(sv))
	}
	ps := partialsOf(t, p.dst, ds)
	if len(ps) != 1 || ps[0].Name != "snap1" || ps[0].Resume != nil || !strings.Contains(ps[0].Reason, "writable") {
		t.Fatalf("partials: %+v", ps)
	}
	if _, err := p.dst.Verify(ctx, storage.VerifyRequest{Dataset: ds, Name: "snap1", SourceGUID: p.s1.GUID}); storage.KindOf(err) != storage.KindNotFound {
		t.Fatalf("verify of a partial: %v", err)
	}
	if err := p.dst.DiscardPartial(ctx, ps[0]); err != nil {
		t.Fatal(err)
	}
	if ps := partialsOf(t, p.dst, ds); len(ps) != 0 {
		t.Fatalf("partials after discard: %+v", ps)
	}
	if after := storagetest.Footprint(t, p.dst.root); !slicesEqual(before, after) {
		t.Fatalf("discard left things behind:\nbefore %q\nafter  %q", before, after)
	}

	// A cut after the last byte (the trailer check failing) is no better:
	// btrfs receive never got the end command.
	_, err = p.dst.Receive(ctx, req, storagetest.CutStream(t, p.full, resume.Position{}, int64(len(p.full)), errCut))
	kindIs(t, err, storage.KindTemporary)
	if sv, err := p.dst.show(ctx, p.dst.stage(ds, "snap1")+"/snap1"); err != nil || sv.ReadOnly || sv.ReceivedUUID != "" {
		t.Fatalf("after a failed trailer the subvolume is %+v (%v)", sv, err)
	}
	// The next receive (no resume) replaces the partial and succeeds.
	got, err := p.dst.Receive(ctx, req, storagetest.Stream(t, p.full, resume.Position{}))
	if err != nil {
		t.Fatal(err)
	}
	if got.ReceivedGUID != p.s1.GUID || !got.ReadOnly {
		t.Fatalf("received %+v", got)
	}
	sameDigest(t, p.src, storagetest.SourceDataset, p.dst, ds, "snap1")
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sameDigest(t testing.TB, a *Backend, ads string, b *Backend, bds, name string) {
	t.Helper()
	da, err := a.ContentDigest(ctx, ads, name)
	if err != nil {
		t.Fatal(err)
	}
	db, err := b.ContentDigest(ctx, bds, name)
	if err != nil {
		t.Fatal(err)
	}
	if da != db {
		t.Fatalf("content digest of %s: source %s, target %s", name, da, db)
	}
}

// TestStagedCutResumes: the same cut in staged mode keeps a durable spool
// of every whole command that arrived, whether checkpoints ran before the
// cut or not (the position at the cut is then hashed from the spool); the
// retry asks the source for a fresh send, skips the durable prefix (as the
// data plane does) and ends with the source's content.
func TestStagedCutResumes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		every int64
	}{{"checkpoints every 64 KiB", 64 << 10}, {"no checkpoint before the cut", 1 << 40}} {
		t.Run(tc.name, func(t *testing.T) { testStagedCutResumes(t, tc.every) })
	}
}

func testStagedCutResumes(t *testing.T, every int64) {
	p := newPair(t, imageSize, WithCheckpointEvery(every, time.Hour))
	ds := storagetest.TargetDataset
	var durable []resume.Position
	req := storage.ReceiveRequest{Dataset: ds, Name: "snap1", SourceGUID: p.s1.GUID, Mode: storage.ResumeStaged,
		Durable: func(pos resume.Position) { durable = append(durable, pos) }}
	cut := int64(len(p.full) * 2 / 3)
	_, err := p.dst.Receive(ctx, req, storagetest.CutStream(t, p.full, resume.Position{}, cut, errCut))
	kindIs(t, err, storage.KindTemporary)
	ps := partialsOf(t, p.dst, ds)
	if len(ps) != 1 || ps[0].Resume == nil || ps[0].SourceGUID != p.s1.GUID {
		t.Fatalf("partials: %+v", ps)
	}
	from := *ps[0].Resume
	if from.Offset <= int64(len(p.full)/2) || from.Offset > cut {
		t.Fatalf("durable offset %d, cut at %d of %d", from.Offset, cut, len(p.full))
	}
	if len(durable) == 0 || durable[len(durable)-1].Offset != from.Offset {
		t.Fatalf("Durable was not told the resume offset %d: %d calls", from.Offset, len(durable))
	}
	if names := listedNames(t, p.dst, ds); len(names) != 0 {
		t.Fatalf("a spooled receive is listed: %q", names)
	}
	// The source regenerates the stream; the prefix must match.
	again := sendBytes(t, p.src, storage.SendRequest{Dataset: storagetest.SourceDataset, To: "snap1"})
	want, _ := from.PrefixDigest()
	r, _ := resume.NewReader(bytes.NewReader(again[:from.Offset]), resume.Position{})
	if _, err := r.Read(make([]byte, from.Offset)); err != nil || r.Sum() != want {
		t.Fatal("the regenerated stream's prefix differs from the durable one: btrfs send is not deterministic here")
	}
	req.Resume, req.Durable = true, nil
	got, err := p.dst.Receive(ctx, req, storagetest.Stream(t, again, from))
	if err != nil {
		t.Fatal(err)
	}
	if got.ReceivedGUID != p.s1.GUID {
		t.Fatalf("received %+v", got)
	}
	sameDigest(t, p.src, storagetest.SourceDataset, p.dst, ds, "snap1")
	if ps := partialsOf(t, p.dst, ds); len(ps) != 0 {
		t.Fatalf("partials after the resumed receive: %+v", ps)
	}
	if _, err := os.Stat(p.dst.spoolPath(ds, "snap1")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("spool left after commit: %v", err)
	}
}

// TestLeftoversAndForeignItems: what ferry's own interrupted work leaves
// (a receive cut mid-stream, a create interrupted before its metadata) is a
// partial: reported by Partials and discarded. Subvolumes ferry did not make
// (hand-made in staging, where a snapshot directory belongs, in a snapshot
// directory without metadata) are foreign: never listed, never a partial,
// reported by Anomalies, refused by DiscardPartial, left in place, and a
// receive of a name they occupy fails with Conflict naming them.
func TestLeftoversAndForeignItems(t *testing.T) {
	p := newPair(t, imageSize)
	ds := storagetest.TargetDataset
	b := p.dst
	handMade := func(path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		btrfsCmd(t, "subvolume", "create", path)
		if err := os.WriteFile(filepath.Join(path, "half-a-file"), []byte("2.7 GB of 7.5"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	handMade(b.stage(ds, "snap9") + "/snap9")                   // in the layout of an interrupted receive, without its record
	handMade(b.stage(ds, "old-staged"))                         // a subvolume directly in staging
	handMade(b.subvolPath(ds, "snap0"))                         // a snapshot directory holding a writable subvolume
	handMade(b.container(ds, "rockstor_share_6_replication_1")) // a subvolume where a snapshot directory belongs
	// A read-only subvolume without ferry's metadata that is not a snapshot of the live dataset.
	if err := os.MkdirAll(b.container(ds, "snapx"), 0o700); err != nil {
		t.Fatal(err)
	}
	btrfsCmd(t, "subvolume", "snapshot", "-r", b.stage(ds, "snap9")+"/snap9", b.subvolPath(ds, "snapx"))

	// Ferry's own interrupted work: a receive cut mid-stream (off mode) ...
	_, err := b.Receive(ctx, storage.ReceiveRequest{Dataset: ds, Name: "snap1", SourceGUID: p.s1.GUID, Mode: storage.ResumeOff},
		storagetest.CutStream(t, p.full, resume.Position{}, int64(len(p.full)/2), errCut))
	kindIs(t, err, storage.KindTemporary)
	// ... and, on the source, a create interrupted before its metadata.
	if _, err := p.src.CreateSnapshot(ctx, storagetest.SourceDataset, "half"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p.src.metaPath(storagetest.SourceDataset, "half")); err != nil {
		t.Fatal(err)
	}

	if names := listedNames(t, b, ds); len(names) != 0 {
		t.Fatalf("leftovers listed as snapshots: %q", names)
	}
	ps := partialsOf(t, b, ds)
	if len(ps) != 1 || ps[0].Name != "snap1" || ps[0].SourceGUID != p.s1.GUID || !strings.Contains(ps[0].Reason, "interrupted btrfs receive") {
		t.Fatalf("partials: %+v, want only the cut receive", ps)
	}
	srcPs := partialsOf(t, p.src, storagetest.SourceDataset)
	if len(srcPs) != 1 || srcPs[0].Name != "half" || !strings.Contains(srcPs[0].Reason, "interrupted create") {
		t.Fatalf("source partials: %+v, want the interrupted create", srcPs)
	}
	if as, err := p.src.Anomalies(ctx, storagetest.SourceDataset); err != nil || len(as) != 0 {
		t.Fatalf("source anomalies: %+v %v", as, err)
	}
	as, err := b.Anomalies(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]storage.Anomaly{}
	for _, a := range as {
		byName[a.Name] = a
		t.Logf("%s %s (%s): %s", a.Kind, a.Name, a.ID, a.What)
		if a.Kind != storage.Foreign {
			t.Fatalf("%s is %s, want foreign", a.Name, a.Kind)
		}
	}
	for name, want := range map[string]string{
		"snap9":                          "without a record of a receive ferry started",
		"old-staged":                     "a subvolume in place of a receive directory",
		"snap0":                          "no record of",
		"rockstor_share_6_replication_1": "not ferry's layout",
		"snapx":                          "no record of",
	} {
		if a, ok := byName[name]; !ok || !strings.Contains(a.What, want) {
			t.Fatalf("anomaly %s: %+v, want one saying %q (all: %+v)", name, a, want, as)
		}
	}
	if len(as) != 5 {
		t.Fatalf("%d anomalies, want 5: %+v", len(as), as)
	}
	before := storagetest.Footprint(t, b.root)
	for _, a := range as {
		err := b.DiscardPartial(ctx, storage.Partial{Dataset: ds, Name: a.Name, ID: a.ID})
		kindIs(t, err, storage.KindConflict)
	}
	// A receive of a name a foreign item occupies is refused, naming it.
	_, err = b.Receive(ctx, storage.ReceiveRequest{Dataset: ds, Name: "snap9", SourceGUID: p.s1.GUID}, storagetest.Stream(t, p.full, resume.Position{}))
	kindIs(t, err, storage.KindConflict)
	if !strings.Contains(err.Error(), byName["snap9"].ID) || !strings.Contains(err.Error(), "move it out of .ferry/") {
		t.Fatalf("the refusal does not name the foreign item and the fix: %v", err)
	}
	if after := storagetest.Footprint(t, b.root); !slicesEqual(before, after) {
		t.Fatalf("refusals changed the target:\nbefore %q\nafter  %q", before, after)
	}

	for _, part := range append(ps, srcPs...) {
		owner := b
		if part.Dataset == storagetest.SourceDataset {
			owner = p.src
		}
		if err := owner.DiscardPartial(ctx, part); err != nil {
			t.Fatalf("discard %s: %v", part.ID, err)
		}
	}
	if ps := partialsOf(t, b, ds); len(ps) != 0 {
		t.Fatalf("partials after discard: %+v", ps)
	}
	if as2, _ := b.Anomalies(ctx, ds); len(as2) != 5 {
		t.Fatalf("discarding partials touched foreign items: %+v", as2)
	}
	// Foreign items do not stand in the way of other names.
	if _, err := b.Receive(ctx, storage.ReceiveRequest{Dataset: ds, Name: "snap1", SourceGUID: p.s1.GUID}, storagetest.Stream(t, p.full, resume.Position{})); err != nil {
		t.Fatal(err)
	}
	sameDigest(t, p.src, storagetest.SourceDataset, b, ds, "snap1")
	// A discard never touches a complete snapshot.
	err = b.DiscardPartial(ctx, storage.Partial{Dataset: ds, Name: "snap1", ID: b.rel(b.container(ds, "snap1"))})
	kindIs(t, err, storage.KindConflict)
	for _, id := range []string{"../x", ".ferry/snapshots/other/snap1", "/etc", ".ferry/staging/" + storage.EscapeDataset(ds) + "/.."} {
		if err := b.DiscardPartial(ctx, storage.Partial{Dataset: ds, ID: id}); storage.KindOf(err) != storage.KindInvalid {
			t.Fatalf("discard of %q: %v", id, err)
		}
	}
}

// TestModifiedSnapshotNeverUsed is issue 7's tampering: the newest received
// snapshot made writable with the raw ioctl (received_uuid kept), a file
// added, made read-only again. It is no longer listed, Anomalies reports it
// as modified saying what changed, it is not a partial and is never
// discarded, and neither an incremental on top of it nor a receive of its
// name goes through: the target is left as it was.
func TestModifiedSnapshotNeverUsed(t *testing.T) {
	p := newPair(t, imageSize)
	ds := storagetest.TargetDataset
	if _, err := p.dst.Receive(ctx, storage.ReceiveRequest{Dataset: ds, Name: "snap1", SourceGUID: p.s1.GUID}, storagetest.Stream(t, p.full, resume.Position{})); err != nil {
		t.Fatal(err)
	}
	storagetest.MutateTree(t, p.live, 1)
	s2, err := p.src.CreateSnapshot(ctx, storagetest.SourceDataset, "snap2")
	if err != nil {
		t.Fatal(err)
	}
	incr := sendBytes(t, p.src, storage.SendRequest{Dataset: storagetest.SourceDataset, From: "snap1", To: "snap2"})

	sub := p.dst.subvolPath(ds, "snap1")
	setReadOnly(t, sub, false)
	if err := os.WriteFile(filepath.Join(sub, "injected.txt"), []byte("not from the source"), 0o644); err != nil {
		t.Fatal(err)
	}
	setReadOnly(t, sub, true)
	if sv, err := p.dst.show(ctx, sub); err != nil || !sv.ReadOnly || sv.ReceivedUUID != p.s1.GUID {
		t.Fatalf("the tampering should keep read-only and received_uuid: %+v %v", sv, err)
	}
	before := storagetest.Footprint(t, p.dst.root)

	if names := listedNames(t, p.dst, ds); len(names) != 0 {
		t.Fatalf("the modified snapshot is listed: %q", names)
	}
	if ps := partialsOf(t, p.dst, ds); len(ps) != 0 {
		t.Fatalf("the modified snapshot is a partial: %+v", ps)
	}
	as, err := p.dst.Anomalies(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || as[0].Kind != storage.Modified || as[0].Name != "snap1" || !strings.Contains(as[0].What, "content changed after ferry committed it (ctransid") {
		t.Fatalf("anomalies: %+v, want snap1 modified with its ctransid", as)
	}
	t.Logf("%s %s: %s", as[0].Kind, as[0].ID, as[0].What)
	err = p.dst.DiscardPartial(ctx, storage.Partial{Dataset: ds, Name: "snap1", ID: as[0].ID})
	kindIs(t, err, storage.KindConflict)
	_, err = p.dst.Receive(ctx, storage.ReceiveRequest{Dataset: ds, Name: "snap2", SourceGUID: s2.GUID, Parent: "snap1"}, storagetest.Stream(t, incr, resume.Position{}))
	kindIs(t, err, storage.KindConflict)
	if !strings.Contains(err.Error(), "modified") || !strings.Contains(err.Error(), "ctransid") || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("the refused incremental does not say what changed and what to do: %v", err)
	}
	t.Logf("incremental on it: %v", err)
	_, err = p.dst.Receive(ctx, storage.ReceiveRequest{Dataset: ds, Name: "snap1", SourceGUID: p.s1.GUID}, storagetest.Stream(t, p.full, resume.Position{}))
	kindIs(t, err, storage.KindConflict)
	_, err = p.dst.Verify(ctx, storage.VerifyRequest{Dataset: ds, Name: "snap1", SourceGUID: p.s1.GUID})
	kindIs(t, err, storage.KindConflict)
	_, err = p.dst.ContentDigest(ctx, ds, "snap1")
	kindIs(t, err, storage.KindConflict)
	if after := storagetest.Footprint(t, p.dst.root); !slicesEqual(before, after) {
		t.Fatalf("refusals changed the target:\nbefore %q\nafter  %q", before, after)
	}
}

// TestNoSpace: a target too small for the stream fails with NoSpace in both
// modes, naming what it was writing, and keeps nothing partial.
func TestNoSpace(t *testing.T) {
	need(t)
	src := newBackend(t, 512<<20)
	live := createDataset(t, src, "big")
	storagetest.WriteFile(t, filepath.Join(live, "incompressible.bin"), storagetest.Random(42, 200<<20), 0o644, 1)
	s, err := src.CreateSnapshot(ctx, "big", "s1")
	if err != nil {
		t.Fatal(err)
	}
	data := sendBytes(t, src, storage.SendRequest{Dataset: "big", To: "s1"})
	for _, mode := range []storage.ResumeMode{storage.ResumeOff, storage.ResumeStaged} {
		t.Run(string(mode), func(t *testing.T) {
			dst := newBackend(t, 128<<20)
			before := storagetest.Footprint(t, dst.root)
			_, err := dst.Receive(ctx, storage.ReceiveRequest{Dataset: "big", Name: "s1", SourceGUID: s.GUID, Mode: mode, ExpectedSize: int64(len(data))},
				storagetest.Stream(t, data, resume.Position{}))
			kindIs(t, err, storage.KindNoSpace)
			var se *storage.Error
			if !errors.As(err, &se) || se.Fix == "" {
				t.Fatalf("no fix in %v", err)
			}
			t.Logf("%s: %v", mode, err)
			// What was being written: the file for btrfs receive, the spool
			// when staging; the space is measured once the partial is gone.
			wantFile := map[storage.ResumeMode]string{storage.ResumeOff: `"incompressible.bin"`, storage.ResumeStaged: "the stream's spool .ferry/staging/big/s1.spool"}[mode]
			var nse *storage.NoSpaceError
			switch {
			case !errors.As(err, &nse):
				t.Fatalf("no NoSpace detail in %v", err)
			case nse.File != wantFile:
				t.Errorf("NoSpace names %q, want %q", nse.File, wantFile)
			case nse.Need != int64(len(data)) || nse.Free < 32<<20 || nse.Free >= nse.Need:
				t.Errorf("NoSpace: need %d, free %d; want need %d and the discarded receive's space free again", nse.Need, nse.Free, len(data))
			}
			if ps := partialsOf(t, dst, "big"); len(ps) != 0 {
				t.Fatalf("partials after NoSpace: %+v", ps)
			}
			if names := listedNames(t, dst, "big"); len(names) != 0 {
				t.Fatalf("listed after NoSpace: %q", names)
			}
			if after := storagetest.Footprint(t, dst.root); !slicesEqual(before, after) {
				t.Fatalf("NoSpace left things behind:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
}

// TestVerifyDetectsModification: a received snapshot changed after receive
// fails Verify with Conflict, whether the change went through btrfs-progs
// (which drops received_uuid when forced writable) or through the raw
// ioctl (received_uuid kept; the ctransid gives it away).
func TestVerifyDetectsModification(t *testing.T) {
	p := newPair(t, imageSize)
	ds := storagetest.TargetDataset
	for _, name := range []string{"snap1", "snap2"} {
		var data []byte
		var s storage.Snapshot
		if name == "snap1" {
			data, s = p.full, p.s1
		} else {
			var err error
			if s, err = p.src.CreateSnapshot(ctx, storagetest.SourceDataset, "snap2"); err != nil {
				t.Fatal(err)
			}
			data = sendBytes(t, p.src, storage.SendRequest{Dataset: storagetest.SourceDataset, To: "snap2"})
		}
		if _, err := p.dst.Receive(ctx, storage.ReceiveRequest{Dataset: ds, Name: name, SourceGUID: s.GUID}, storagetest.Stream(t, data, resume.Position{})); err != nil {
			t.Fatal(err)
		}
		good := storage.VerifyRequest{Dataset: ds, Name: name, SourceGUID: s.GUID}
		if _, err := p.dst.Verify(ctx, good); err != nil {
			t.Fatal(err)
		}
		sub := p.dst.subvolPath(ds, name)
		if name == "snap1" {
			tamperWithSnapshot(t, sub)
		} else {
			setReadOnly(t, sub, false)
			flipFirstByte(t, sub)
			setReadOnly(t, sub, true)
			sv, err := p.dst.show(ctx, sub)
			if err != nil || sv.ReceivedUUID != s.GUID || !sv.ReadOnly {
				t.Fatalf("the raw ioctl should keep received_uuid and ro: %+v %v", sv, err)
			}
		}
		_, err := p.dst.Verify(ctx, good)
		kindIs(t, err, storage.KindConflict)
		t.Logf("%s: %v", name, err)
	}
}

// setReadOnly flips the subvolume's read-only flag with the raw ioctls,
// bypassing btrfs-progs' received_uuid handling.
func setReadOnly(t testing.TB, p string, ro bool) {
	t.Helper()
	const (
		getFlags = 2<<30 | 8<<16 | 0x94<<8 | 25 // _IOR(0x94, 25, __u64)
		setFlags = 1<<30 | 8<<16 | 0x94<<8 | 26 // _IOW(0x94, 26, __u64)
	)
	if err := subvolFlags(p, getFlags, setFlags, ro); err != nil {
		t.Fatal(err)
	}
}

// TestSendIsDeterministic measures what resuming by offset relies on: the
// same send request gives the same bytes, for a full and an incremental
// stream, sent twice in a row, after dropping the page cache, and after a
// full balance and a remount.
func TestSendIsDeterministic(t *testing.T) {
	need(t)
	mnt := loopfs.New(t, imageSize)
	b, err := New(mnt)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(ctx); err != nil {
		t.Fatal(err)
	}
	live := createDataset(t, b, "ds")
	storagetest.MakeTree(t, live)
	// Reflinked copies give the streams clone commands.
	if out, err := exec.Command("cp", "--reflink=always", filepath.Join(live, "docs/big.bin"), filepath.Join(live, "reflinked.bin")).CombinedOutput(); err != nil {
		t.Fatalf("cp --reflink: %v: %s", err, out)
	}
	if _, err := b.CreateSnapshot(ctx, "ds", "s1"); err != nil {
		t.Fatal(err)
	}
	storagetest.MutateTree(t, live, 1)
	if _, err := b.CreateSnapshot(ctx, "ds", "s2"); err != nil {
		t.Fatal(err)
	}
	full := storage.SendRequest{Dataset: "ds", To: "s2"}
	incr := storage.SendRequest{Dataset: "ds", From: "s1", To: "s2"}
	first := map[string][]byte{"full": sendBytes(t, b, full), "incremental": sendBytes(t, b, incr)}
	check := func(when string) {
		t.Helper()
		for what, req := range map[string]storage.SendRequest{"full": full, "incremental": incr} {
			if again := sendBytes(t, b, req); !bytes.Equal(first[what], again) {
				t.Fatalf("%s stream differs %s (%d vs %d bytes)", what, when, len(first[what]), len(again))
			}
		}
	}
	check("when sent again")
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		t.Logf("cannot drop caches: %v", err)
	}
	check("after dropping the page cache")
	before, err := b.show(ctx, b.subvolPath("ds", "s1"))
	if err != nil {
		t.Fatal(err)
	}
	btrfsCmd(t, "balance", "start", "--full-balance", mnt)
	if err := syncFS(mnt); err != nil {
		t.Fatal(err)
	}
	after, err := b.show(ctx, b.subvolPath("ds", "s1"))
	if err != nil {
		t.Fatal(err)
	}
	// Why Verify compares ctransid and not generation: a balance rewrites
	// the snapshot's tree blocks without changing its content.
	t.Logf("balance: s1 generation %d -> %d, ctransid %d -> %d", before.Generation, after.Generation, before.Ctransid, after.Ctransid)
	if after.Ctransid != before.Ctransid {
		t.Fatalf("a balance moved s1's ctransid from %d to %d", before.Ctransid, after.Ctransid)
	}
	check("after a full balance")
	t.Logf("full stream %d bytes, incremental %d bytes: identical across sends, cache drop and balance", len(first["full"]), len(first["incremental"]))
}

// TestEstimateSendSize: the --no-data estimate is within 1% (+4 KiB) of the
// real stream, full and incremental.
func TestEstimateSendSize(t *testing.T) {
	need(t)
	b := newBackend(t, imageSize)
	live := createDataset(t, b, "ds")
	storagetest.MakeTree(t, live)
	storagetest.WriteFile(t, filepath.Join(live, "more.bin"), storagetest.Random(9, 20<<20+5), 0o644, 1)
	if _, err := b.CreateSnapshot(ctx, "ds", "s1"); err != nil {
		t.Fatal(err)
	}
	storagetest.MutateTree(t, live, 1)
	if _, err := b.CreateSnapshot(ctx, "ds", "s2"); err != nil {
		t.Fatal(err)
	}
	for _, req := range []storage.SendRequest{{Dataset: "ds", To: "s1"}, {Dataset: "ds", To: "s2"}, {Dataset: "ds", From: "s1", To: "s2"}} {
		est, err := b.EstimateSendSize(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		real := int64(len(sendBytes(t, b, req)))
		diff := est - real
		if diff < 0 {
			diff = -diff
		}
		t.Logf("%s..%s: estimate %d, real %d (%+d)", req.From, req.To, est, real, est-real)
		if diff > real/100+4096 {
			t.Fatalf("%s..%s: estimate %d, real stream %d", req.From, req.To, est, real)
		}
	}
}

// TestCheck: each way the backend can be unusable is a clear error naming
// the fix.
func TestCheck(t *testing.T) {
	need(t)
	mnt := loopfs.New(t, imageSize)
	ok, _ := New(mnt)
	if err := ok.Check(ctx); err != nil {
		t.Fatal(err)
	}
	expect := func(b *Backend, want ...string) {
		t.Helper()
		err := b.Check(ctx)
		kindIs(t, err, storage.KindUnsupported)
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("Check error %q does not say %q", err, w)
			}
		}
	}
	notBtrfs, _ := New(t.TempDir())
	if !onBtrfs(t, notBtrfs.root) {
		expect(notBtrfs, "not on btrfs", "mount a btrfs filesystem")
	}
	plain := filepath.Join(mnt, "plain")
	os.Mkdir(plain, 0o755)
	b, _ := New(plain)
	expect(b, "plain directory on btrfs", "subvolume")
	missing, _ := New(filepath.Join(mnt, "missing"))
	expect(missing, "missing")
	noTool, _ := New(mnt, WithCommand("/nonexistent/btrfs"))
	expect(noTool, "not installed", "install btrfs-progs")
	old := filepath.Join(t.TempDir(), "btrfs")
	if err := os.WriteFile(old, []byte("#!/bin/sh\necho 'btrfs-progs v4.4'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tooOld, _ := New(mnt, WithCommand(old))
	expect(tooOld, "4.4, too old", "install btrfs-progs 5.4")
}

func onBtrfs(t testing.TB, p string) bool {
	t.Helper()
	var sfs unix.Statfs_t
	if err := unix.Statfs(p, &sfs); err != nil {
		t.Fatal(err)
	}
	return sfs.Type == unix.BTRFS_SUPER_MAGIC
}

// subvolFlags sets or clears BTRFS_SUBVOL_RDONLY with the raw ioctls.
func subvolFlags(p string, get, set uintptr, ro bool) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var flags uint64
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), get, uintptr(unsafe.Pointer(&flags))); e != 0 {
		return fmt.Errorf("SUBVOL_GETFLAGS: %w", e)
	}
	if ro {
		flags |= 1 << 1
	} else {
		flags &^= 1 << 1
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), set, uintptr(unsafe.Pointer(&flags))); e != 0 {
		return fmt.Errorf("SUBVOL_SETFLAGS: %w", e)
	}
	return nil
}

// TestCancelKillsReceive: cancelling the context of a receive stuck on its
// stream ends it promptly, kills btrfs receive and leaves no zombie.
func TestCancelKillsReceive(t *testing.T) {
	p := newPair(t, imageSize)
	for _, mode := range []storage.ResumeMode{storage.ResumeOff, storage.ResumeStaged} {
		t.Run(string(mode), func(t *testing.T) {
			cctx, cancel := context.WithCancel(ctx)
			stuck := &stuckStream{data: p.full[:len(p.full)/2], ctx: cctx}
			r, _ := resume.NewReader(stuck, resume.Position{})
			errc := make(chan error, 1)
			go func() {
				_, err := p.dst.Receive(cctx, storage.ReceiveRequest{Dataset: "ds", Name: "snap1", SourceGUID: p.s1.GUID, Mode: mode}, r)
				errc <- err
			}()
			time.Sleep(300 * time.Millisecond)
			if mode == storage.ResumeOff && len(children(t)) == 0 {
				t.Fatal("btrfs receive is not running")
			}
			cancel()
			select {
			case err := <-errc:
				kindIs(t, err, storage.KindTemporary)
			case <-time.After(10 * time.Second):
				t.Fatal("receive did not end after cancel")
			}
			if c := children(t); len(c) != 0 {
				t.Fatalf("child processes left: %q", c)
			}
			for _, part := range partialsOf(t, p.dst, "ds") {
				if err := p.dst.DiscardPartial(ctx, part); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// stuckStream delivers data, then blocks until ctx ends.
type stuckStream struct {
	data []byte
	ctx  context.Context
}

func (s *stuckStream) Read(b []byte) (int, error) {
	if len(s.data) > 0 {
		n := copy(b, s.data)
		s.data = s.data[n:]
		return n, nil
	}
	<-s.ctx.Done()
	return 0, s.ctx.Err()
}

// children lists this process's child processes (zombies included).
func children(t testing.TB) []string {
	t.Helper()
	me := fmt.Sprint(os.Getpid())
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []string
	for _, d := range dirs {
		data, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) > 1 && f[1] == me {
			out = append(out, strings.TrimSpace(string(data[:i+1]))+" "+f[0])
		}
	}
	return out
}

// TestSymlinkTricksStayConfined: streams that pass ferry's parser but try
// to write through a planted symlink reach btrfs receive, which runs
// chrooted into the receive directory: the write fails there, or lands
// beside the subvolume where the commit check refuses it.
func TestSymlinkTricksStayConfined(t *testing.T) {
	need(t)
	b := newBackend(t, imageSize)
	canary := storagetest.NewCanary(t)
	for _, hs := range hostileStreams(t, canary.Dir) {
		if !strings.Contains(hs.What, "symlink") {
			continue
		}
		_, err := b.Receive(ctx, storage.ReceiveRequest{Dataset: "ds", Name: hs.Name, Mode: storage.ResumeOff}, storagetest.Stream(t, hs.Stream, resume.Position{}))
		kindIs(t, err, storage.KindInvalid)
		t.Logf("%s: %v", hs.What, err)
		if !strings.Contains(err.Error(), "btrfs receive failed") && !strings.Contains(err.Error(), "wrote outside its subvolume") {
			t.Fatalf("%s was refused before btrfs receive saw it (%v): the test no longer shows the confinement", hs.What, err)
		}
		canary.Check(t)
	}
}

// TestStagedApplyInterrupted: the worker died while btrfs receive applied a
// complete spool, and the orphaned receive even finished its subvolume in
// staging. That subvolume is never taken as done: Partials reports it with
// the spool's resume position (its end), and the resumed receive applies
// the spool again and commits a checked result.
func TestStagedApplyInterrupted(t *testing.T) {
	p := newPair(t, imageSize)
	ds := storagetest.TargetDataset
	b := p.dst
	req := storage.ReceiveRequest{Dataset: ds, Name: "snap1", SourceGUID: p.s1.GUID, Mode: storage.ResumeStaged}
	// The stream fails after its last byte: everything is spooled, nothing applied.
	_, err := b.Receive(ctx, req, storagetest.CutStream(t, p.full, resume.Position{}, int64(len(p.full)), errCut))
	kindIs(t, err, storage.KindTemporary)
	// What a receive killed with its worker leaves: btrfs receive ran on
	// (in place of the unfinished subvolume the failed receive killed).
	if err := b.removeTree(ctx, b.stage(ds, "snap1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(b.stage(ds, "snap1"), 0o700); err != nil {
		t.Fatal(err)
	}
	btrfsCmd(t, "receive", "-f", b.spoolPath(ds, "snap1"), b.stage(ds, "snap1"))
	if names := listedNames(t, b, ds); len(names) != 0 {
		t.Fatalf("an unchecked receive is listed: %q", names)
	}
	ps := partialsOf(t, b, ds)
	if len(ps) != 1 || ps[0].Resume == nil || ps[0].Resume.Offset != int64(len(p.full)) || !strings.Contains(ps[0].Reason, "never checked") {
		t.Fatalf("partials: %+v", ps)
	}
	t.Logf("partial: %s", ps[0].Reason)
	req.Resume = true
	got, err := b.Receive(ctx, req, storagetest.Stream(t, p.full, *ps[0].Resume))
	if err != nil {
		t.Fatal(err)
	}
	if got.ReceivedGUID != p.s1.GUID {
		t.Fatalf("received %+v", got)
	}
	sameDigest(t, p.src, storagetest.SourceDataset, b, ds, "snap1")
	if ps := partialsOf(t, b, ds); len(ps) != 0 {
		t.Fatalf("partials: %+v", ps)
	}
}

// TestAutoMode: auto stages a stream whose expected size reaches the
// threshold when the target has room, and pipes smaller ones.
func TestAutoMode(t *testing.T) {
	p := newPair(t, imageSize, WithStagedThreshold(1<<20), WithCheckpointEvery(256<<10, time.Hour))
	for i, c := range []struct {
		expected int64
		staged   bool
	}{{int64(len(p.full)), true}, {1000, false}} {
		ds := fmt.Sprintf("auto%d", i)
		var durable int
		req := storage.ReceiveRequest{Dataset: ds, Name: "snap1", SourceGUID: p.s1.GUID, ExpectedSize: c.expected,
			Durable: func(resume.Position) { durable++ }}
		if _, err := p.dst.Receive(ctx, req, storagetest.Stream(t, p.full, resume.Position{})); err != nil {
			t.Fatal(err)
		}
		if (durable > 0) != c.staged {
			t.Fatalf("expected size %d: %d durable checkpoints, staged should be %v", c.expected, durable, c.staged)
		}
		data, err := os.ReadFile(p.dst.metaPath(ds, "snap1"))
		if err != nil {
			t.Fatal(err)
		}
		want := `"mode": "off"`
		if c.staged {
			want = `"mode": "staged"`
		}
		if !strings.Contains(string(data), want) {
			t.Fatalf("metadata %s lacks %s", data, want)
		}
	}
}
