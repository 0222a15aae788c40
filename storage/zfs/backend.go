// Package zfs is ferry's storage backend for ZFS, driving the zfs and zpool
// commands: the host's root is a dataset prefix (pool/path), datasets are
// ZFS datasets below it, snapshots are dataset@name, streams are `zfs send`
// streams and receives run `zfs receive` without -F, so that nothing on the
// target is ever rolled back or destroyed by a receive.
//
// Identity is the guid (which a send keeps) with the transaction that
// created the copy; order is createtxg. ferry's own records are user
// properties (ferry:*). See docs/storage-zfs.md.
package zfs

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/storage"
)

// Kind is this backend's name in configuration and errors.
const Kind = "zfs"

// Option configures a Backend.
type Option func(*Backend)

// WithLogger sets where the backend logs.
func WithLogger(l *zap.Logger) Option {
	return func(b *Backend) {
		if l != nil {
			b.log = l
		}
	}
}

// WithCommands sets the zfs and zpool programs (default from PATH).
func WithCommands(zfs, zpool string) Option {
	return func(b *Backend) { b.zfs, b.zpool = zfs, zpool }
}

// Backend is a ZFS storage backend rooted at one dataset.
type Backend struct {
	root  string // the root dataset, pool/path
	zfs   string
	zpool string
	log   *zap.Logger
	locks storage.DatasetLocks

	feat Features
	// steps counts the step holds this worker's sends hold (holds.go).
	steps stepHolds
}

var _ storage.Backend = (*Backend)(nil)

// New returns the backend rooted at the dataset root ("pool" or
// "pool/path"). It runs nothing: Check verifies tools, root and features.
func New(root string, opts ...Option) (*Backend, error) {
	const op = "open zfs backend"
	root = strings.TrimSuffix(root, "/")
	if root == "" || strings.HasPrefix(root, "/") {
		return nil, storage.Errorf(storage.KindInvalid, op, "", "", "set the host's root to a ZFS dataset name such as tank/ferry (not a path)",
			"root %q is not a ZFS dataset name", root)
	}
	for _, c := range strings.Split(root, "/") {
		if !componentRE.MatchString(c) || c == "." || c == ".." {
			return nil, storage.Errorf(storage.KindInvalid, op, "", "", "set the host's root to a ZFS dataset name such as tank/ferry",
				"root %q is not a ZFS dataset name (component %q)", root, c)
		}
	}
	b := &Backend{root: root, zfs: "zfs", zpool: "zpool", log: zap.NewNop()}
	for _, o := range opts {
		o(b)
	}
	return b, nil
}

// Root is the root dataset.
func (b *Backend) Root() string { return b.root }

// Kind implements storage.Backend.
func (b *Backend) Kind() string { return Kind }

// Features returns what Check detected (zero before Check).
func (b *Backend) Features() Features { return b.feat }

// full is the ZFS name of dataset.
func (b *Backend) full(dataset string) string { return b.root + "/" + dataset }

// pool is the root's pool.
func (b *Backend) pool() string { return strings.SplitN(b.root, "/", 2)[0] }

// Features is what the pool and the zfs tool support, detected by Check.
type Features struct {
	// PoolVersion is the pool's version ("5000" or "-" on feature-flag pools).
	PoolVersion string `json:"pool_version"`
	// ResumableReceive: `zfs receive -s` and `zfs send -t` (extensible_dataset).
	ResumableReceive bool `json:"resumable_receive"`
	// Bookmarks: the pool has the bookmarks feature.
	Bookmarks bool `json:"bookmarks"`
	// Holds: `zfs hold` (pool version 18 and later).
	Holds bool `json:"holds"`
	// RawSend: `zfs send -w` of encrypted datasets (encryption feature).
	RawSend bool `json:"raw_send"`
	// Encryption: the pool can hold encrypted datasets (feature@encryption),
	// so a dataset's encryption property is read before it is sent.
	Encryption bool `json:"encryption"`
	// ReceiveNoMount: `zfs receive -u`.
	ReceiveNoMount bool `json:"receive_no_mount"`
	// SendEstimate: `zfs send -nvP` reports the stream's size.
	SendEstimate bool `json:"send_estimate"`
	// Written: the written@snapshot property (modified targets found before a receive).
	Written bool `json:"written"`
}

// String lists the features for logs and greet.
func (f Features) String() string {
	on := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	return fmt.Sprintf("pool version %s; resumable receive %s, bookmarks %s, holds %s, raw send %s, receive -u %s, send -nvP %s, written@ %s",
		f.PoolVersion, on(f.ResumableReceive), on(f.Bookmarks), on(f.Holds), on(f.RawSend), on(f.ReceiveNoMount), on(f.SendEstimate), on(f.Written))
}

