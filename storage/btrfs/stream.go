package btrfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"

	"github.com/google/uuid"
)

// The btrfs send stream (btrfs-progs Documentation/dev/dev-send-stream.rst):
// a 17-byte header ("btrfs-stream\0" and a le32 version), then commands,
// each a 10-byte header (le32 payload length, le16 command, le32 CRC32C of
// header and payload with the CRC field zeroed) and a payload of TLV
// attributes (le16 type, le16 length, value; in version 2 the DATA
// attribute has no length and runs to the end of the command). The last
// command of a stream is END.
//
// ferry reads every stream it receives through this parser before btrfs
// receive sees a byte of it: it checks the framing and every CRC, refuses
// paths that leave the received subvolume, checks that the stream is the
// snapshot the request names (and, for an incremental, based on the base
// the request names), and knows exactly where the stream is complete.
const (
	streamMagic     = "btrfs-stream\x00"
	streamHeaderLen = 17
	cmdHeaderLen    = 10
	// maxCmdLen bounds one command's payload: 64 KiB in version 1, about
	// 144 KiB in version 2; anything bigger is not a btrfs stream.
	maxCmdLen = 4 << 20
	// maxVersion is the newest stream version ferry accepts.
	maxVersion = 2
	// sendReadSize is how much file data one WRITE command carries in a
	// version 1 stream (BTRFS_SEND_READ_SIZE), for EstimateSendSize.
	sendReadSize = 48 << 10
)

// Commands.
const (
	cmdSubvol       = 1
	cmdSnapshot     = 2
	cmdMkfile       = 3
	cmdMkdir        = 4
	cmdMknod        = 5
	cmdMkfifo       = 6
	cmdMksock       = 7
	cmdSymlink      = 8
	cmdRename       = 9
	cmdLink         = 10
	cmdUnlink       = 11
	cmdRmdir        = 12
	cmdSetXattr     = 13
	cmdRemoveXattr  = 14
	cmdWrite        = 15
	cmdClone        = 16
	cmdTruncate     = 17
	cmdChmod        = 18
	cmdChown        = 19
	cmdUtimes       = 20
	cmdEnd          = 21
	cmdUpdateExtent = 22
	cmdMaxV1        = 22
	// version 2
	cmdFallocate    = 23
	cmdFileattr     = 24
	cmdEncodedWrite = 25
	cmdMaxV2        = 25
)

// Attributes.
const (
	attrUUID          = 1
	attrCtransid      = 2
	attrSize          = 4
	attrPath          = 15
	attrPathTo        = 16
	attrPathLink      = 17
	attrData          = 19
	attrCloneUUID     = 20
	attrCloneCtransid = 21
	attrClonePath     = 22
	attrMaxV1         = 24
	attrMaxV2         = 31
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// btrfsCRC is btrfs's crc32c(0, p): CRC-32C with a zero seed and no final
// inversion, which is Go's Castagnoli CRC with both inversions undone.
func btrfsCRC(p []byte) uint32 { return ^crc32.Update(0xffffffff, castagnoli, p) }

// formatError is a stream that is not a well-formed, acceptable btrfs stream.
type formatError struct{ msg string }

func (e *formatError) Error() string { return e.msg }

func badStream(format string, args ...any) error {
	return &formatError{msg: fmt.Sprintf(format, args...)}
}

// readError is an error from the underlying stream (a dropped link, a
// failed trailer check), as opposed to a malformed stream.
type readError struct{ err error }

func (e *readError) Error() string { return "reading the stream: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// command is one parsed command.
type command struct {
	typ uint16
	// raw is the whole command, header included, as it came.
	raw   []byte
	attrs []attr
}

type attr struct {
	typ        uint16
	start, end int // value bounds in raw
}

func (c *command) get(typ uint16) ([]byte, bool) {
	for _, a := range c.attrs {
		if a.typ == typ {
			return c.raw[a.start:a.end], true
		}
	}
	return nil, false
}

func (c *command) u64(typ uint16) (uint64, bool) {
	v, ok := c.get(typ)
	if !ok || len(v) != 8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(v), true
}

func (c *command) uuid(typ uint16) (string, bool) {
	v, ok := c.get(typ)
	if !ok || len(v) != 16 {
		return "", false
	}
	u, err := uuid.FromBytes(v)
	if err != nil {
		return "", false
	}
	return u.String(), true
}

// streamReader pulls commands off a stream, reading exactly one command's
// bytes at a time: after next returns, the underlying reader has delivered
// nothing beyond that command (so a resume.Stream's Position is at a
// command boundary).
type streamReader struct {
	r       io.Reader
	version uint32
	buf     []byte
	// n counts the bytes read.
	n int64
}

func newStreamReader(r io.Reader) *streamReader {
	return &streamReader{r: r, buf: make([]byte, 0, 64<<10+cmdHeaderLen)}
}

// readFull reads len(p) bytes. A clean end before the first byte is io.EOF,
// inside them a format error; an error of the stream is a *readError.
func (sr *streamReader) readFull(p []byte, what string) error {
	n, err := io.ReadFull(sr.r, p)
	sr.n += int64(n)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF) && n == 0:
		return io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badStream("stream truncated inside %s at byte %d", what, sr.n)
	default:
		return &readError{err: err}
	}
}

