// Copying file content while hashing it, the hash running beside the I/O.

package dir

import (
	"hash"
	"io"
)

// copyHashing copies r to w until io.EOF and writes the same bytes to h,
// in order. h runs on another goroutine: the hash of one chunk overlaps
// the chunk's write and the next chunk's read, so that a copy uses a
// second core instead of doing the three one after another. buf (at least
// 2 bytes) is split into two chunks that take turns. When it returns, h
// holds every byte copied and nothing uses buf any more.
func copyHashing(w io.Writer, r io.Reader, h hash.Hash, buf []byte) (int64, error) {
	half := len(buf) / 2
	bufs := [2][]byte{buf[:half], buf[half:]}
	todo, done := make(chan []byte), make(chan struct{})
	go func() {
		for b := range todo {
			h.Write(b)
			done <- struct{}{}
		}
		close(done)
	}()
	busy := false // a chunk is being hashed
	finish := func() {
		if busy {
			<-done
		}
		close(todo)
		<-done
	}
	var n int64
	for i := 0; ; i ^= 1 {
		// The chunk read into last time's buffer but one was hashed (waited
		// for before the last chunk went to h) and written.
		k, rerr := readChunk(r, bufs[i])
		if k > 0 {
			if busy {
				<-done
			}
			todo <- bufs[i][:k]
			busy = true
			m, werr := w.Write(bufs[i][:k])
			n += int64(m)
			if werr == nil && m != k {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				finish()
				return n, werr
			}
		}
		if rerr == io.EOF {
			finish()
			return n, nil
		}
		if rerr != nil {
			finish()
			return n, rerr
		}
	}
}

// readChunk fills b from r as far as it can: it returns less than len(b)
// only with an error (io.EOF at the end).
func readChunk(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := r.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
