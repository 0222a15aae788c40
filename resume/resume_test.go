package resume

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"testing"
)

func TestReaderPositionResumesDigest(t *testing.T) {
	data := make([]byte, 3<<20+17)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	whole := sha256.Sum256(data)

	for _, cut := range []int{0, 1, 4095, 1 << 20, len(data) - 1, len(data)} {
		first, err := NewReader(bytes.NewReader(data[:cut]), Position{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, first); err != nil {
			t.Fatal(err)
		}
		pos := first.Position()
		if pos.Offset != int64(cut) {
			t.Fatalf("cut %d: offset %d", cut, pos.Offset)
		}
		prefix, err := pos.PrefixDigest()
		if err != nil {
			t.Fatal(err)
		}
		if prefix != sha256.Sum256(data[:cut]) {
			t.Fatalf("cut %d: prefix digest differs from sha256 of the prefix", cut)
		}
		second, err := NewReader(bytes.NewReader(data[cut:]), pos)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, second); err != nil {
			t.Fatal(err)
		}
		if second.Sum() != whole || second.Position().Offset != int64(len(data)) {
			t.Fatalf("cut %d: resumed digest or offset differs from the whole stream's", cut)
		}
	}
}

func TestPositionWithoutStateRefused(t *testing.T) {
	if _, err := (Position{Offset: 10}).Hasher(); err == nil {
		t.Fatal("a non-zero offset without hash state must be refused")
	}
	if _, err := (Position{Offset: 10, HashState: []byte("garbage")}).Hasher(); err == nil {
		t.Fatal("a garbled hash state must be refused")
	}
}