// header reads and checks the stream header; raw is its bytes.
func (sr *streamReader) header() (raw []byte, err error) {
	var h [streamHeaderLen]byte
	if err := sr.readFull(h[:], "the stream header"); err != nil {
		if err == io.EOF {
			return nil, badStream("empty stream")
		}
		return nil, err
	}
	if string(h[:len(streamMagic)]) != streamMagic {
		return nil, badStream("not a btrfs send stream (bad magic %q)", h[:len(streamMagic)])
	}
	sr.version = binary.LittleEndian.Uint32(h[len(streamMagic):])
	if sr.version < 1 || sr.version > maxVersion {
		return nil, badStream("btrfs send stream version %d is not supported (1 to %d)", sr.version, maxVersion)
	}
	return h[:], nil
}

// next reads one command, checking its CRC and TLV layout. io.EOF means the
// stream ended cleanly at a command boundary.
func (sr *streamReader) next() (*command, error) {
	start := sr.n
	buf := sr.buf[:cmdHeaderLen]
	if err := sr.readFull(buf, "a command header"); err != nil {
		return nil, err
	}
	length := binary.LittleEndian.Uint32(buf[0:4])
	typ := binary.LittleEndian.Uint16(buf[4:6])
	crc := binary.LittleEndian.Uint32(buf[6:10])
	if length > maxCmdLen {
		return nil, badStream("command %d at byte %d claims %d bytes", typ, start, length)
	}
	total := cmdHeaderLen + int(length)
	if cap(sr.buf) < total {
		sr.buf = make([]byte, cmdHeaderLen, total)
		copy(sr.buf, buf)
	}
	buf = sr.buf[:total]
	if err := sr.readFull(buf[cmdHeaderLen:], fmt.Sprintf("command %d", typ)); err != nil {
		if err == io.EOF {
			return nil, badStream("stream truncated after the header of command %d at byte %d", typ, start)
		}
		return nil, err
	}
	// The CRC covers the header with its CRC field zeroed.
	binary.LittleEndian.PutUint32(buf[6:10], 0)
	got := btrfsCRC(buf)
	binary.LittleEndian.PutUint32(buf[6:10], crc)
	if got != crc {
		return nil, badStream("CRC mismatch in command %d at byte %d", typ, start)
	}
	maxCmd, maxAttr := uint16(cmdMaxV1), uint16(attrMaxV1)
	if sr.version >= 2 {
		maxCmd, maxAttr = cmdMaxV2, attrMaxV2
	}
	if typ == 0 || typ > maxCmd {
		return nil, badStream("unknown command %d at byte %d", typ, start)
	}
	c := &command{typ: typ, raw: buf}
	for pos := cmdHeaderLen; pos < total; {
		if total-pos < 2 {
			return nil, badStream("command %d at byte %d: truncated attribute", typ, start)
		}
		at := binary.LittleEndian.Uint16(buf[pos:])
		pos += 2
		if at == 0 || at > maxAttr {
			return nil, badStream("command %d at byte %d: unknown attribute %d", typ, start, at)
		}
		var n int
		if sr.version >= 2 && at == attrData {
			n = total - pos
		} else {
			if total-pos < 2 {
				return nil, badStream("command %d at byte %d: truncated attribute", typ, start)
			}
			n = int(binary.LittleEndian.Uint16(buf[pos:]))
			pos += 2
		}
		if total-pos < n {
			return nil, badStream("command %d at byte %d: attribute %d overruns the command", typ, start, at)
		}
		c.attrs = append(c.attrs, attr{typ: at, start: pos, end: pos + n})
		pos += n
	}
	return c, nil
}

// streamRules is what a receive expects of its stream.
type streamRules struct {
	// name is the subvolume the stream must create (the snapshot's name).
	name string
	// sourceUUID, when set, is the uuid the stream must carry.
	sourceUUID string
	// incremental: the stream must be a snapshot of one of parentUUIDs
	// (the base's received_uuid, or its uuid when it was made here).
	incremental bool
	parentUUIDs []string
}

// streamState is what the checks know after some commands; it is small and
// saved with a staged receive's checkpoint so that a resumed receive goes on
// checking where it stopped.
type streamState struct {
	Version  uint32 `json:"version"`
	Commands int64  `json:"commands"`
	// UUID and Ctransid identify the sent subvolume; CloneUUID is the base
	// of an incremental stream.
	UUID      string `json:"uuid,omitempty"`
	Ctransid  uint64 `json:"ctransid,omitempty"`
	CloneUUID string `json:"clone_uuid,omitempty"`
	Ended     bool   `json:"ended"`
}

