package resume

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"lukechampine.com/blake3"
)

func testData() []byte {
	data := make([]byte, 3<<20+17)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	return data
}

// untagged is a SHA-256 position as ferry saved it before the Digest tag.
func untagged(t *testing.T, prefix []byte) Position {
	t.Helper()
	h := sha256.New()
	h.Write(prefix)
	st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return Position{Offset: int64(len(prefix)), HashState: st}
}

func TestReaderPositionResumesDigest(t *testing.T) {
	data := testData()
	for _, tc := range []struct {
		name  string
		start Position
		alg   string
		sum   func([]byte) [DigestSize]byte
	}{
		{"new stream", Position{}, BLAKE3, blake3.Sum256},
		{"sha256 stream", Position{Digest: SHA256}, SHA256, sha256.Sum256},
	} {
		whole := tc.sum(data)
		for _, cut := range []int{0, 1, 1023, 1024, 1025, 4095, 16<<10 + 1, 1 << 20, len(data) - 1, len(data)} {
			first, err := NewReader(bytes.NewReader(data[:cut]), tc.start)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, first); err != nil {
				t.Fatal(err)
			}
			pos := first.Position()
			if pos.Offset != int64(cut) || pos.Digest != tc.alg {
				t.Fatalf("%s, cut %d: offset %d, digest %q", tc.name, cut, pos.Offset, pos.Digest)
			}
			prefix, err := pos.PrefixDigest()
			if err != nil {
				t.Fatal(err)
			}
			if prefix != tc.sum(data[:cut]) {
				t.Fatalf("%s, cut %d: prefix digest differs from the %s of the prefix", tc.name, cut, tc.alg)
			}
			second, err := NewReader(bytes.NewReader(data[cut:]), pos)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, second); err != nil {
				t.Fatal(err)
			}
			if second.Sum() != whole || second.Position().Offset != int64(len(data)) {
				t.Fatalf("%s, cut %d: resumed digest or offset differs from the whole stream's", tc.name, cut)
			}
		}
	}
}

// A position saved before the Digest tag existed resumes with SHA-256.
func TestUntaggedPositionResumesWithSHA256(t *testing.T) {
	data := testData()
	pos := untagged(t, data[:777_777])
	if pos.Algorithm() != SHA256 {
		t.Fatalf("untagged position with a state: algorithm %q", pos.Algorithm())
	}
	r, err := NewReader(bytes.NewReader(data[777_777:]), pos)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r)
	if r.Sum() != sha256.Sum256(data) || r.Position().Digest != SHA256 {
		t.Fatalf("resumed untagged position: digest %x (%s), want the sha256 of the stream", r.Sum(), r.Position().Digest)
	}
	if !r.Position().Same(Position{Offset: r.Position().Offset, HashState: r.Position().HashState}) {
		t.Fatal("a tagged sha256 position differs from the same position untagged")
	}
	if (Position{}).Algorithm() != BLAKE3 {
		t.Fatal("a new stream must start with BLAKE3")
	}
}

func TestBadPositionRefused(t *testing.T) {
	data := testData()
	b3 := At(5000, func() *Reader {
		r, _ := NewReader(bytes.NewReader(data[:5000]), Position{})
		io.Copy(io.Discard, r)
		return r
	}().h)
	sha := untagged(t, data[:5000])
	for _, tc := range []struct {
		name string
		pos  Position
		says string
	}{
		{"no state", Position{Offset: 10}, "no hash state"},
		{"garbled sha256", Position{Offset: 10, HashState: []byte("garbage")}, "corrupt sha256 state"},
		{"garbled blake3", Position{Offset: 10, HashState: []byte("garbage"), Digest: BLAKE3}, "corrupt blake3 state"},
		{"sha256 state tagged blake3", Position{Offset: 5000, HashState: sha.HashState, Digest: BLAKE3}, "corrupt blake3 state"},
		{"blake3 state tagged sha256", Position{Offset: 5000, HashState: b3.HashState, Digest: SHA256}, "corrupt sha256 state"},
		{"blake3 state at another offset", Position{Offset: 6000, HashState: b3.HashState, Digest: BLAKE3}, "blake3 state of 5000 bytes"},
		{"unknown algorithm", Position{Offset: 5000, HashState: b3.HashState, Digest: "md5"}, `stream digest "md5" is unknown`},
	} {
		_, err := tc.pos.Hasher()
		if err == nil || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "start over") {
			t.Errorf("%s: error %v, want one saying %q and how to start over", tc.name, err, tc.says)
		}
	}
	if b3.Same(Position{Offset: 5000, HashState: b3.HashState, Digest: SHA256}) {
		t.Error("positions of different algorithms must not be the same")
	}
}
