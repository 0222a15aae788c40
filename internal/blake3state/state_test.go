package blake3state

import (
	"errors"
	"math/rand/v2"
	"testing"

	"lukechampine.com/blake3"
)

// restoreAt writes data[:at], saves, restores into a fresh hasher and writes
// the rest there in pieces of step bytes.
func restoreAt(t *testing.T, data []byte, at, step int) ([Size]byte, int) {
	t.Helper()
	h := New()
	h.Write(data[:at])
	st, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	r := New()
	r.Write([]byte("garbage that the restore must replace"))
	if err := r.UnmarshalBinary(st); err != nil {
		t.Fatalf("restore at %d: %v", at, err)
	}
	if r.Len() != uint64(at) {
		t.Fatalf("restored at %d: Len %d", at, r.Len())
	}
	for p := data[at:]; len(p) > 0; {
		n := min(len(p), step)
		r.Write(p[:n])
		p = p[n:]
	}
	return [Size]byte(r.Sum(nil)), len(st)
}

func TestMarshalAnywhere(t *testing.T) {
	data := input(3<<20 + 777)
	want := blake3.Sum256(data)
	ats := []int{0, 1, 1023, 1024, 1025, 5 << 10, 16<<10 - 1, 16 << 10, 16<<10 + 1, 17<<10 + 5, 1<<20 + 1, 3 << 20}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 60 {
		ats = append(ats, rng.IntN(len(data)+1))
	}
	ats = append(ats, len(data))
	for _, at := range ats {
		for _, step := range []int{1 << 20, 1000, 16 << 10, 16<<10 + 1} {
			got, size := restoreAt(t, data, at, step)
			if got != want {
				t.Fatalf("saved at %d, continued in writes of %d: digest %x, want %x", at, step, got, want)
			}
			// At most one chunk plus a chaining value per set bit of the chunk count.
			if size > 9+32*21+1024 {
				t.Fatalf("state at %d is %d bytes", at, size)
			}
		}
	}
}

// A state saved from a restored hasher, before it reached a batch boundary,
// restores too.
func TestMarshalTwice(t *testing.T) {
	data := input(200_000)
	h := New()
	h.Write(data[:5000])
	st, _ := h.MarshalBinary()
	r := New()
	if err := r.UnmarshalBinary(st); err != nil {
		t.Fatal(err)
	}
	r.Write(data[5000:9000])
	st2, _ := r.MarshalBinary()
	r2 := New()
	if err := r2.UnmarshalBinary(st2); err != nil {
		t.Fatal(err)
	}
	r2.Write(data[9000:])
	if got := [Size]byte(r2.Sum(nil)); got != blake3.Sum256(data) {
		t.Fatalf("digest %x", got)
	}
}

func TestCorruptStateRefused(t *testing.T) {
	h := New()
	h.Write(input(50_000))
	good, _ := h.MarshalBinary()
	bad := map[string][]byte{
		"empty":        nil,
		"sha256 state": append([]byte("sha\x03"), make([]byte, 104)...),
		"format":       append([]byte{0x01}, good[1:]...),
		"truncated":    good[:20],
		"no final":     good[:9+32*2], // 48 chunks: two chaining values, no tail
		"too many":     append(append([]byte{}, good...), make([]byte, 1025)...),
		"huge counter": append([]byte{stateFormat, 0xff, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 8*32+1)...),
		"short header": good[:8],
	}
	for name, b := range bad {
		r := New()
		r.Write([]byte("kept"))
		err := r.UnmarshalBinary(b)
		if !errors.Is(err, ErrCorruptState) {
			t.Errorf("%s: err %v, want ErrCorruptState", name, err)
		}
		if got := [Size]byte(r.Sum(nil)); got != blake3.Sum256([]byte("kept")) {
			t.Errorf("%s: a refused state changed the hasher", name)
		}
	}
}

// BenchmarkMarshal saves a state with 15 complete chunks still buffered (the
// most MarshalBinary folds), as Position does at every checkpoint.
func BenchmarkMarshal(b *testing.B) {
	h := New()
	h.Write(input(1<<20 + 15<<10 + 100))
	for b.Loop() {
		if _, err := h.MarshalBinary(); err != nil {
			b.Fatal(err)
		}
	}
}
