// Package metafile keeps the small files backends store under their root's
// .ferry directory — metadata, checkpoints, marks — written atomically so
// that a crash leaves the old content or the new, never a torn file.
package metafile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// WriteAtomic writes data to p through a synced temporary file and a rename,
// then syncs p's directory.
func WriteAtomic(p string, data []byte) error {
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(p))
}

// WriteJSON writes v as indented JSON to p atomically: the one writer of
// every backend's metadata, checkpoint and resume-state files. Each backend
// keeps its own struct per file, so fields are added where they belong.
func WriteJSON(p string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteAtomic(p, append(data, '\n'))
}

// ErrCorrupt is in the chain of ReadJSON's error when the file exists but
// does not parse: a caller can tell damaged metadata from an I/O failure.
var ErrCorrupt = errors.New("corrupt metadata file")

// ReadJSON reads p into v; found is false (and v untouched) when p does not
// exist. A file that does not parse is an error naming it (ErrCorrupt).
func ReadJSON(p string, v any) (found bool, err error) {
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("%w %s: %w", ErrCorrupt, p, err)
	}
	return true, nil
}

// SyncDir fsyncs a directory, making the entries created in it durable.
func SyncDir(p string) error {
	d, err := os.Open(p)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// SetMark records in dir that mark points at snapshot (one file per mark).
func SetMark(dir, mark, snapshot string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return WriteAtomic(filepath.Join(dir, mark), []byte(snapshot+"\n"))
}

// ReadMarks returns the marks recorded in dir, mark -> snapshot; a missing
// dir has none.
func ReadMarks(dir string) (map[string]string, error) {
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out[e.Name()] = strings.TrimSpace(string(data))
	}
	return out, nil
}
