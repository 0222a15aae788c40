package btrfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ferry-nas/ferry/storage"
)

// These run everywhere: no root, no btrfs.

const showOutput = `.ferry/snapshots/share01/s1/s1
	Name: 			s1
	UUID: 			aa23a8d4-c412-6c43-959a-e0c88f76a97f
	Parent UUID: 		ba8283ea-0dea-d246-a52f-7be45848c645
	Received UUID: 		-
	Creation time: 		2026-11-21 07:54:14 +0000
	Subvolume ID: 		257
	Generation: 		7
	Gen at creation: 	7
	Parent ID: 		5
	Top level ID: 		5
	Flags: 			readonly
	Send transid: 		0
	Send time: 		2026-11-21 07:54:14 +0000
	Receive transid: 	0
	Receive time: 		-
	Snapshot(s):
				.ferry/snapshots/share01/s2/s2
				UUID: ffffffff-ffff-ffff-ffff-ffffffffffff
`

func TestParseShow(t *testing.T) {
	sv, err := parseShow(showOutput)
	if err != nil {
		t.Fatal(err)
	}
	want := subvol{Name: "s1", ID: 257, UUID: "aa23a8d4-c412-6c43-959a-e0c88f76a97f", ParentUUID: "ba8283ea-0dea-d246-a52f-7be45848c645",
		Generation: 7, ReadOnly: true}
	if *sv != want {
		t.Fatalf("parsed %+v\nwant   %+v", *sv, want)
	}
	rw := strings.Replace(strings.Replace(showOutput, "readonly", "-", 1), "Received UUID: \t\t-", "Received UUID: \t\t11111111-2222-3333-4444-555555555555", 1)
	sv, err = parseShow(rw)
	if err != nil {
		t.Fatal(err)
	}
	if sv.ReadOnly || sv.ReceivedUUID != "11111111-2222-3333-4444-555555555555" {
		t.Fatalf("parsed %+v", sv)
	}
	if _, err := parseShow("x\n\tName: a\n"); err == nil {
		t.Fatal("output without a uuid parsed")
	}
	if _, err := parseShow(strings.Replace(showOutput, "aa23a8d4-c412-6c43-959a-e0c88f76a97f", "not-a-uuid", 1)); err == nil {
		t.Fatal("a bad uuid parsed")
	}
}

