package transfer

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The source's failures reach the client with their class: a stream whose
// source crashed is CodeSourceFailed (worth another attempt); when the
// resumed attempt finds the snapshot gone, the same session answers
// CodeNotFound, which no attempt can fix (issue 7, item 8a).
func TestSourceErrorsCarryTheirClass(t *testing.T) {
	e := newEnv(t)
	cfg := e.clientCfg(dstHost)
	var opens atomic.Int64
	gone := errors.New("send share@ferry_x: snapshot ferry_x does not exist")
	tok := e.register(SessionSpec{Open: func(context.Context) (io.ReadCloser, error) {
		if opens.Add(1) == 1 {
			// The first send crashes after 3 MiB.
			return struct {
				io.Reader
				io.Closer
			}{io.MultiReader(newGen(9, random, 3<<20), failingReader{}), io.NopCloser(nil)}, nil
		}
		return nil, WithCode(CodeNotFound, gone)
	}})
	s, err := e.open(context.Background(), cfg, e.fetch(tok))
	require.NoError(t, err)
	_, n, err := drain(s)
	var se *SourceError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, CodeSourceFailed, se.Code, "a crashed send is worth another attempt")
	assert.False(t, errors.Is(err, ErrSourceNotFound))
	require.Equal(t, int64(3<<20), n)

	// The retry resumes the same session where the crash left it.
	req := e.fetch(tok)
	req.From = s.Position()
	_, err = e.open(context.Background(), cfg, req)
	require.ErrorAs(t, err, &se)
	assert.Equal(t, CodeNotFound, se.Code)
	assert.ErrorIs(t, err, ErrSourceNotFound)
	assert.Contains(t, se.Message, "snapshot ferry_x does not exist")
	assert.Equal(t, int64(2), opens.Load(), "the client does not retry a source failure by itself")
}

// A source that loses its snapshot while it reads it (the stream fails
// with a NotFound mark mid-stream) is reported the same way.
func TestSourceNotFoundMidStream(t *testing.T) {
	e := newEnv(t)
	tok := e.register(SessionSpec{Open: func(context.Context) (io.ReadCloser, error) {
		return struct {
			io.Reader
			io.Closer
		}{io.MultiReader(newGen(3, random, 1<<20), notFoundReader{}), io.NopCloser(nil)}, nil
	}})
	s, err := e.open(context.Background(), e.clientCfg(dstHost), e.fetch(tok))
	require.NoError(t, err)
	_, _, err = drain(s)
	require.ErrorIs(t, err, ErrSourceNotFound)
	require.Contains(t, err.Error(), "ferry_y is gone")
}

type notFoundReader struct{}

func (notFoundReader) Read([]byte) (int, error) {
	return 0, WithCode(CodeNotFound, errors.New("ferry_y is gone"))
}
