package transfer

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"hash/crc32"
	"io"
	"testing"

	"github.com/ferry-nas/ferry/internal/blake3state"
)

// Hot-path microbenchmarks: the CPU each stream byte costs in the data
// plane, so that a regression shows in review (make bench prints them).
// Inputs are 1 MiB of nasMix data (the size of a full data frame).

func hotInput(b *testing.B) []byte {
	b.Helper()
	buf := make([]byte, MaxPayload)
	if _, err := io.ReadFull(newGen(7, nasMix, MaxPayload), buf); err != nil {
		b.Fatal(err)
	}
	return buf
}

// BenchmarkHotCRC32C is the frame checksum over a full frame's payload.
func BenchmarkHotCRC32C(b *testing.B) {
	buf := hotInput(b)
	b.SetBytes(int64(len(buf)))
	var sum uint32
	for b.Loop() {
		sum = crc32.Update(sum, castagnoli, buf)
	}
}

// BenchmarkHotSHA256 is the end-to-end stream digest, computed on both ends.
func BenchmarkHotSHA256(b *testing.B) {
	buf := hotInput(b)
	h := sha256.New()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		h.Write(buf)
	}
}

// BenchmarkHotBLAKE3 is the stream digest of new streams (resume positions
// saved before BLAKE3 continue with SHA-256, above).
func BenchmarkHotBLAKE3(b *testing.B) {
	buf := hotInput(b)
	h := blake3state.New()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		h.Write(buf)
	}
}

// BenchmarkHotAES128GCM is what TLS 1.3 (TLS_AES_128_GCM_SHA256, the suite
// ferry negotiates on this hardware) spends per byte, in 16 KiB records: the
// crypto floor the data plane is compared with.
func BenchmarkHotAES128GCM(b *testing.B) {
	buf := hotInput(b)[:16<<10]
	blk, err := aes.NewCipher(make([]byte, 16))
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize())
	out := make([]byte, 0, len(buf)+aead.Overhead())
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		out = aead.Seal(out[:0], nonce, buf, nil)
	}
}

// BenchmarkHotFrameEncode seals a full plain data frame (header and CRC32C;
// the payload is read in place).
func BenchmarkHotFrameEncode(b *testing.B) {
	benchEncode(b, false)
}

// BenchmarkHotZstdFrameEncode seals a full data frame with zstd (nasMix
// data: half of it incompressible, sent raw when zstd does not pay off).
func BenchmarkHotZstdFrameEncode(b *testing.B) {
	benchEncode(b, true)
}

func benchEncode(b *testing.B, compress bool) {
	buf := hotInput(b)
	d, err := newDataFramer(compress)
	if err != nil {
		b.Fatal(err)
	}
	defer d.close()
	copy(d.Payload(), buf)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if f := d.Seal(len(buf)); len(f) <= headerSize {
			b.Fatal("empty frame")
		}
	}
}

// BenchmarkHotFrameDecode reads and checks plain data frames (header,
// length limits, CRC32C).
func BenchmarkHotFrameDecode(b *testing.B) {
	benchDecode(b, false)
}

// BenchmarkHotZstdFrameDecode reads, checks and inflates zstd data frames.
func BenchmarkHotZstdFrameDecode(b *testing.B) {
	benchDecode(b, true)
}

func benchDecode(b *testing.B, compress bool) {
	const frames = 8
	var wire []byte
	d, err := newDataFramer(compress)
	if err != nil {
		b.Fatal(err)
	}
	g := newGen(9, nasMix, frames*MaxPayload)
	for range frames {
		if _, err := io.ReadFull(g, d.Payload()); err != nil {
			b.Fatal(err)
		}
		wire = append(wire, d.Seal(MaxPayload)...)
	}
	d.close()
	rd := bytes.NewReader(wire)
	fr := newFrameReader(rd, MaxPayload)
	defer fr.close()
	b.SetBytes(frames * MaxPayload)
	for b.Loop() {
		rd.Reset(wire)
		var n int
		for {
			t, p, err := fr.next()
			if err == io.EOF {
				break
			}
			if err != nil || t != frameData {
				b.Fatalf("frame %s: %v", t, err)
			}
			n += len(p)
		}
		if n != frames*MaxPayload {
			b.Fatalf("decoded %d bytes, want %d", n, frames*MaxPayload)
		}
	}
}
