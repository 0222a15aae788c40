package blake3state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"lukechampine.com/blake3/guts"
)

// stateFormat is the first byte of a marshalled state (version 1).
const stateFormat = 0xB3

// MarshalBinary saves the state in at most 9 + 32·popcount(chunks) + 1024
// bytes: format byte | chunks in the tree (u64 big-endian) | the tree's
// chaining values, lowest subtree first (8 little-endian u32 each) | the
// input's final, not yet compressed chunk. Complete buffered chunks are
// folded into the tree first, so at most one chunk is saved.
func (h *Hasher) MarshalBinary() ([]byte, error) {
	t, tail := h.folded()
	b := make([]byte, 9, 9+Size*bits.OnesCount64(t.chunks)+len(tail))
	b[0] = stateFormat
	binary.BigEndian.PutUint64(b[1:9], t.chunks)
	for i := range 64 {
		if t.chunks&(1<<i) != 0 {
			for _, w := range t.stack[i] {
				b = binary.LittleEndian.AppendUint32(b, w)
			}
		}
	}
	return append(b, tail...), nil
}

// ErrCorruptState is wrapped by every UnmarshalBinary error.
var ErrCorruptState = errors.New("not a BLAKE3 state")

// UnmarshalBinary restores a state saved by MarshalBinary; h is unchanged
// when b is not one.
func (h *Hasher) UnmarshalBinary(b []byte) error {
	if len(b) < 9 || b[0] != stateFormat {
		return fmt.Errorf("%w: %d bytes without the format byte %#x", ErrCorruptState, len(b), stateFormat)
	}
	chunks := binary.BigEndian.Uint64(b[1:9])
	// The byte length must fit an int64 offset.
	if chunks >= 1<<53 {
		return fmt.Errorf("%w: %d chunks is beyond any stream", ErrCorruptState, chunks)
	}
	cvs := Size * bits.OnesCount64(chunks)
	if len(b) < 9+cvs {
		return fmt.Errorf("%w: %d bytes, too short for the %d chaining values of %d chunks", ErrCorruptState, len(b), cvs/Size, chunks)
	}
	tail := b[9+cvs:]
	switch {
	case len(tail) > guts.ChunkSize:
		return fmt.Errorf("%w: %d pending bytes, more than one chunk", ErrCorruptState, len(tail))
	case chunks > 0 && len(tail) == 0:
		return fmt.Errorf("%w: %d chunks and no final chunk", ErrCorruptState, chunks)
	}
	var t tree
	t.chunks = chunks
	p := b[9:]
	for i := range 64 {
		if chunks&(1<<i) != 0 {
			for j := range t.stack[i] {
				t.stack[i][j] = binary.LittleEndian.Uint32(p)
				p = p[4:]
			}
		}
	}
	h.tree = t
	h.buflen = copy(h.buf[:], tail)
	return nil
}
