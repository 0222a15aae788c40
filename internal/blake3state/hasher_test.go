package blake3state

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"lukechampine.com/blake3"
)

func input(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{3})
	r.Read(b)
	return b
}

var lengths = []int{0, 1, 63, 64, 65, 1023, 1024, 1025, 2048, 2049, 3 << 10,
	16<<10 - 1, 16 << 10, 16<<10 + 1, 32<<10 + 7, 100_000, 1 << 20, 3<<20 + 5}

func sum(t *testing.T, h *Hasher) [Size]byte {
	t.Helper()
	return [Size]byte(h.Sum(nil))
}

func TestSumMatchesReference(t *testing.T) {
	data := input(3<<20 + 5)
	for _, n := range lengths {
		h := New()
		h.Write(data[:n])
		if got, want := sum(t, h), blake3.Sum256(data[:n]); got != want {
			t.Fatalf("%d bytes: digest %x, want %x", n, got, want)
		}
		if h.Len() != uint64(n) {
			t.Fatalf("%d bytes: Len %d", n, h.Len())
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		n := rng.IntN(200_000)
		h := New()
		h.Write(data[:n])
		if got, want := sum(t, h), blake3.Sum256(data[:n]); got != want {
			t.Fatalf("random length %d: digest %x, want %x", n, got, want)
		}
	}
}

// Every split of the input into two writes gives the same digest, and Sum
// between writes does not disturb the state.
func TestEverySplit(t *testing.T) {
	data := input(34<<10 + 3)
	want := blake3.Sum256(data)
	for i := 0; i <= len(data); i++ {
		h := New()
		h.Write(data[:i])
		if got := sum(t, h); got != blake3.Sum256(data[:i]) {
			t.Fatalf("prefix %d: digest %x", i, got)
		}
		h.Write(data[i:])
		if got := sum(t, h); got != want {
			t.Fatalf("split at %d: digest %x, want %x", i, got, want)
		}
	}
}

func TestRandomWrites(t *testing.T) {
	data := input(5<<20 + 11)
	want := blake3.Sum256(data)
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 20 {
		h := New()
		for p := data; len(p) > 0; {
			n := min(len(p), rng.IntN(70_000))
			if round%2 == 0 {
				n = min(len(p), rng.IntN(3000))
			}
			h.Write(p[:n])
			p = p[n:]
		}
		if got := sum(t, h); got != want {
			t.Fatalf("round %d: digest %x, want %x", round, got, want)
		}
	}
}

func TestReset(t *testing.T) {
	h := New()
	h.Write(input(40_000))
	h.Reset()
	h.Write([]byte("abc"))
	if got := sum(t, h); got != blake3.Sum256([]byte("abc")) {
		t.Fatalf("after Reset: %x", got)
	}
	if !bytes.Equal(h.Sum([]byte("x"))[:1], []byte("x")) || h.Size() != 32 || h.BlockSize() != 64 {
		t.Fatal("Sum must append; Size 32, BlockSize 64")
	}
}
