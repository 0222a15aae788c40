package transfer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Frame layout (all integers big-endian):
//
//	type    1 byte
//	length  4 bytes   length of the payload as sent (compressed size for zstd frames)
//	crc     4 bytes   CRC32C (Castagnoli) of type, length and the payload as sent
//	payload length bytes
const (
	headerSize = 9
	// MaxPayload is the largest payload of a frame, before and after
	// decompression.
	MaxPayload = 1 << 20
	// maxControl bounds the payload of every frame that is not data.
	maxControl = 4096
	// maxMessage bounds the text of refusal and error frames.
	maxMessage = maxControl - 2
)

type frameType uint8

const (
	frameOK        frameType = 0x01 // server: request accepted; offset u64 | flags u8
	frameRefused   frameType = 0x02 // server: code u16 | message
	frameData      frameType = 0x10 // server: stream bytes
	frameDataZstd  frameType = 0x11 // server: stream bytes, one zstd frame
	frameKeepalive frameType = 0x20 // server: nothing, keeps the client's idle timer quiet
	frameError     frameType = 0x30 // server: the source failed; code u16 | message
	frameTrailer   frameType = 0x40 // server: total u64 | digest of the whole stream (the request's algorithm)
	frameAck       frameType = 0x50 // client: trailer verified; same payload as the trailer
	frameBye       frameType = 0x51 // server: acknowledgement recorded, session burned
)

const trailerSize = 8 + 32

func (t frameType) String() string {
	switch t {
	case frameOK:
		return "ok"
	case frameRefused:
		return "refused"
	case frameData:
		return "data"
	case frameDataZstd:
		return "data-zstd"
	case frameKeepalive:
		return "keepalive"
	case frameError:
		return "error"
	case frameTrailer:
		return "trailer"
	case frameAck:
		return "ack"
	case frameBye:
		return "bye"
	}
	return fmt.Sprintf("type-0x%02x", uint8(t))
}

// payloadLimits returns the smallest and largest payload length a frame of
// type t may carry on the wire; ok is false for unknown types.
func payloadLimits(t frameType) (lo, hi int, ok bool) {
	switch t {
	case frameOK:
		return 9, 9, true
	case frameRefused:
		return 2, maxControl, true
	case frameData, frameDataZstd:
		return 1, MaxPayload, true
	case frameKeepalive, frameBye:
		return 0, 0, true
	case frameError:
		return 2, maxControl, true
	case frameTrailer, frameAck:
		return trailerSize, trailerSize, true
	}
	return 0, 0, false
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sealHeader fills frame[:headerSize] for the payload frame[headerSize:].
func sealHeader(frame []byte, t frameType) {
	frame[0] = byte(t)
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(frame)-headerSize))
	crc := crc32.Update(crc32.Checksum(frame[:5], castagnoli), castagnoli, frame[headerSize:])
	binary.BigEndian.PutUint32(frame[5:9], crc)
}

// appendFrame appends a complete frame to dst.
func appendFrame(dst []byte, t frameType, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, headerSize)...)
	dst = append(dst, payload...)
	sealHeader(dst[start:], t)
	return dst
}

// FrameError is a frame that failed its checks: bad CRC, impossible length,
// unknown type, or a zstd payload that does not decode within the cap. The
// client refuses the frame and resumes from the last good offset.
type FrameError struct {
	Type   uint8
	Reason string
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("bad %s frame: %s", frameType(e.Type), e.Reason)
}

func frameErr(t frameType, format string, args ...any) error {
	return &FrameError{Type: uint8(t), Reason: fmt.Sprintf(format, args...)}
}

// frameReader decodes frames from r into buffers it owns and reuses: the wire
// buffer (maxWire) and, for zstd frames, an output buffer of MaxPayload.
// What it returns stays valid until the second call to next after it.
//
// It owns two sets of buffers and alternates between them (slot), so that
// the payload of the previous frame stays intact while the next one is
// read: the client hashes it on another goroutine meanwhile.
type frameReader struct {
	r       io.Reader
	hdr     [headerSize]byte
	wires   [2][]byte
	outs    [2][]byte
	slot    int // buffers of the last frame returned
	dec     *zstd.Decoder
	maxWire int
	n       int64 // wire bytes read, headers included
}

func newFrameReader(r io.Reader, maxWire int) *frameReader {
	return &frameReader{r: r, maxWire: maxWire}
}

func (fr *frameReader) reset(r io.Reader) { fr.r = r }

// nextSlot is the slot whose buffers the next call to next overwrites.
func (fr *frameReader) nextSlot() int { return fr.slot ^ 1 }

// close releases the zstd decoder.
func (fr *frameReader) close() {
	if fr.dec != nil {
		fr.dec.Close()
		fr.dec = nil
	}
}

