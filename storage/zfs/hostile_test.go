package zfs

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"os/exec"
	"slices"
	"testing"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/storagetest"
)

// hostileStreams are streams a zfs receive must refuse as Invalid, leaving
// the target as it was. ZFS streams carry objects and blocks, not paths,
// so the path attacks of the dir and btrfs suites (.., absolute paths,
// planted symlinks, devices) have no zfs form: what can go wrong is a
// stream that is not zfs's, is cut short or corrupted, or is another kind
// of stream than the receive asked for. They are made with zfs send on the
// source pool (a dataset "hostile" with a child, two snapshots) and then
// mangled.
func hostileStreams(t testing.TB, src side) []storagetest.HostileStream {
	ds := src.b.full("hostile")
	zfsRun(t, "create", "-p", ds+"/child")
	live := src.live("hostile")
	storagetest.MakeTree(t, live)
	zfsRun(t, "snapshot", "-r", ds+"@h1")
	storagetest.MutateTree(t, live, 1)
	zfsRun(t, "snapshot", ds+"@h2")
	full := zfsSend(t, ds+"@h1")
	incr := zfsSend(t, "-i", "@h1", ds+"@h2")
	pkg := zfsSend(t, "-R", ds+"@h1")
	if len(full) < 1<<20 {
		t.Fatalf("the full stream is only %d bytes: too small to corrupt in its data", len(full))
	}

	garbage := make([]byte, 256<<10)
	_, _ = rand.Read(garbage)
	btrfsStream := append([]byte("btrfs-stream\x00"), binary.LittleEndian.AppendUint32(nil, 1)...)
	btrfsStream = append(btrfsStream, garbage[:4096]...)
	var tarStream bytes.Buffer
	tw := tar.NewWriter(&tarStream)
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "f", Size: 1, Mode: 0o644})
	_, _ = tw.Write([]byte("x"))
	_ = tw.Close()
	corrupt := func(at int) []byte {
		c := bytes.Clone(full)
		for i := at; i < at+64; i++ {
			c[i] ^= 0xff
		}
		return c
	}
	// The toname field of the BEGIN record: the end record's checksum
	// covers the header too.
	renamed := bytes.Clone(full)
	renamed[60] ^= 0x01

	hs := func(what string, b []byte) storagetest.HostileStream {
		return storagetest.HostileStream{What: what, Name: "evil", Stream: b}
	}
	return []storagetest.HostileStream{
		hs("empty stream", nil),
		hs("random bytes", garbage),
		hs("btrfs send stream", btrfsStream),
		hs("tar stream", tarStream.Bytes()),
		hs("header only", full[:312]),
		hs("cut in the middle", full[:len(full)/2]),
		hs("data corrupted in the middle", corrupt(len(full)/2)),
		hs("header tampered", renamed),
		hs("incremental claimed as full", incr),
		hs("replication package with a child dataset", pkg),
	}
}

func zfsSend(t testing.TB, args ...string) []byte {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command("zfs", append([]string{"send"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("zfs send %v: %v: %s", args, err, errb.String())
	}
	return out.Bytes()
}

// TestReceiveRefusesAStreamThatIsNotTheRequest: on real pools, a stream
// whose header does not match the receive is refused as Invalid before
// anything on the target changes: the full stream of another snapshot than
// the request's source identity, an incremental from another base than
// the request's, a full stream received as an incremental.
func TestReceiveRefusesAStreamThatIsNotTheRequest(t *testing.T) {
	need(t)
	src, tgt := newSide(t, 128<<20), newSide(t, 128<<20)
	ctx := t.Context()
	zfsRun(t, "create", src.b.full("share"))
	storagetest.MakeTree(t, src.live("share"))
	var snaps []storage.Snapshot
	var streams [][]byte
	for i, name := range []string{"s1", "s2", "s3"} {
		if i > 0 {
			storagetest.MutateTree(t, src.live("share"), i)
		}
		s, err := src.b.CreateSnapshot(ctx, "share", name)
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, s)
		var buf bytes.Buffer
		req := storage.SendRequest{Dataset: "share", To: name}
		if i > 0 {
			req.From = snaps[i-1].Name
		}
		if err := src.b.Send(ctx, req, &buf); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, buf.Bytes())
	}
	full := func() []byte {
		var buf bytes.Buffer
		if err := src.b.Send(ctx, storage.SendRequest{Dataset: "share", To: "s1"}, &buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}()
	zfsRun(t, "create", tgt.b.full("replicas"))
	root := tgt.live("")
	before := storagetest.Footprint(t, root)
	refused := func(what string, req storage.ReceiveRequest, data []byte, says string) {
		t.Helper()
		r, err := resume.NewReader(bytes.NewReader(data), resume.Position{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = tgt.b.Receive(ctx, req, r)
		if storage.KindOf(err) != storage.KindInvalid || !bytes.Contains([]byte(err.Error()), []byte(says)) {
			t.Fatalf("%s: got %v, want Invalid saying %q", what, err, says)
		}
		t.Logf("%s: %v", what, err)
		if after := storagetest.Footprint(t, root); !slices.Equal(before, after) {
			t.Fatalf("%s left things behind:\nbefore %q\nafter  %q", what, before, after)
		}
		if ps, err := tgt.b.Partials(ctx, req.Dataset); err != nil || len(ps) != 0 {
			t.Fatalf("%s left partials: %+v %v", what, ps, err)
		}
	}
	refused("another snapshot's stream",
		storage.ReceiveRequest{Dataset: "replicas/share", Name: "s1", SourceGUID: snaps[1].GUID}, full, "not of the source snapshot")

	// The target holds s1; s2->s3 is not an incremental on it, s1 is not one at all.
	r, err := resume.NewReader(bytes.NewReader(full), resume.Position{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tgt.b.Receive(ctx, storage.ReceiveRequest{Dataset: "replicas/share", Name: "s1", SourceGUID: snaps[0].GUID}, r); err != nil {
		t.Fatal(err)
	}
	before = storagetest.Footprint(t, root)
	refused("an incremental on another base",
		storage.ReceiveRequest{Dataset: "replicas/share", Name: "s3", Parent: "s1", SourceGUID: snaps[2].GUID}, streams[2], "not from the base \"s1\"")
	refused("a full stream as an incremental",
		storage.ReceiveRequest{Dataset: "replicas/share", Name: "s2", Parent: "s1", SourceGUID: snaps[0].GUID}, full, "a full stream, received as an incremental")
	list, err := tgt.b.ListSnapshots(ctx, "replicas/share")
	if err != nil || len(list) != 1 || list[0].Name != "s1" {
		t.Fatalf("the target's snapshots after the refusals: %+v %v", list, err)
	}
	// And the right stream is still received.
	r, err = resume.NewReader(bytes.NewReader(streams[1]), resume.Position{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tgt.b.Receive(ctx, storage.ReceiveRequest{Dataset: "replicas/share", Name: "s2", Parent: "s1", SourceGUID: snaps[1].GUID}, r); err != nil {
		t.Fatal(err)
	}
}