func TestCheckPath(t *testing.T) {
	for _, ok := range []string{"", "a", "a/b", "o257-7-0", "a b/c\nd", "..a", "a..", ".hidden"} {
		if err := checkPath([]byte(ok)); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"/a", "..", "a/..", "../a", "a/../b", ".", "a/./b", "a//b", "a/", "a\x00b"} {
		if err := checkPath([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestBtrfsCRC(t *testing.T) {
	// Commands as `btrfs send` (kernel 6.18) wrote them: the end command,
	// and the subvol command of a snapshot named s2.
	for _, raw := range [][]byte{
		{0x00, 0x00, 0x00, 0x00, 0x15, 0x00, 0x50, 0x6c, 0xc9, 0x9d},
		{0x26, 0x00, 0x00, 0x00, 0x01, 0x00, 0xce, 0x87, 0xd3, 0xd1, 0x0f, 0x00, 0x02, 0x00, 0x73, 0x32,
			0x01, 0x00, 0x10, 0x00, 0x80, 0xff, 0x02, 0xeb, 0xcd, 0x21, 0x28, 0x40, 0x8d, 0x46, 0x04, 0xc3,
			0x88, 0x21, 0xbb, 0x69, 0x02, 0x00, 0x08, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
	} {
		want := binary.LittleEndian.Uint32(raw[6:])
		zeroed := bytes.Clone(raw)
		binary.LittleEndian.PutUint32(zeroed[6:], 0)
		if got := btrfsCRC(zeroed); got != want {
			t.Fatalf("crc %#x, btrfs wrote %#x", got, want)
		}
	}
	// Round trip through the builder and the parser.
	s := subvolStream("x").mkfile("f", 257).end().bytes()
	sr := newStreamReader(bytes.NewReader(s))
	if _, err := sr.header(); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := sr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// parseAll checks a whole stream against rules.
func parseAll(data []byte, rules streamRules) (streamState, error) {
	sr := newStreamReader(bytes.NewReader(data))
	var st streamState
	if _, err := sr.header(); err != nil {
		return st, err
	}
	for {
		c, err := sr.next()
		if err == io.EOF {
			if !st.Ended {
				return st, badStream("no end")
			}
			return st, nil
		}
		if err != nil {
			return st, err
		}
		if err := st.check(c, &rules); err != nil {
			return st, err
		}
	}
}

func TestStreamRules(t *testing.T) {
	parent := uuid.MustParse("0a0a0a0a-0b0b-4c0c-8d0d-0e0e0e0e0e0e")
	full := subvolStream("snap").mkfile("f", 257).cmd(cmdWrite, tStr(attrPath, "f"), tU64(18, 0), tlv{attrData, []byte("hello")}).end().bytes()
	incr := newStreamBuilder().cmd(cmdSnapshot, tStr(attrPath, "snap"), tUUID(attrUUID, hostileUUID), tU64(attrCtransid, 9),
		tUUID(attrCloneUUID, parent), tU64(attrCloneCtransid, 5)).
		cmd(cmdClone, tStr(attrPath, "f"), tU64(18, 0), tU64(24, 4096), tUUID(attrCloneUUID, parent), tU64(attrCloneCtransid, 5), tStr(attrClonePath, "g"), tU64(23, 0)).
		end().bytes()

	st, err := parseAll(full, streamRules{name: "snap", sourceUUID: hostileUUID.String()})
	if err != nil || st.UUID != hostileUUID.String() || st.Ctransid != 7 || !st.Ended || st.Commands != 4 {
		t.Fatalf("full: %+v %v", st, err)
	}
	if _, err := parseAll(full, streamRules{name: "snap", sourceUUID: uuid.NewString()}); err == nil {
		t.Fatal("a stream of another snapshot accepted")
	}
	if _, err := parseAll(full, streamRules{name: "other"}); err == nil {
		t.Fatal("a stream of another name accepted")
	}
	if _, err := parseAll(full, streamRules{name: "snap", incremental: true, parentUUIDs: []string{parent.String()}}); err == nil {
		t.Fatal("a full stream accepted as an incremental")
	}
	st, err = parseAll(incr, streamRules{name: "snap", incremental: true, parentUUIDs: []string{parent.String()}})
	if err != nil || st.CloneUUID != parent.String() {
		t.Fatalf("incremental: %+v %v", st, err)
	}
	_, err = parseAll(incr, streamRules{name: "snap", incremental: true, parentUUIDs: []string{uuid.NewString()}})
	var bm *baseMismatch
	if !errors.As(err, &bm) {
		t.Fatalf("incremental on another base: %v", err)
	}
	// Every truncation of a valid stream is refused, clean EOF or not.
	for cut := 0; cut < len(full); cut++ {
		if _, err := parseAll(full[:cut], streamRules{name: "snap"}); err == nil {
			t.Fatalf("stream truncated at %d of %d accepted", cut, len(full))
		}
	}
	// A stream error is passed through as such.
	_, err = parseAll(nil, streamRules{name: "snap"})
	var fe *formatError
	if !errors.As(err, &fe) {
		t.Fatalf("empty stream: %v", err)
	}
	sr := newStreamReader(io.MultiReader(bytes.NewReader(full[:30]), errReader{}))
	sr.header()
	if _, err := sr.next(); err == nil || !errors.Is(err, errBoom) {
		t.Fatalf("stream error: %v", err)
	}
}

var errBoom = errors.New("boom")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errBoom }

func TestEstimateArithmetic(t *testing.T) {
	var e estimate
	e.add(&command{typ: cmdMkfile, raw: make([]byte, 40)})
	c := subvolStream("x").cmd(cmdUpdateExtent, tStr(attrPath, "file"), tU64(18, 0), tU64(attrSize, 100<<10)).bytes()
	sr := newStreamReader(bytes.NewReader(c))
	sr.header()
	sr.next()
	ue, err := sr.next()
	if err != nil {
		t.Fatal(err)
	}
	e.add(ue)
	// 100 KiB is three WRITE commands (48+48+4 KiB), each 10+8+12+4 bytes of framing.
	if want := int64(40 + 100<<10 + 3*(10+8+12+4)); e.total != want {
		t.Fatalf("estimate %d, want %d", e.total, want)
	}
}

func TestCapsFromStatus(t *testing.T) {
	status := "Name:\tferry\nCapInh:\t0000000000000000\nCapPrm:\t0000000000200000\nCapEff:\t0000000000200000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n"
	eff, amb := capsFromStatus(status)
	if eff != 1<<21 || amb != 0 {
		t.Fatalf("eff %#x amb %#x", eff, amb)
	}
	if _, err := checkCaps(1000, status); err == nil || !strings.Contains(err.Error(), "CAP_FOWNER") || strings.Contains(err.Error(), "CAP_SYS_ADMIN") {
		t.Fatalf("CAP_SYS_ADMIN alone: %v", err)
	}
	// The five required ones (bits 0 1 3 18 21 = 0x24000b) effective but not ambient.
	status = "CapEff:\t000000000024000b\nCapAmb:\t0000000000000000\n"
	if _, err := checkCaps(1000, status); err == nil || !strings.Contains(err.Error(), "not ambient") {
		t.Fatalf("not ambient: %v", err)
	}
	status = "CapEff:\t000000000024000b\nCapAmb:\t000000000024000b\n"
	if w, err := checkCaps(1000, status); err != nil || !strings.Contains(w, "CAP_MKNOD") {
		t.Fatalf("required only: %q %v", w, err)
	}
	status = "CapEff:\t000000008824001b\nCapAmb:\t000000008824001b\n"
	if w, err := checkCaps(1000, status); err != nil || w != "" {
		t.Fatalf("all: %q %v", w, err)
	}
}

func TestStagingBase(t *testing.T) {
	for in, want := range map[string]string{"snap": "snap", "snap.spool": "snap", "snap.spool.json": "snap", "snap.spool.json.tmp": "snap", "a.b": "a.b"} {
		if got := stagingBase(in); got != want {
			t.Errorf("stagingBase(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNamesAndModes(t *testing.T) {
	for _, bad := range []string{"x.spool", "x.json", "x.tmp", ".x", "a/b", ""} {
		if err := storage.CheckSnapshotName("t", "ds", bad); storage.KindOf(err) != storage.KindInvalid {
			t.Errorf("name %q accepted", bad)
		}
	}
	if err := storage.CheckDataset("t", "a\nb"); storage.KindOf(err) != storage.KindInvalid {
		t.Error("dataset with a newline accepted")
	}
	b, _ := New(t.TempDir(), WithStagedThreshold(1<<30))
	for _, c := range []struct {
		mode storage.ResumeMode
		size int64
		want storage.ResumeMode
	}{
		{"", 0, storage.ResumeOff}, {"auto", 1 << 20, storage.ResumeOff}, {"staged", 0, storage.ResumeStaged}, {"off", 1 << 40, storage.ResumeOff},
		{"auto", 1 << 50, storage.ResumeOff}, // no room for spool and data anywhere
	} {
		got, why, err := b.chooseMode(storage.ReceiveRequest{Mode: c.mode, ExpectedSize: c.size}, false)
		if err != nil || got != c.want {
			t.Errorf("mode %q size %d: %s (%s) %v, want %s", c.mode, c.size, got, why, err, c.want)
		}
	}
	if _, _, err := b.chooseMode(storage.ReceiveRequest{Mode: "sometimes"}, false); storage.KindOf(err) != storage.KindInvalid {
		t.Errorf("unknown mode: %v", err)
	}
	b.stagedThreshold = 0
	if got, _, _ := b.chooseMode(storage.ReceiveRequest{}, false); got != storage.ResumeStaged {
		t.Errorf("threshold 0: %s", got)
	}
}

func TestSnapshotsOrderByTransactionNotClock(t *testing.T) {
	now := time.Now()
	// Made in this order while the clock stepped back an hour each time.
	older := &snapState{name: "a", meta: &meta{Kind: kindLocal}, sv: &subvol{ID: 300, Otransid: 10, Created: now}}
	newer := &snapState{name: "b", meta: &meta{Kind: kindLocal}, sv: &subvol{ID: 301, Otransid: 11, Created: now.Add(-time.Hour)}}
	// Received: created (otransid) in one order, committed (rtransid) in the other.
	committedFirst := &snapState{name: "c", meta: &meta{Kind: kindReceived}, sv: &subvol{ID: 302, Otransid: 13, Rtransid: 14}}
	committedLast := &snapState{name: "d", meta: &meta{Kind: kindReceived}, sv: &subvol{ID: 303, Otransid: 12, Rtransid: 15, Created: now.Add(-2 * time.Hour)}}
	sameTxn := &snapState{name: "e", meta: &meta{Kind: kindLocal}, sv: &subvol{ID: 304, Otransid: 15}}
	got := []*snapState{sameTxn, committedLast, newer, committedFirst, older}
	slices.SortFunc(got, compareStates)
	var order []string
	for _, st := range got {
		order = append(order, st.name)
	}
	if want := []string{"a", "b", "c", "d", "e"}; !slices.Equal(order, want) {
		t.Fatalf("order %q, want %q", order, want)
	}
}
