package resume

import (
	"crypto/sha256"
	"fmt"
	"hash"

	"github.com/ferry-nas/ferry/internal/blake3state"
)

// Stream digest algorithms, as Position.Digest names them.
const (
	// BLAKE3 is the digest of every stream started since it was introduced:
	// about 2.5x cheaper per byte than SHA-256 here, with the same guarantees.
	BLAKE3 = "blake3"
	// SHA256 is the digest of streams started before, and of every position
	// saved without a Digest tag; such streams still resume with it.
	SHA256 = "sha256"
)

// DigestSize is the length of a stream digest of either algorithm.
const DigestSize = 32

// NewHash returns an empty hash of the stream digest algorithm alg.
func NewHash(alg string) (hash.Hash, error) {
	switch alg {
	case BLAKE3:
		return blake3state.New(), nil
	case SHA256:
		return sha256.New(), nil
	}
	return nil, fmt.Errorf("stream digest %q is unknown to this ferry (it knows %s and %s): run the same ferry version on both hosts, or discard the partial receive and start over", alg, BLAKE3, SHA256)
}

// algorithmOf names the algorithm of a hash NewHash returned.
func algorithmOf(h hash.Hash) string {
	if _, ok := h.(*blake3state.Hasher); ok {
		return BLAKE3
	}
	return SHA256
}

// Algorithm is the stream digest p continues: its Digest tag; for an
// untagged position, SHA-256 when it carries a state (every position saved
// before the tag existed) and BLAKE3 at the start of a new stream.
func (p Position) Algorithm() string {
	switch {
	case p.Digest != "":
		return p.Digest
	case p.Offset == 0 && len(p.HashState) == 0:
		return BLAKE3
	}
	return SHA256
}

// Same reports whether p and q are the same point of the same stream, hashed
// with the same algorithm.
func (p Position) Same(q Position) bool {
	return p.Offset == q.Offset && p.Algorithm() == q.Algorithm() && string(p.HashState) == string(q.HashState)
}
