// The staged directories' true modes (when ferry is not root), read back
// at commit.

package dir

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/ferry-nas/ferry/storage"
)

// dirModesReader reads stDirModes in order.
type dirModesReader struct {
	f    *os.File
	r    *bufio.Reader
	next *Entry
	err  error
}

func openDirModes(p string) (*dirModesReader, error) {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return &dirModesReader{}, nil
	}
	if err != nil {
		return nil, err
	}
	d := &dirModesReader{f: f, r: bufio.NewReader(f)}
	d.advance()
	return d, nil
}

func (d *dirModesReader) advance() {
	d.next = nil
	if d.r == nil || d.err != nil {
		return
	}
	line, err := d.r.ReadString('\n')
	if err == io.EOF && line == "" {
		return
	}
	if err != nil {
		d.err = err
		return
	}
	q, err := strconv.QuotedPrefix(line)
	var p string
	var mode uint64
	if err == nil {
		p, err = strconv.Unquote(q)
	}
	if err == nil {
		mode, err = strconv.ParseUint(strings.TrimSpace(line[len(q):]), 8, 32)
	}
	if err != nil {
		d.err = fmt.Errorf("corrupt %s line %q", stDirModes, line)
		return
	}
	d.next = &Entry{Path: p, Type: typeDir, Mode: uint32(mode)}
}

// seek returns the recorded mode of rel, if any.
func (d *dirModesReader) seek(rel string) (*Entry, error) {
	for d.next != nil && storage.ComparePaths(d.next.Path, rel) < 0 {
		d.advance()
	}
	if d.next != nil && d.next.Path == rel {
		e := d.next
		d.advance()
		return e, nil
	}
	return nil, d.err
}

func (d *dirModesReader) close() {
	if d.f != nil {
		d.f.Close()
	}
}