// Map is the features by name, for the greet result (values "yes"/"no",
// and the pool version).
func (f Features) Map() map[string]string {
	on := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	return map[string]string{
		"pool_version": f.PoolVersion, "resumable_receive": on(f.ResumableReceive), "bookmarks": on(f.Bookmarks),
		"holds": on(f.Holds), "raw_send": on(f.RawSend), "encryption": on(f.Encryption), "receive_no_mount": on(f.ReceiveNoMount),
		"send_estimate": on(f.SendEstimate), "written": on(f.Written),
	}
}

// BackendFeatures implements storage.FeatureReporter.
func (b *Backend) BackendFeatures() map[string]string { return b.feat.Map() }

// Check implements storage.Backend: zfs and zpool are installed and answer,
// the root dataset exists (it is never created), and the pool's features
// are detected and logged; missing ones degrade as docs/storage-zfs.md says.
func (b *Backend) Check(ctx context.Context) error {
	const op = "check zfs backend"
	for _, bin := range []string{b.zfs, b.zpool} {
		if _, err := exec.LookPath(bin); err != nil {
			return storage.Errorf(storage.KindUnsupported, op, "", "", "install OpenZFS (zfsutils-linux) or zfs-fuse on this host", "%s not found: %v", bin, err)
		}
	}
	if _, err := run(ctx, b.zfs, nil, "list", "-H", "-o", "name", b.root); err != nil {
		if ce, ok := err.(*cmdError); ok && ce.notFound() {
			return storage.Errorf(storage.KindUnsupported, op, "", "",
				fmt.Sprintf("import the pool; if the root is new, create it with `zfs create -p %s`; or fix the host's root", b.root),
				"root dataset %s does not exist; ferry never creates a host's root: %v", b.root, err)
		}
		return storage.Errorf(storage.KindUnsupported, op, "", "",
			"start the ZFS service (zfs-fuse: run the zfs-fuse daemon), import the pool, and run the worker as root",
			"cannot list root dataset %s: %v", b.root, err)
	}
	f, err := b.detect(ctx)
	if err != nil {
		return classify(err, storage.KindUnsupported, op, "", "", "check that `zpool get all "+b.pool()+"` works for the worker's user")
	}
	b.feat = f
	b.log.Info("zfs backend features", zap.String("root", b.root), zap.String("features", f.String()))
	if !f.ResumableReceive {
		b.log.Info("zfs: no resumable receive on this pool: an interrupted receive is discarded and its step restarts from byte 0")
	}
	b.log.Info("zfs: the job's cursor on this pool", zap.String("cursor", f.cursorMode()))
	return nil
}

var usageFlags = regexp.MustCompile(`\[-([A-Za-z]+)\]`)

// detect reads the pool's version and features and what the tool's
// receive and send accept.
func (b *Backend) detect(ctx context.Context) (Features, error) {
	var f Features
	out, err := run(ctx, b.zpool, nil, "get", "all", b.pool())
	if err != nil {
		return f, err
	}
	enabled := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		fs := strings.Fields(line)
		if len(fs) < 3 || fs[0] != b.pool() {
			continue
		}
		switch {
		case fs[1] == "version":
			f.PoolVersion = fs[2]
		case strings.HasPrefix(fs[1], "feature@"):
			enabled[strings.TrimPrefix(fs[1], "feature@")] = fs[2] == "enabled" || fs[2] == "active"
		}
	}
	featurePool := f.PoolVersion == "-" || f.PoolVersion == "5000"
	f.ResumableReceive = enabled["extensible_dataset"]
	f.Bookmarks = enabled["bookmarks"]
	f.RawSend = enabled["encryption"]
	f.Encryption = enabled["encryption"]
	f.Written = featurePool
	if v := atoi(f.PoolVersion); featurePool || v >= 18 {
		f.Holds = true
	}
	// The tools print their usage, with the flags they take, when asked for it wrongly.
	recvUsage := usageOf(ctx, b.zfs, "receive")
	sendUsage := usageOf(ctx, b.zfs, "send")
	f.ReceiveNoMount = flagIn(recvUsage, "receive", 'u')
	f.ResumableReceive = f.ResumableReceive && flagIn(recvUsage, "receive", 's')
	f.SendEstimate = flagIn(sendUsage, "send", 'n') && flagIn(sendUsage, "send", 'P')
	f.RawSend = f.RawSend && flagIn(sendUsage, "send", 'w')
	return f, nil
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// usageOf is what `zfs <sub>` without arguments prints (its usage).
func usageOf(ctx context.Context, bin, sub string) string {
	out, err := exec.CommandContext(ctx, bin, sub).CombinedOutput()
	_ = err // it always fails: no arguments
	return string(out)
}

// flagIn reports whether a usage line of sub lists the single-letter flag.
func flagIn(usage, sub string, flag rune) bool {
	for _, line := range strings.Split(usage, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, sub+" ") {
			continue
		}
		for _, m := range usageFlags.FindAllStringSubmatch(line, -1) {
			if strings.ContainsRune(m[1], flag) {
				return true
			}
		}
	}
	return false
}
