package zfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
)

// A zfs send stream starts with a DRR_BEGIN record (struct
// dmu_replay_record in OpenZFS's zfs_ioctl.h, the same in zfs-fuse's
// version 23), in the sender's byte order:
//
//	0  drr_type u32 (0: BEGIN)    4  drr_payloadlen u32
//	8  drr_magic u64              16 drr_versioninfo u64 (low 2 bits: 1 substream, 2 compound)
//	24 drr_creation_time u64      32 drr_type u32, 36 drr_flags u32
//	40 drr_toguid u64             48 drr_fromguid u64 (0: a full stream)
//
// ferry reads it before zfs receive sees a byte, so that a stream that is
// not what the request says (not a zfs stream, incremental for a full
// receive or on another base, another snapshot's, a replication package of
// many datasets) is refused as Invalid before anything on the target is
// touched.
const (
	headLen      = 56
	backupMagic  = 0x2F5BACBAC
	substream    = 1
	compound     = 2
	hdrTypeMask  = 0x3
	drrBeginType = 0
)

// streamHead is what ferry checks of a stream's BEGIN record.
type streamHead struct {
	compound         bool
	toGUID, fromGUID uint64
}

// parseHead reads a BEGIN record's fields.
func parseHead(b []byte) (streamHead, error) {
	if len(b) < headLen {
		return streamHead{}, fmt.Errorf("the stream ends after %d bytes, before the %d-byte header of a zfs send stream", len(b), headLen)
	}
	order := binary.ByteOrder(binary.LittleEndian)
	switch {
	case binary.LittleEndian.Uint64(b[8:]) == backupMagic:
	case binary.BigEndian.Uint64(b[8:]) == backupMagic:
		order = binary.BigEndian
	default:
		return streamHead{}, errors.New("not a zfs send stream (no zfs stream magic in its first record)")
	}
	if t := order.Uint32(b[0:]); t != drrBeginType {
		return streamHead{}, fmt.Errorf("not a zfs send stream (its first record is of type %d, not BEGIN)", t)
	}
	h := streamHead{toGUID: order.Uint64(b[40:]), fromGUID: order.Uint64(b[48:])}
	switch order.Uint64(b[16:]) & hdrTypeMask {
	case substream:
	case compound:
		h.compound = true
	default:
		return streamHead{}, fmt.Errorf("not a zfs send stream ferry can receive (stream header type %d)", order.Uint64(b[16:])&hdrTypeMask)
	}
	return h, nil
}

// check refuses a stream whose header does not match the receive: a
// replication package (zfs send -R, which would make datasets and
// snapshots ferry did not ask for), an incremental for a full receive or a
// full stream for an incremental, an incremental on another base than
// parent (nil for a full receive), or the stream of another snapshot than
// the request's SourceGUID names (when that is a zfs identity).
func (h streamHead) check(req storage.ReceiveRequest, parent *zsnap) error {
	switch {
	case h.compound:
		return errors.New("a replication stream (zfs send -R) of several datasets or snapshots; ferry sends and receives one snapshot per stream")
	case parent == nil && h.fromGUID != 0:
		return fmt.Errorf("an incremental stream (from guid %d), received as a full one", h.fromGUID)
	case parent != nil && h.fromGUID == 0:
		return fmt.Errorf("a full stream, received as an incremental on %q", req.Parent)
	case parent != nil && h.fromGUID != parent.guid:
		return fmt.Errorf("an incremental from guid %d, not from the base %q (guid %d)", h.fromGUID, req.Parent, parent.guid)
	}
	if m := zfsIdent.FindStringSubmatch(req.SourceGUID); m != nil {
		if guid, err := strconv.ParseUint(m[1], 10, 64); err == nil && guid != h.toGUID {
			return fmt.Errorf("the stream of snapshot guid %d, not of the source snapshot %s", h.toGUID, req.SourceGUID)
		}
	}
	return nil
}

// readHead reads the stream's header and checks it against the request;
// the returned stream gives zfs receive the whole stream, header included.
// A stream failing before its header is Temporary (the link); a header
// that does not match is Invalid.
func readHead(op string, req storage.ReceiveRequest, parent *zsnap, s resume.Stream) (resume.Stream, error) {
	head := make([]byte, headLen)
	n, err := io.ReadFull(s, head)
	head = head[:n]
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, storage.Wrap(fmt.Errorf("the stream failed after %d bytes: %w", n, err), storage.KindTemporary, op, req.Dataset, req.Name)
	}
	h, perr := parseHead(head)
	if perr == nil {
		perr = h.check(req, parent)
	}
	if perr != nil {
		return nil, storage.Errorf(storage.KindInvalid, op, req.Dataset, req.Name,
			"the stream is not the snapshot the receive asked for: nothing was received; check what sends to this host",
			"%v", perr)
	}
	return headStream{Stream: s, r: io.MultiReader(bytes.NewReader(head), s)}, nil
}

// headStream replays the header read ahead, then the rest of the stream.
type headStream struct {
	resume.Stream
	r io.Reader
}

func (h headStream) Read(p []byte) (int, error) { return h.r.Read(p) }
