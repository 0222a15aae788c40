package btrfs

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/ferry-nas/ferry/storage"
)

// applier is a receive's btrfs receive: in off mode fed the checked
// commands straight from the stream; in staged mode fed from the spool as
// it grows (the spool's earlier bytes when it starts, then every command as
// it is spooled). The end command is held back until end: a receive that
// does not get the whole stream never finishes a subvolume.
type applier struct {
	p     *proc
	stdin *os.File
	// in batches commands into writes of up to 1 MiB.
	in *bufio.Writer
	// endCmd is the stream's end command, once it arrived.
	endCmd []byte
	done   bool
}

// startApply starts btrfs receive into the receive's staging directory and
// gives it the first spooled bytes of the spool at spoolPath (the header,
// or an earlier attempt's commands); when ended, the spool's last command is
// the end command, which is held back.
func (rx *receiver) startApply(spoolPath string, spooled int64, ended bool) (*applier, error) {
	ap, err := rx.newApplier()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(spoolPath)
	if err != nil {
		ap.abort()
		return nil, err
	}
	defer f.Close()
	n := spooled
	if ended {
		n -= cmdHeaderLen
	}
	buf := make([]byte, 1<<20)
	for n > 0 {
		chunk := buf[:min(n, int64(len(buf)))]
		if _, err := io.ReadFull(f, chunk); err != nil {
			ap.abort()
			return nil, fmt.Errorf("read the spool: %w", err)
		}
		if _, err := ap.stdin.Write(chunk); err != nil {
			return nil, ap.died(err)
		}
		n -= int64(len(chunk))
	}
	if ended {
		ap.endCmd = make([]byte, cmdHeaderLen)
		if _, err := io.ReadFull(f, ap.endCmd); err != nil {
			ap.abort()
			return nil, fmt.Errorf("read the spooled end command: %w", err)
		}
	}
	return ap, nil
}

// newApplier starts btrfs receive into the receive's staging directory.
// Commands reach it in batches of up to 1 MiB: one write and one wake-up of
// btrfs receive per batch instead of per 48 KiB command.
func (rx *receiver) newApplier() (*applier, error) {
	stdin, p, err := rx.b.startReceive(rx.ctx, "receive", "--chroot", "-e", rx.b.stage(rx.req.Dataset, rx.req.Name))
	if err != nil {
		return nil, err
	}
	return &applier{p: p, stdin: stdin, in: bufio.NewWriterSize(stdin, storage.PipeSize)}, nil
}

// write gives btrfs receive raw stream bytes (the stream's header).
func (ap *applier) write(b []byte) error {
	if _, err := ap.in.Write(b); err != nil {
		return ap.died(err)
	}
	return nil
}

// command gives btrfs receive one checked command (holding back the end).
func (ap *applier) command(c *command) error {
	if c.typ == cmdEnd {
		ap.endCmd = bytes.Clone(c.raw)
		return nil
	}
	return ap.write(c.raw)
}

// end gives btrfs receive the end command, once the stream ended cleanly,
// and waits for it to finish the subvolume.
func (ap *applier) end() error {
	if ap.endCmd == nil {
		ap.abort()
		return badStream("the stream has no end command")
	}
	if _, err := ap.in.Write(ap.endCmd); err != nil {
		return ap.died(err)
	}
	if err := ap.in.Flush(); err != nil {
		return ap.died(err)
	}
	if err := ap.stdin.Close(); err != nil {
		return ap.died(err)
	}
	ap.done = true
	return ap.p.wait()
}

// died: btrfs receive stopped reading; its own error is the cause.
func (ap *applier) died(werr error) error {
	ap.done = true
	ap.stdin.Close()
	if err := ap.p.wait(); err != nil {
		return err
	}
	return fmt.Errorf("btrfs receive stopped reading its input: %w", werr)
}

// abort kills btrfs receive before it saw the end command (a no-op once it
// finished or died).
func (ap *applier) abort() {
	if ap.done {
		return
	}
	ap.done = true
	_ = ap.in.Flush() // the checked commands that arrived, never the end
	ap.p.kill()
	ap.stdin.Close()
	_ = ap.p.wait()
}