// check validates one command in order.
func (st *streamState) check(c *command, rules *streamRules) error {
	n := st.Commands
	st.Commands++
	if st.Ended {
		return badStream("data after the stream's end command")
	}
	if n == 0 {
		return st.first(c, rules)
	}
	switch c.typ {
	case cmdSubvol, cmdSnapshot:
		return badStream("the stream holds more than one subvolume")
	case cmdEnd:
		if len(c.raw) != cmdHeaderLen {
			return badStream("end command with a payload")
		}
		st.Ended = true
		return nil
	case cmdClone:
		u, ok := c.uuid(attrCloneUUID)
		if !ok {
			return badStream("clone command without a clone source uuid")
		}
		if u != st.UUID && (st.CloneUUID == "" || u != st.CloneUUID) {
			return badStream("clone from subvolume %s, which is neither the received snapshot nor its base", u)
		}
	}
	for _, a := range c.attrs {
		switch a.typ {
		case attrPath, attrPathTo, attrClonePath:
		case attrPathLink:
			if c.typ == cmdSymlink {
				continue // a symlink's target is content, not a path ferry follows
			}
		default:
			continue
		}
		if err := checkPath(c.raw[a.start:a.end]); err != nil {
			return badStream("command %d: %v", c.typ, err)
		}
	}
	return nil
}

func (st *streamState) first(c *command, rules *streamRules) error {
	switch c.typ {
	case cmdSubvol, cmdSnapshot:
	default:
		return badStream("the stream does not start with a subvolume or snapshot command (command %d)", c.typ)
	}
	path, _ := c.get(attrPath)
	if string(path) != rules.name {
		return badStream("the stream creates subvolume %q, not %q", path, rules.name)
	}
	u, ok := c.uuid(attrUUID)
	if !ok {
		return badStream("the stream's subvolume has no uuid")
	}
	ct, ok := c.u64(attrCtransid)
	if !ok {
		return badStream("the stream's subvolume has no ctransid")
	}
	if rules.sourceUUID != "" && !strings.EqualFold(u, rules.sourceUUID) {
		return badStream("the stream is of snapshot %s, not %s", u, rules.sourceUUID)
	}
	st.UUID, st.Ctransid = u, ct
	if c.typ == cmdSubvol {
		if rules.incremental {
			return badStream("a full stream where an incremental one was expected")
		}
		return nil
	}
	clone, ok := c.uuid(attrCloneUUID)
	if !ok {
		return badStream("incremental stream without a base uuid")
	}
	if _, ok := c.u64(attrCloneCtransid); !ok {
		return badStream("incremental stream without a base ctransid")
	}
	if !rules.incremental {
		return badStream("an incremental stream (based on %s) where a full one was expected", clone)
	}
	if !slices.Contains(rules.parentUUIDs, clone) {
		return &baseMismatch{want: rules.parentUUIDs, got: clone}
	}
	st.CloneUUID = clone
	return nil
}

// baseMismatch: the incremental stream is based on another snapshot than
// the target's base.
type baseMismatch struct {
	want []string
	got  string
}

func (e *baseMismatch) Error() string {
	return fmt.Sprintf("the stream is based on snapshot %s, but the target's base is %s", e.got, strings.Join(e.want, " / "))
}

// checkPath refuses paths that could leave the received subvolume: absolute
// paths, "." and ".." components, empty components, NUL bytes. The empty
// path is the subvolume's root.
func checkPath(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if bytes.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("path %q contains NUL", p)
	}
	if p[0] == '/' {
		return fmt.Errorf("absolute path %q", p)
	}
	for _, c := range bytes.Split(p, []byte("/")) {
		switch string(c) {
		case "":
			return fmt.Errorf("path %q has an empty component", p)
		case ".", "..":
			return fmt.Errorf("path %q has a %q component", p, c)
		}
	}
	return nil
}

// estimate turns a --no-data stream into the size of the real stream: every
// UPDATE_EXTENT stands for len bytes of file data sent as WRITE commands of
// sendReadSize bytes, each with its header, path, offset and data TLVs.
type estimate struct {
	total int64
}

func (e *estimate) add(c *command) {
	if c.typ != cmdUpdateExtent {
		e.total += int64(len(c.raw))
		return
	}
	path, _ := c.get(attrPath)
	size, _ := c.u64(attrSize)
	writes := (int64(size) + sendReadSize - 1) / sendReadSize
	perWrite := int64(cmdHeaderLen + (4 + len(path)) + (4 + 8) + 4)
	e.total += int64(size) + writes*perWrite
}
