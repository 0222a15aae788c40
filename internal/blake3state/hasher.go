// Package blake3state is a BLAKE3 hash (256-bit, unkeyed) whose state can be
// saved at any byte offset and restored later (state.go), so that a resume
// position can carry it. The compression and its SIMD paths are
// lukechampine.com/blake3's guts package; this file only keeps the tree.
package blake3state

import (
	"math/bits"

	"lukechampine.com/blake3/guts"
)

// Size is the length of a digest in bytes.
const Size = 32

// batch is the most chunks guts.CompressBuffer compresses at once (16 KiB).
const batch = guts.MaxSIMD * guts.ChunkSize

// tree is the left edge of the BLAKE3 chunk tree: stack[i] is the chaining
// value of a complete subtree of 2^i chunks when bit i of chunks is set.
type tree struct {
	stack  [64][8]uint32
	chunks uint64 // chunks absorbed into stack
}

// push adds the subtree of 2^height chunks that starts at chunk t.chunks;
// t.chunks must be a multiple of 2^height.
func (t *tree) push(cv [8]uint32, height int) {
	i := height
	for t.chunks&(1<<i) != 0 {
		cv = guts.ChainingValue(guts.ParentNode(t.stack[i], cv, &guts.IV, 0))
		i++
	}
	t.stack[i] = cv
	t.chunks += 1 << height
}

// pushChunk compresses one complete, non-final chunk into the tree.
func (t *tree) pushChunk(chunk []byte) {
	t.push(guts.ChainingValue(guts.CompressChunk(chunk, &guts.IV, t.chunks, 0)), 0)
}

// root is the root node of the tree closed by the final chunk tail.
func (t *tree) root(tail []byte) guts.Node {
	n := guts.CompressChunk(tail, &guts.IV, t.chunks, 0)
	for i := bits.TrailingZeros64(t.chunks); i < bits.Len64(t.chunks); i++ {
		if t.chunks&(1<<i) != 0 {
			n = guts.ParentNode(t.stack[i], guts.ChainingValue(n), &guts.IV, 0)
		}
	}
	n.Flags |= guts.FlagRoot
	return n
}

// Hasher is a BLAKE3-256 hash.Hash. The bytes not yet in the tree wait in
// buf: the last chunk of the input can only be compressed once it is known
// to be the last (it carries the root flag), so buf is folded only when more
// bytes arrive.
type Hasher struct {
	tree
	buf    [batch]byte
	buflen int
}

// New returns an empty hasher.
func New() *Hasher { return &Hasher{} }

// Write absorbs p; it never fails.
func (h *Hasher) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if h.buflen == batch {
			h.flush()
		}
		// A whole aligned batch, not the input's end, compresses in place.
		if h.buflen == 0 && len(p) > batch && h.chunks%guts.MaxSIMD == 0 {
			h.compressBatch((*[batch]byte)(p[:batch]))
			p = p[batch:]
			continue
		}
		c := copy(h.buf[h.buflen:], p)
		h.buflen += c
		p = p[c:]
	}
	return n, nil
}

func (h *Hasher) compressBatch(b *[batch]byte) {
	h.push(guts.ChainingValue(guts.CompressBuffer(b, batch, &guts.IV, h.chunks, 0)), 4)
}

// flush folds a full buffer into the tree once more input follows.
func (h *Hasher) flush() {
	if h.chunks%guts.MaxSIMD == 0 {
		h.compressBatch(&h.buf)
		h.buflen = 0
		return
	}
	// Restored mid-batch: single chunks up to the next batch boundary.
	k := int(guts.MaxSIMD - h.chunks%guts.MaxSIMD)
	for i := range k {
		h.pushChunk(h.buf[i*guts.ChunkSize : (i+1)*guts.ChunkSize])
	}
	h.buflen = copy(h.buf[:], h.buf[k*guts.ChunkSize:h.buflen])
}

// folded is the tree with every complete buffered chunk but the final one
// pushed, and that final chunk (at most one chunk, empty only for an empty
// input); h is not changed.
func (h *Hasher) folded() (tree, []byte) {
	t := h.tree
	full := 0
	if h.buflen > 0 {
		full = (h.buflen - 1) / guts.ChunkSize
	}
	i := 0
	// On a batch boundary the chunks fold as power-of-two subtrees with
	// SIMD, each starting a guts buffer (copied for all but the first).
	if t.chunks%guts.MaxSIMD == 0 {
		var scratch [batch]byte
		for full-i >= 2 {
			n := 1 << (bits.Len(uint(full-i)) - 1)
			src := &h.buf
			if i > 0 {
				copy(scratch[:], h.buf[i*guts.ChunkSize:(i+n)*guts.ChunkSize])
				src = &scratch
			}
			t.push(guts.ChainingValue(guts.CompressBuffer(src, n*guts.ChunkSize, &guts.IV, t.chunks, 0)), bits.TrailingZeros(uint(n)))
			i += n
		}
	}
	for ; i < full; i++ {
		t.pushChunk(h.buf[i*guts.ChunkSize : (i+1)*guts.ChunkSize])
	}
	return t, h.buf[full*guts.ChunkSize : h.buflen]
}

// Sum appends the digest of everything written to b; h is not changed.
func (h *Hasher) Sum(b []byte) []byte {
	t, tail := h.folded()
	out := guts.WordsToBytes(guts.CompressNode(t.root(tail)))
	return append(b, out[:Size]...)
}

// Len is the number of bytes written.
func (h *Hasher) Len() uint64 { return h.chunks*guts.ChunkSize + uint64(h.buflen) }

// Reset empties h.
func (h *Hasher) Reset() { h.chunks, h.buflen = 0, 0 }

// Size is the digest length, 32.
func (h *Hasher) Size() int { return Size }

// BlockSize is BLAKE3's block size, 64.
func (h *Hasher) BlockSize() int { return guts.BlockSize }
