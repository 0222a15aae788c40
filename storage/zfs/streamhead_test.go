package zfs

import (
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/ferry-nas/ferry/storage"
)

// beginRecord is the BEGIN record of a one-snapshot zfs send stream of
// snapshot guid to (incremental from guid from, 0 for full), in order.
func beginRecord(order binary.ByteOrder, hdrType, from, to uint64) string {
	b := make([]byte, 312)
	order.PutUint64(b[8:], backupMagic)
	order.PutUint64(b[16:], hdrType|4<<2) // feature bits above the header type
	order.PutUint32(b[32:], 2)            // DMU_OST_ZFS
	order.PutUint64(b[40:], to)
	order.PutUint64(b[48:], from)
	copy(b[56:], "tank/share@s")
	return string(b)
}

// TestStreamHeadChecks: the BEGIN record is read in either byte order and
// checked against the receive (no root: the record is built here, in the
// layout zfs-fuse's streams were seen to have, docs/storage-zfs.md).
func TestStreamHeadChecks(t *testing.T) {
	s1 := &zsnap{name: "s1", zident: zident{guid: 201}}
	full := storage.ReceiveRequest{Dataset: "share", Name: "s1", SourceGUID: "201-5"}
	incr := storage.ReceiveRequest{Dataset: "share", Name: "s2", SourceGUID: "202-20", Parent: "s1"}
	for _, c := range []struct {
		what   string
		head   string
		req    storage.ReceiveRequest
		parent *zsnap
		want   string // "" for accepted
	}{
		{"full, little-endian", beginRecord(binary.LittleEndian, substream, 0, 201), full, nil, ""},
		{"full, big-endian sender", beginRecord(binary.BigEndian, substream, 0, 201), full, nil, ""},
		{"incremental on its base", beginRecord(binary.LittleEndian, substream, 201, 202), incr, s1, ""},
		{"full without a source identity", beginRecord(binary.LittleEndian, substream, 0, 999), storage.ReceiveRequest{Dataset: "share", Name: "s1"}, nil, ""},
		{"short", beginRecord(binary.LittleEndian, substream, 0, 201)[:40], full, nil, "ends after 44 bytes"},
		{"no magic", strings.Repeat("x", 312), full, nil, "no zfs stream magic"},
		{"not a BEGIN record", "\x05" + beginRecord(binary.LittleEndian, substream, 0, 201)[1:], full, nil, "type 5, not BEGIN"},
		{"unknown header type", beginRecord(binary.LittleEndian, 3, 0, 201), full, nil, "stream header type 3"},
		{"replication package", beginRecord(binary.LittleEndian, compound, 0, 0), full, nil, "zfs send -R"},
		{"incremental as full", beginRecord(binary.LittleEndian, substream, 201, 202), full, nil, "received as a full one"},
		{"full as incremental", beginRecord(binary.LittleEndian, substream, 0, 202), incr, s1, "a full stream, received as an incremental"},
		{"other base", beginRecord(binary.LittleEndian, substream, 77, 202), incr, s1, "not from the base \"s1\" (guid 201)"},
		{"other snapshot", beginRecord(binary.LittleEndian, substream, 0, 999), full, nil, "snapshot guid 999, not of the source snapshot 201-5"},
	} {
		s, err := readHead("receive", c.req, c.parent, stream(c.head+"rest"))
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: refused: %v", c.what, err)
				continue
			}
			// zfs receive gets the header back, then the rest.
			got, err := io.ReadAll(s)
			if err != nil || string(got) != c.head+"rest" {
				t.Errorf("%s: the stream handed on is %d bytes (%v), want %d", c.what, len(got), err, len(c.head)+4)
			}
			continue
		}
		if storage.KindOf(err) != storage.KindInvalid || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want Invalid saying %q", c.what, err, c.want)
		}
	}
}
