package activities

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap/zaptest"

	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/dir"
)

// tokenBackend holds, for dataset r, a partial receive of s2 with a native
// resume token (held); a send continuing refusedToken is refused as a zfs
// source refuses a token whose snapshot it no longer has.
type tokenBackend struct {
	storage.Backend
	held         string
	refusedToken string
	estimated    []storage.SendRequest
}

func (b *tokenBackend) Partials(context.Context, string) ([]storage.Partial, error) {
	if b.held == "" {
		return nil, nil
	}
	return []storage.Partial{{Dataset: "r", Name: "s2", ID: "p", SourceGUID: "g2", ResumeToken: b.held}}, nil
}

func (b *tokenBackend) EstimateSendSize(_ context.Context, req storage.SendRequest) (int64, error) {
	b.estimated = append(b.estimated, req)
	if req.ResumeToken != "" && req.ResumeToken == b.refusedToken {
		return 0, storage.Errorf(storage.KindNotFound, "estimate send size", req.Dataset, req.To, "",
			"%w: cannot resume send: 'tank/share@s2' used in the initial send no longer exists", storage.ErrResumeRefused)
	}
	if req.ResumeToken != "" {
		return 10, nil
	}
	return 1000, nil
}

func TestEstimateSendDropsARefusedToken(t *testing.T) {
	b := &tokenBackend{refusedToken: "1-gone"}
	h := &Host{Name: "nas-a", Backend: b}
	log := zaptest.NewLogger(t)

	req := storage.SendRequest{Dataset: "share", From: "s1", To: "s2", ResumeToken: "1-ok"}
	n, refused, err := h.estimateSend(context.Background(), &req, log)
	require.NoError(t, err)
	require.Equal(t, int64(10), n)
	require.Empty(t, refused)
	require.Equal(t, "1-ok", req.ResumeToken, "a token the source can continue is kept")

	req.ResumeToken = "1-gone"
	n, refused, err = h.estimateSend(context.Background(), &req, log)
	require.NoError(t, err)
	require.Equal(t, int64(1000), n, "the session sends the whole step")
	require.Contains(t, refused, "used in the initial send no longer exists")
	require.Empty(t, req.ResumeToken, "the session no longer continues the token")
	require.Equal(t, "1-gone", refusedToken("1-gone", refused))
}

func TestNativeResumeDecision(t *testing.T) {
	log := zaptest.NewLogger(t)
	in := func(native bool, sess OpenSendResult) ReceiveInput {
		return ReceiveInput{Job: "j", Dataset: "r", Name: "s2", SourceGUID: "g2", Session: sess, NativeResume: native}
	}
	lost := func(t *testing.T, err error) string {
		t.Helper()
		var ae *temporal.ApplicationError
		require.True(t, errors.As(err, &ae), "%v", err)
		require.Equal(t, ErrSessionLost, ae.Type())
		require.True(t, ae.NonRetryable())
		var d SessionLostDetails
		require.NoError(t, ae.Details(&d))
		return d.ResumeToken
	}
	ctx := context.Background()

	h := &Host{Name: "nas-b", Backend: &tokenBackend{held: "1-a"}}
	tok, err := h.nativeResume(ctx, in(true, OpenSendResult{ResumeToken: "1-a"}), log)
	require.NoError(t, err)
	require.Equal(t, "1-a", tok, "the session continues the token the target holds")

	_, err = h.nativeResume(ctx, in(true, OpenSendResult{ResumeToken: "1-old"}), log)
	require.Equal(t, "1-a", lost(t, err), "the partial went further: a new session for its token")

	_, err = h.nativeResume(ctx, in(true, OpenSendResult{}), log)
	require.Equal(t, "1-a", lost(t, err), "a session from byte 0 while a resumable partial is held")

	tok, err = h.nativeResume(ctx, in(true, OpenSendResult{ResumeRefused: "gone", RefusedToken: "1-a"}), log)
	require.NoError(t, err)
	require.Empty(t, tok, "the source refused the token: start over (the backend aborts the partial)")

	tok, err = h.nativeResume(ctx, in(false, OpenSendResult{}), log)
	require.NoError(t, err)
	require.Empty(t, tok, "a workflow without native resume: start over, as before")

	h = &Host{Name: "nas-b", Backend: &tokenBackend{}}
	_, err = h.nativeResume(ctx, in(true, OpenSendResult{ResumeToken: "1-a"}), log)
	require.Empty(t, lost(t, err), "the partial is gone: a new session from byte 0")
}

// featureBackend is a real dir backend that reports features, as zfs does.
type featureBackend struct{ storage.Backend }

func (featureBackend) BackendFeatures() map[string]string {
	return map[string]string{"pool_version": "23", "resumable_receive": "no", "holds": "yes"}
}

func TestInventoryCarriesBackendFeatures(t *testing.T) {
	d, err := dir.New(t.TempDir())
	require.NoError(t, err)
	h := &Host{Name: "nas-a", Backend: featureBackend{d}, Logger: zaptest.NewLogger(t)}
	res, err := h.Inventory(context.Background(), InventoryInput{Job: "j", Dataset: "share"})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"pool_version": "23", "resumable_receive": "no", "holds": "yes"}, res.Features)

	h.Backend = d // dir detects nothing: no features in the result
	res, err = h.Inventory(context.Background(), InventoryInput{Job: "j", Dataset: "share"})
	require.NoError(t, err)
	require.Nil(t, res.Features)
}

func TestNativeResumeOffStartsOver(t *testing.T) {
	h := &Host{Name: "nas-b", Backend: &tokenBackend{held: "1-a"}}
	tok, err := h.nativeResume(context.Background(), ReceiveInput{Dataset: "r", Name: "s2", SourceGUID: "g2", NativeResume: true,
		Mode: string(storage.ResumeOff)}, zaptest.NewLogger(t))
	require.NoError(t, err)
	require.Empty(t, tok, "stream.resume: off never continues a partial")
}
