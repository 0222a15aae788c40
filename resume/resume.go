// Package resume holds the one idea the data plane and the storage backends
// share about interrupted transfers: a Position in a byte stream, made of the
// offset of the next byte and the hash state of every byte before it
// (BLAKE3 for new streams, SHA-256 for positions saved before; digest.go).
//
// A receiver persists the Position next to its partial receive; to continue it
// asks the source for offset O together with the digest of bytes [0, O), and
// the source only continues if its regenerated stream has the same prefix.
package resume

import (
	"encoding"
	"fmt"
	"hash"
	"io"

	"github.com/ferry-nas/ferry/internal/blake3state"
)

// Position is how far into a stream a receiver has got.
type Position struct {
	// Offset is the number of bytes before the position.
	Offset int64 `json:"offset"`
	// HashState is the marshalled hash state of bytes [0, Offset);
	// empty means the start of the stream.
	HashState []byte `json:"hash_state,omitempty"`
	// Digest names the hash of HashState ("blake3" or "sha256"); see
	// Algorithm for an empty one.
	Digest string `json:"digest,omitempty"`
}

// IsStart reports whether p is the beginning of a stream.
func (p Position) IsStart() bool { return p.Offset == 0 }

// Hasher returns a hash of p's Algorithm that has already absorbed bytes
// [0, Offset).
func (p Position) Hasher() (hash.Hash, error) {
	h, err := NewHash(p.Algorithm())
	if err != nil {
		return nil, fmt.Errorf("resume position at offset %d: %w", p.Offset, err)
	}
	if len(p.HashState) == 0 {
		if p.Offset != 0 {
			return nil, fmt.Errorf("resume position at offset %d has no hash state: discard the partial receive and start over", p.Offset)
		}
		return h, nil
	}
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(p.HashState); err != nil {
		return nil, fmt.Errorf("resume position at offset %d has a corrupt %s state (%v): discard the partial receive and start over", p.Offset, p.Algorithm(), err)
	}
	if b, ok := h.(*blake3state.Hasher); ok && b.Len() != uint64(p.Offset) {
		return nil, fmt.Errorf("resume position at offset %d has a blake3 state of %d bytes: discard the partial receive and start over", p.Offset, b.Len())
	}
	return h, nil
}

// PrefixDigest is the digest of bytes [0, Offset), of p's Algorithm.
func (p Position) PrefixDigest() ([DigestSize]byte, error) {
	var d [DigestSize]byte
	h, err := p.Hasher()
	if err != nil {
		return d, err
	}
	copy(d[:], h.Sum(nil))
	return d, nil
}

// Stream is a byte stream that knows its Position: everything it has
// delivered through Read is before the position, nothing after it is.
// The data plane's client implements it; backends that resume by offset
// persist Position() at the moments their applied state is durable.
type Stream interface {
	io.Reader
	Position() Position
	// Offset is Position().Offset without the hash state, which costs a
	// fold and a copy of the digest's state: cheap enough per command.
	Offset() int64
}

// Reader counts and hashes exactly the bytes it delivers.
type Reader struct {
	r   io.Reader
	h   hash.Hash
	off int64
}

// NewReader wraps r, whose first byte is at position from.
func NewReader(r io.Reader, from Position) (*Reader, error) {
	h, err := from.Hasher()
	if err != nil {
		return nil, err
	}
	return &Reader{r: r, h: h, off: from.Offset}, nil
}

func (r *Reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.h.Write(p[:n])
		r.off += int64(n)
	}
	return n, err
}

// Position returns the position after the last byte delivered.
func (r *Reader) Position() Position { return At(r.off, r.h) }

// Offset is the number of bytes delivered, Position's offset.
func (r *Reader) Offset() int64 { return r.off }

// At is the position off with the hash state of h, a Hasher's (or NewHash's)
// hash that has seen exactly the stream's first off bytes.
func At(off int64, h hash.Hash) Position {
	alg := algorithmOf(h)
	st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		// Neither hash can fail to marshal; a panic here is a programming error.
		panic(fmt.Sprintf("resume: marshal %s state: %v", alg, err))
	}
	return Position{Offset: off, HashState: st, Digest: alg}
}

// Sum is the digest of every byte delivered so far, the prefix included,
// of the algorithm of the position the Reader started from.
func (r *Reader) Sum() [DigestSize]byte {
	var d [DigestSize]byte
	copy(d[:], r.h.Sum(nil))
	return d
}