// next reads one frame. It returns io.EOF only at a frame boundary; a frame
// cut short is io.ErrUnexpectedEOF; a frame that fails its checks is a
// *FrameError. For zstd data frames the payload is the decoded bytes and the
// type is reported as frameData.
func (fr *frameReader) next() (frameType, []byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return 0, nil, err
	}
	fr.n += headerSize
	t := frameType(fr.hdr[0])
	length := binary.BigEndian.Uint32(fr.hdr[1:5])
	want := binary.BigEndian.Uint32(fr.hdr[5:9])
	lo, hi, ok := payloadLimits(t)
	if !ok {
		return 0, nil, frameErr(t, "unknown frame type")
	}
	if hi > fr.maxWire {
		hi = fr.maxWire
	}
	if int64(length) < int64(lo) || int64(length) > int64(hi) {
		return 0, nil, frameErr(t, "payload length %d outside [%d, %d]", length, lo, hi)
	}
	fr.slot ^= 1
	if fr.wires[fr.slot] == nil {
		fr.wires[fr.slot] = make([]byte, fr.maxWire)
	}
	payload := fr.wires[fr.slot][:length]
	if _, err := io.ReadFull(fr.r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	fr.n += int64(length)
	got := crc32.Update(crc32.Checksum(fr.hdr[:5], castagnoli), castagnoli, payload)
	if got != want {
		return 0, nil, frameErr(t, "CRC32C mismatch (got %08x, header says %08x)", got, want)
	}
	if t != frameDataZstd {
		return t, payload, nil
	}
	if err := fr.initDecoder(); err != nil {
		return 0, nil, err
	}
	if fr.outs[fr.slot] == nil {
		fr.outs[fr.slot] = make([]byte, 0, MaxPayload)
	}
	out := fr.outs[fr.slot]
	res, err := fr.dec.DecodeAll(payload, out[:0])
	if err != nil {
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
			return 0, nil, frameErr(t, "inflates beyond %d bytes", MaxPayload)
		}
		return 0, nil, frameErr(t, "zstd: %v", err)
	}
	if len(res) > MaxPayload || cap(res) != cap(out) {
		// The decoder had to grow the buffer: more than the cap.
		return 0, nil, frameErr(t, "inflates beyond %d bytes", MaxPayload)
	}
	if len(res) == 0 {
		return 0, nil, frameErr(t, "decodes to nothing")
	}
	return frameData, res, nil
}

func (fr *frameReader) initDecoder() error {
	if fr.dec != nil {
		return nil
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(MaxPayload),
		zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderLowmem(true),
	)
	if err != nil {
		return fmt.Errorf("zstd decoder: %w", err)
	}
	fr.dec = dec
	return nil
}

// dataFramer builds data frames in two reused buffers: raw holds a frame
// whose payload the caller fills in place (Payload), packed holds the zstd
// version when compression is on and pays off.
type dataFramer struct {
	raw    []byte
	packed []byte
	enc    *zstd.Encoder
	twin   bool // shares enc with the framer it was made from, which closes it
}

func newDataFramer(compress bool) (*dataFramer, error) {
	d := &dataFramer{raw: make([]byte, headerSize+MaxPayload)}
	if compress {
		enc, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(false), // the frame CRC and the stream digest cover it
			zstd.WithWindowSize(MaxPayload),
		)
		if err != nil {
			return nil, fmt.Errorf("zstd encoder: %w", err)
		}
		d.enc = enc
		d.packed = make([]byte, headerSize, headerSize+enc.MaxEncodedSize(MaxPayload))
	}
	return d, nil
}

// newTwin returns a framer with its own buffers sharing d's encoder, so
// that one frame can be filled while the other is still being written; both
// must be sealed from one goroutine.
func (d *dataFramer) newTwin() *dataFramer {
	t := &dataFramer{raw: make([]byte, headerSize+MaxPayload), enc: d.enc, twin: true}
	if d.enc != nil {
		t.packed = make([]byte, headerSize, cap(d.packed))
	}
	return t
}

// Payload is where the caller puts up to MaxPayload bytes of stream.
func (d *dataFramer) Payload() []byte { return d.raw[headerSize:] }

// Seal returns the frame for the first n bytes of Payload: zstd-compressed
// when that makes it smaller, raw otherwise. The result is valid until the
// next Seal.
func (d *dataFramer) Seal(n int) []byte {
	src := d.raw[headerSize : headerSize+n]
	if d.enc != nil {
		out := d.enc.EncodeAll(src, d.packed[:headerSize])
		if len(out)-headerSize < n {
			sealHeader(out, frameDataZstd)
			return out
		}
	}
	frame := d.raw[:headerSize+n]
	sealHeader(frame, frameData)
	return frame
}

func (d *dataFramer) close() {
	if d.enc != nil && !d.twin {
		d.enc.Close()
		d.enc = nil
	}
}
