package transfer

import (
	"context"
	"io"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/resume"
)

// TestPositionWhileReading: the activity's heartbeat calls Position from its
// own goroutine while Read runs, and the client hashes on a third. Every
// Position must still be exactly the bytes delivered: its prefix digest is
// the generator's digest of that many bytes, and it resumes elsewhere.
func TestPositionWhileReading(t *testing.T) {
	const size = 48 << 20
	e := newEnv(t)
	tok := e.register(SessionSpec{Open: genOpen(31, random, size, nil)})
	s, err := e.open(context.Background(), e.clientCfg(dstHost), e.fetch(tok))
	require.NoError(t, err)

	done := make(chan struct{})
	var seen []resume.Position
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if p := s.Position(); len(seen) == 0 || p.Offset != seen[len(seen)-1].Offset {
				seen = append(seen, p)
			}
		}
	}()
	buf := make([]byte, 100<<10) // not a divisor of the 1 MiB frames
	var n int64
	for {
		k, err := s.Read(buf)
		n += int64(k)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	close(done)
	wg.Wait()
	require.EqualValues(t, size, n)
	assert.Equal(t, streamDigest(31, random, size), s.Sum())
	require.Greater(t, len(seen), 2, "the reader goroutine saw too few positions to mean anything")
	for _, i := range []int{1, len(seen) / 2, len(seen) - 1} {
		p := seen[i]
		d, err := p.PrefixDigest()
		require.NoError(t, err)
		assert.Equal(t, streamDigest(31, random, p.Offset), d, "position at byte %d", p.Offset)
	}
}
