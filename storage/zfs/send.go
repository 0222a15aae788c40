package zfs

import (
	"context"
	"io"
	"os/exec"
	"strconv"
	"strings"

	"github.com/ferry-nas/ferry/storage"
)

// sendArgs checks req and returns the zfs send arguments.
func (b *Backend) sendArgs(ctx context.Context, op string, req storage.SendRequest) ([]string, error) {
	names := []string{req.To}
	if req.From != "" {
		names = append(names, req.From)
	}
	if err := checkNames(op, req.Dataset, names...); err != nil {
		return nil, err
	}
	to, snaps, _, err := b.find(ctx, op, req.Dataset, req.To)
	if err != nil {
		return nil, err
	}
	if to == nil || !to.ferrys() {
		return nil, b.notSendable(ctx, op, req.Dataset, req.To, snaps)
	}
	fds := b.full(req.Dataset)
	if req.From == "" {
		return []string{fds + "@" + req.To}, nil
	}
	for _, s := range snaps {
		if s.name != req.From {
			continue
		}
		if !s.ferrys() {
			break
		}
		if s.createtxg >= to.createtxg {
			return nil, storage.Errorf(storage.KindInvalid, op, req.Dataset, req.To, "send from an older snapshot",
				"incremental base %q is not older than %q", req.From, req.To)
		}
		return []string{"-i", fds + "@" + req.From, fds + "@" + req.To}, nil
	}
	if bm, ok := b.cursorBookmark(ctx, req.Dataset, req.From, to.createtxg); ok {
		return []string{"-i", bm, fds + "@" + req.To}, nil
	}
	return nil, storage.Errorf(storage.KindNotFound, op, req.Dataset, req.To, "send a full stream, or restore the base",
		"incremental base %s@%s not found", req.Dataset, req.From)
}

// Send implements storage.Backend: `zfs send [-i from] to` into w.
func (b *Backend) Send(ctx context.Context, req storage.SendRequest, w io.Writer) error {
	const op = "send"
	args, err := b.sendArgs(ctx, op, req)
	if err != nil {
		return err
	}
	release, err := b.holdStep(ctx, op, req, args)
	if err != nil {
		return err
	}
	defer release()
	var stderr tail
	cmd := exec.CommandContext(ctx, b.zfs, append([]string{"send"}, args...)...)
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Run(); err != nil {
		ce := &cmdError{args: append([]string{b.zfs, "send"}, args...), err: err, stderr: trim(stderr.String()), ctxErr: ctx.Err()}
		return classify(ce, storage.KindTemporary, op, req.Dataset, req.To, "")
	}
	return nil
}

// EstimateSendSize implements storage.Backend: `zfs send -nvP` where the
// tool has it, otherwise the snapshot's referenced bytes (for an
// incremental an upper bound: zfs-fuse reports nothing closer).
func (b *Backend) EstimateSendSize(ctx context.Context, req storage.SendRequest) (int64, error) {
	const op = "estimate send size"
	args, err := b.sendArgs(ctx, op, req)
	if err != nil {
		return 0, err
	}
	if b.feat.SendEstimate {
		out, err := run(ctx, b.zfs, nil, append([]string{"send", "-n", "-v", "-P"}, args...)...)
		if err == nil {
			if n, ok := parseSendSize(out); ok {
				return n, nil
			}
		}
		b.log.Debug("zfs send -nvP gave no size; using referenced")
	}
	out, err := run(ctx, b.zfs, nil, "get", "-H", "-p", "-o", "value", "referenced", b.full(req.Dataset)+"@"+req.To)
	if err != nil {
		return 0, classify(err, storage.KindTemporary, op, req.Dataset, req.To, "")
	}
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return 0, storage.Errorf(storage.KindTemporary, op, req.Dataset, req.To, "", "cannot parse referenced %q", out)
	}
	return n, nil
}

// parseSendSize reads the "size" line of `zfs send -nvP` (a tab-separated
// "size\t<bytes>"), the total of the stream.
func parseSendSize(out string) (int64, bool) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "size" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// tail keeps the last 4 KiB written to it (a command's stderr).
type tail struct{ buf []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.buf) }
