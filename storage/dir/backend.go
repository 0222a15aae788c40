// Package dir is ferry's storage backend for plain directories on any
// filesystem: snapshots are copies (reflinked where the filesystem can,
// hard-linked from the previous snapshot where a file is unchanged) kept
// read-only under <root>/.ferry, streams are deterministic tar archives of
// the changes between two snapshot manifests, and receives stage into a
// private directory with checkpoints so that they can resume by offset.
//
// See docs/storage-dir.md for the on-disk layout and the stream format.
package dir

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/layout"
)

// Kind is this backend's name in configuration and errors.
const Kind = "dir"

// Option configures a Backend.
type Option func(*Backend)

// WithLogger sets where the backend logs (skipped special files, fallbacks).
func WithLogger(l *zap.Logger) Option { return func(b *Backend) { b.log = l } }

// WithCheckpointEvery sets how often a receive makes its progress durable:
// at the first entry boundary after at least bytes of stream or interval of
// time since the last checkpoint (defaults 8 MiB and 1 s).
func WithCheckpointEvery(bytes int64, interval time.Duration) Option {
	return func(b *Backend) { b.ckptBytes, b.ckptEvery = bytes, interval }
}

// WithReflink enables (the default) or disables trying FICLONE when copying
// a file into a snapshot.
func WithReflink(enabled bool) Option { return func(b *Backend) { b.reflink.Store(enabled) } }

// Backend is a dir storage backend rooted at one directory.
type Backend struct {
	root      string
	log       *zap.Logger
	ckptBytes int64
	ckptEvery time.Duration
	isRoot    bool

	// reflink is true while FICLONE is worth trying; the first "not
	// supported here" answer turns it off for this backend.
	reflink atomic.Bool
	// clone is FICLONE; tests replace it to exercise the fallbacks.
	clone func(dst, src *os.File) error

	lay   layout.Layout
	locks storage.DatasetLocks
}

var _ storage.Backend = (*Backend)(nil)

// New opens (and prepares) the dir backend rooted at root, which must be an
// existing directory. It creates root/.ferry for its own bookkeeping.
func New(root string, opts ...Option) (*Backend, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, storage.Wrap(err, storage.KindInvalid, "open dir backend", "", "")
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	fi, err := os.Stat(abs)
	if os.IsNotExist(err) {
		// Never created here: a missing root is most often a disk not mounted.
		return nil, storage.Errorf(storage.KindNotFound, "open dir backend", "", "",
			"mount the filesystem that holds it, or create it; ferry never creates a root", "root %s does not exist", abs)
	}
	if err != nil {
		return nil, storage.Wrap(err, storage.KindInvalid, "open dir backend "+abs, "", "")
	}
	if !fi.IsDir() {
		return nil, storage.Errorf(storage.KindInvalid, "open dir backend", "", "", "set the host's root to a directory", "%s is not a directory", abs)
	}
	b := &Backend{
		root:      abs,
		lay:       layout.Layout{Root: abs},
		log:       zap.NewNop(),
		ckptBytes: 8 << 20,
		ckptEvery: time.Second,
		isRoot:    os.Geteuid() == 0,
		clone:     ficlone,
	}
	b.reflink.Store(true)
	for _, o := range opts {
		o(b)
	}
	for _, d := range []string{"snapshots", "staging", "tmp"} {
		if err := os.MkdirAll(filepath.Join(abs, storage.MetaDir, d), 0o700); err != nil {
			return nil, storage.Wrap(err, storage.KindInvalid, "open dir backend "+abs, "", "")
		}
	}
	return b, nil
}

// Root is the backend's root directory.
func (b *Backend) Root() string { return b.root }

// Kind implements storage.Backend.
func (b *Backend) Kind() string { return Kind }

// Check implements storage.Backend: the root is a directory and ferry can
// write its bookkeeping under it.
func (b *Backend) Check(ctx context.Context) error {
	fi, err := os.Stat(b.root)
	if err != nil {
		return storage.Wrap(err, storage.KindUnsupported, "check dir backend "+b.root, "", "")
	}
	if !fi.IsDir() {
		return storage.Errorf(storage.KindUnsupported, "check dir backend", "", "", "set the host's root to a directory", "%s is not a directory", b.root)
	}
	f, err := os.CreateTemp(filepath.Join(b.root, storage.MetaDir, "tmp"), ".check-*")
	if err != nil {
		return storage.Wrap(err, storage.KindUnsupported, "check dir backend "+b.root, "", "")
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// ---- names and paths (the shared .ferry layout, storage/layout) ----

func (b *Backend) live(ds string) string           { return filepath.Join(b.root, filepath.FromSlash(ds)) }
func (b *Backend) snapDir(ds string) string        { return b.lay.SnapshotsDir(ds) }
func (b *Backend) snapTree(ds, name string) string { return filepath.Join(b.snapDir(ds), name) }
func (b *Backend) metaPath(ds, name string) string {
	return filepath.Join(b.snapDir(ds), name+".meta.json")
}
func (b *Backend) manifestPath(ds, name string) string {
	return filepath.Join(b.snapDir(ds), name+".manifest")
}
func (b *Backend) stagingDir(ds string) string { return b.lay.StagingDir(ds) }
func (b *Backend) tmpDir(ds string) string     { return b.lay.TmpDir(ds) }

// rel is p relative to the root, for Partial IDs and messages.
func (b *Backend) rel(p string) string { return b.lay.Rel(p) }
