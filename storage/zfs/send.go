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
	if req.ResumeToken != "" {
		// The token names the stream (snapshots, offset, raw or not).
		return []string{"-t", req.ResumeToken}, nil
	}
	raw, err := b.rawFlags(ctx, op, req)
	if err != nil {
		return nil, err
	}
	if req.From == "" {
		return append(raw, fds+"@"+req.To), nil
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
		return append(raw, "-i", fds+"@"+req.From, fds+"@"+req.To), nil
	}
	if bm, ok := b.cursorBookmark(ctx, req.Dataset, req.From, to.createtxg); ok {
		return append(raw, "-i", bm, fds+"@"+req.To), nil
	}
	return nil, storage.Errorf(storage.KindNotFound, op, req.Dataset, req.To, "send a full stream, or restore the base",
		"incremental base %s@%s not found", req.Dataset, req.From)
}

// Send implements storage.Backend: `zfs send [-w] [-i from] to` into w, or
// `zfs send -t <token>` continuing a partial receive.
func (b *Backend) Send(ctx context.Context, req storage.SendRequest, w io.Writer) error {
	const op = "send"
	args, err := b.sendArgs(ctx, op, req)
	if err != nil {
		return err
	}
	held := args
	if req.ResumeToken != "" {
		// `send -t` names its snapshots only inside the token: hold the step's.
		held = []string{b.full(req.Dataset) + "@" + req.To}
		if req.From != "" {
			held = append(held, b.full(req.Dataset)+"@"+req.From)
		}
	}
	release, err := b.holdStep(ctx, op, req, held)
	if err != nil {
		return err
	}
	defer release()
	var stderr tail
	cmd := exec.CommandContext(ctx, b.zfs, append([]string{"send"}, args...)...)
	cmd.Stderr = &stderr
	if err := runInto(cmd, w); err != nil {
		ce := &cmdError{args: append([]string{b.zfs, "send"}, args...), err: err, stderr: trim(stderr.String()), ctxErr: ctx.Err()}
		if req.ResumeToken != "" {
			if why, ok := resumeRefusal(ce); ok {
				return resumeRefused(op, req, why)
			}
		}
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
		if req.ResumeToken != "" {
			// The dry run is where a token the source can no longer
			// continue shows, before any session is opened for it.
			if why, ok := resumeRefusal(err); ok {
				return 0, resumeRefused(op, req, why)
			}
		}
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
// "size\t<bytes>"), the total of the stream; without one (`send -nvP -t`
// prints only its "full" or "incremental" line, with what is left to
// send), the last field of that line.
func parseSendSize(out string) (int64, bool) {
	var line1 int64 = -1
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "size" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			return n, err == nil
		}
		if len(f) >= 3 && (f[0] == "full" || f[0] == "incremental") {
			if n, err := strconv.ParseInt(f[len(f)-1], 10, 64); err == nil {
				line1 = n
			}
		}
	}
	return line1, line1 >= 0
}

// resumeRefused is the NotFound error of a resume token the source cannot
// continue: it carries storage.ErrResumeRefused, so that the target aborts
// its partial and the step starts from byte 0.
func resumeRefused(op string, req storage.SendRequest, why string) error {
	return storage.Errorf(storage.KindNotFound, op, req.Dataset, req.To,
		"the target's partial receive is aborted (zfs receive -A) and the step sent again from byte 0",
		"%w (zfs send -t %s): %s", storage.ErrResumeRefused, short(req.ResumeToken), why)
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

// runInto runs cmd with its stdout copied into w through a 1 MiB pipe
// (storage.Pipe) in 1 MiB reads, rather than exec's 64 KiB pipe and 32 KiB
// copies; when w fails the process is killed.
func runInto(cmd *exec.Cmd, w io.Writer) error {
	pr, pw, err := storage.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	cmd.Stdout = pw
	err = cmd.Start()
	pw.Close() // the child holds its own copy
	if err != nil {
		return err
	}
	_, cerr := io.CopyBuffer(w, pr, make([]byte, 1<<20))
	if cerr != nil {
		_ = cmd.Process.Kill()
	}
	werr := cmd.Wait()
	if cerr != nil {
		return cerr
	}
	return werr
}
