package btrfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"

	"github.com/ferry-nas/ferry/storage"
)

// sendArgs checks req's snapshots and returns the `btrfs send` arguments:
// `send [-p <base>] <snapshot>`. Only snapshots made here are sent (a
// received snapshot's stream would carry its source's uuid, not its own),
// and only unmodified ones; a restore (req.Restore) may send a received one. No clone sources (-c) are given: btrfs may only
// clone from snapshots that are identical on both sides, and the one ferry
// can vouch for is the incremental base, which -p already offers.
func (b *Backend) sendArgs(ctx context.Context, op string, req storage.SendRequest) ([]string, error) {
	ds := req.Dataset
	if err := storage.CheckDataset(op, ds); err != nil {
		return nil, err
	}
	if err := storage.CheckSnapshotName(op, ds, req.To); err != nil {
		return nil, err
	}
	if req.From != "" {
		if err := storage.CheckSnapshotName(op, ds, req.From); err != nil {
			return nil, err
		}
	}
	check := func(name string) (*snapState, error) {
		st, err := b.complete(ctx, op, ds, name)
		if err != nil {
			return nil, err
		}
		// A restore sends a replica back (its stream carries the received_uuid,
		// the original's identity); replication never sends onward.
		if st.meta.Kind != kindLocal && !req.Restore {
			return nil, storage.Errorf(storage.KindUnsupported, op, ds, name, "replicate from the host that took the snapshot",
				"snapshot %q was received from another host; sending it onward is not supported", name)
		}
		return st, nil
	}
	if _, err := check(req.To); err != nil {
		return nil, err
	}
	args := []string{"send"}
	if req.From != "" {
		if _, err := check(req.From); err != nil {
			var se *storage.Error
			if errors.As(err, &se) && se.Kind == storage.KindNotFound {
				se.Err = fmt.Errorf("incremental base: %w", se.Err)
			}
			return nil, err
		}
		args = append(args, "-p", b.subvolPath(ds, req.From))
	}
	return append(args, b.subvolPath(ds, req.To)), nil
}

// Send implements storage.Backend: `btrfs send [-p base] snapshot` straight
// into w. The process is killed when ctx ends or w fails.
func (b *Backend) Send(ctx context.Context, req storage.SendRequest, w io.Writer) error {
	const op = "send"
	args, err := b.sendArgs(ctx, op, req)
	if err != nil {
		return err
	}
	return classify(b.pipeSend(ctx, args, func(r io.Reader) error {
		buf := make([]byte, 1<<20)
		_, err := io.CopyBuffer(w, r, buf)
		return err
	}), storage.KindTemporary, op, req.Dataset, req.To)
}

// pipeSend runs btrfs with args and hands its stdout to consume; when
// consume fails the process is killed.
func (b *Backend) pipeSend(ctx context.Context, args []string, consume func(io.Reader) error) error {
	// A 1 MiB pipe: btrfs send writes and the data plane reads in large
	// chunks instead of switching every 64 KiB.
	stdout, pw, err := storage.Pipe()
	if err != nil {
		return err
	}
	defer stdout.Close()
	p, err := b.start(ctx, func(c *exec.Cmd) error { c.Stdout = pw; return nil }, args...)
	pw.Close() // the child holds its own copy
	if err != nil {
		return err
	}
	cerr := consume(stdout)
	if cerr != nil {
		p.kill()
	} else {
		// Whatever btrfs still writes is an error: the stream is done.
		if n, _ := io.Copy(io.Discard, stdout); n > 0 {
			cerr = fmt.Errorf("btrfs send wrote %d bytes after the end of the stream", n)
		}
	}
	werr := p.wait()
	if cerr != nil {
		if ctx.Err() != nil {
			return werr
		}
		return cerr
	}
	return werr
}

// EstimateAhead implements storage.EstimateAhead: the estimate is a
// --no-data send, whose metadata reads (cold after a reboot or a busy
// day) are most of its time.
func (b *Backend) EstimateAhead() bool { return true }

// EstimateSendSize implements storage.Backend: it runs the same send with
// --no-data (the kernel walks the metadata only and writes UPDATE_EXTENT
// commands in place of file data) and adds the data those commands stand
// for with the WRITE commands' overhead. It is cheap (no file data is read)
// and exact but for inline extents and holes.
func (b *Backend) EstimateSendSize(ctx context.Context, req storage.SendRequest) (int64, error) {
	const op = "estimate send size"
	args, err := b.sendArgs(ctx, op, req)
	if err != nil {
		return 0, err
	}
	args = append([]string{"send", "--no-data"}, args[1:]...)
	var est estimate
	err = b.pipeSend(ctx, args, func(r io.Reader) error {
		sr := newStreamReader(r)
		if _, err := sr.header(); err != nil {
			return err
		}
		est.total = streamHeaderLen
		for {
			c, err := sr.next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			est.add(c)
		}
	})
	if err != nil {
		return 0, classify(err, storage.KindTemporary, op, req.Dataset, req.To)
	}
	return est.total, nil
}
