// Package demo runs ferry end to end on one machine with nothing installed
// and no root: an ephemeral Temporal server with its web UI, two NAS workers
// on the dir backend, a sample share, a full and an incremental replication,
// and a check that the replica's content equals the source's.
//
// With Backend "btrfs" (root only) the two workers run on the btrfs backend
// instead, each on its own loop-mounted btrfs image made for the demo and
// removed at the end; with Backend "zfs" (root, the zfs tools and a ZFS
// service) on the zfs backend, each on its own pool on a sparse file,
// destroyed at the end unless Keep.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ferry-nas/ferry/certs"
	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/internal/loopfs"
	"github.com/ferry-nas/ferry/internal/sampleshare"
	"github.com/ferry-nas/ferry/logging"
	"github.com/ferry-nas/ferry/server"
	"github.com/ferry-nas/ferry/starter"
	"github.com/ferry-nas/ferry/storage/dir"
	"github.com/ferry-nas/ferry/worker"
	"github.com/ferry-nas/ferry/workflows"
)

// Options configure a demo run.
type Options struct {
	// Dir holds everything; empty means a new temporary directory, removed
	// at the end unless Keep is set.
	Dir string
	// Keep leaves the server, workers and files up until ctx is done.
	Keep bool
	// ShareSize is the sample share's size in bytes (default 200 MiB).
	ShareSize int64
	// Address and UIAddress are the Temporal frontend and web UI addresses;
	// when the defaults (127.0.0.1:7233, 127.0.0.1:8233) are busy a free
	// port is used.
	Address, UIAddress string
	// Out receives the demo's narration.
	Out io.Writer
	// Backend is the storage backend of both hosts: "dir" (the default),
	// "btrfs" (needs root and btrfs-progs: two loop-mounted btrfs images) or
	// "zfs" (needs root, zfs/zpool and zfs-fuse's daemon or the kernel
	// module: two pools on sparse files, left in place with Keep).
	Backend string
}

// Job, source and target of the demo.
const (
	Job    = "share01"
	Source = "nas-a:share01"
	Target = "nas-b:replicas/share01"
)

// Result is what the demo did and measured.
type Result struct {
	Dir   string
	UIURL string
	// Full and Incr are the wall times of the two runs, trigger to result.
	Full, Incr time.Duration
	// FullBytes and IncrBytes are the bytes each run moved over the wire.
	FullBytes, IncrBytes int64
	// Snapshot is the incremental run's snapshot, the one digested.
	Snapshot                   string
	SourceDigest, TargetDigest string
	// Replica is where nas-b shows the replica (Env.Replica).
	Replica string
	// Pools are the zfs demo's pools (nas-a's, nas-b's); with Keep they
	// are left after Run returns.
	Pools     []string
	ShareSize int64
	Changes   []string
}

// Run runs the demo. It returns an error unless the replica's content
// digest equals the source's after both replications.
func Run(ctx context.Context, opts Options) (res Result, err error) {
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	env, err := Start(ctx, opts)
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := env.Close(); err == nil {
			err = cerr
		}
	}()
	res.Dir, res.UIURL, res.ShareSize = env.Dir, env.Server.UIURL(), env.ShareSize

	fmt.Fprintf(out, "\n[1/2] full replication %s -> %s\n", Source, Target)
	full, took, err := env.Replicate(ctx, out)
	if err != nil {
		return res, err
	}
	res.Full, res.FullBytes = took, full.Bytes

	if res.Changes, err = sampleshare.Change(env.Share, uint64(time.Now().UnixNano())); err != nil {
		return res, fmt.Errorf("change the sample share: %w", err)
	}
	fmt.Fprintf(out, "\nchanges on %s:\n", Source)
	for _, ch := range res.Changes {
		fmt.Fprintf(out, "  - %s\n", ch)
	}

	fmt.Fprintf(out, "\n[2/2] incremental replication %s -> %s\n", Source, Target)
	incr, took, err := env.Replicate(ctx, out)
	if err != nil {
		return res, err
	}
	res.Incr, res.IncrBytes, res.Snapshot = took, incr.Bytes, incr.Snapshot

	if res.SourceDigest, res.TargetDigest, err = env.Digests(ctx, incr.Snapshot); err != nil {
		return res, err
	}
	fmt.Fprintf(out, "\ncontent digest of %s@%s\n  source %s\n  target %s\n", Job, incr.Snapshot, res.SourceDigest, res.TargetDigest)
	if res.SourceDigest != res.TargetDigest {
		return res, errors.New("the replica's content digest differs from the source's")
	}
	fmt.Fprintf(out, "source and target are identical.\n")
	res.Replica = env.Replica
	// Name only what is still there once the demo returns: without --keep
	// the server stops, and a temporary directory or btrfs images go too.
	for _, p := range env.pools {
		res.Pools = append(res.Pools, p.Name)
	}
	switch {
	case env.Backend == config.BackendZFS && opts.Keep:
		ds := env.pools[1].Root() + "/replicas/share01"
		fmt.Fprintf(out, "\nthe replica on nas-b: zfs dataset %s, mounted read-only at %s; its snapshots: zfs list -r -t snapshot -o name,creation -s createtxg %s\n", ds, env.Replica, ds)
	case env.Backend == config.BackendZFS:
	case opts.Keep || (opts.Dir != "" && env.Backend != config.BackendBtrfs):
		fmt.Fprintf(out, "\nthe replica on nas-b: %s/latest (the newest snapshot), and one read-only entry per snapshot in %s\n", env.Replica, env.Replica)
	}
	if ui := env.Server.UIURL(); ui != "" && opts.Keep {
		fmt.Fprintf(out, "\nbrowse the runs: %s/namespaces/%s/workflows\n", ui, env.Server.Namespace())
	}
	if !opts.Keep {
		fmt.Fprintf(out, "\nthe demo's server and workers stop now; `ferry demo --keep` leaves them, the web UI and the replica on nas-b up to browse.\n")
	}

	if opts.Keep {
		if env.Backend == config.BackendZFS {
			// The pools outlive the demo: say what stays and how to remove it.
			env.keepPools = true
			var names []string
			for _, p := range env.pools {
				names = append(names, p.Name)
			}
			fmt.Fprintf(out, "--keep: the ZFS pools %s (images in %s) stay after Ctrl-C; remove them with:\n  zpool destroy %s && zpool destroy %s && rm -r %s\n",
				strings.Join(names, " and "), env.Dir, names[0], names[1], env.Dir)
		}
		keepNote(out, env)
		<-ctx.Done()
	}
	return res, nil
}

// keepNote says what --keep leaves up, where, and what to try with it.
func keepNote(out io.Writer, env *Env) {
	fmt.Fprintf(out, "\n--keep: until Ctrl-C this process keeps up\n")
	fmt.Fprintf(out, "  the Temporal server  %s (in memory: its runs go when it stops)\n", env.Server.FrontendAddress())
	if ui := env.Server.UIURL(); ui != "" {
		fmt.Fprintf(out, "  the web UI           %s\n", ui)
	}
	fmt.Fprintf(out, "  workers nas-a, nas-b in this process (log: %s)\n", filepath.Join(env.Dir, "logs", "ferry.log"))
	switch env.Backend {
	case config.BackendBtrfs:
		fmt.Fprintf(out, "and leaves in %s, also after Ctrl-C: the config %s and certificates (certs/); the btrfs images are unmounted and removed at Ctrl-C.\n",
			env.Dir, env.ConfigPath)
	case config.BackendZFS:
		fmt.Fprintf(out, "and leaves in %s, also after Ctrl-C: the config %s, certificates (certs/) and the pools' images (above).\n",
			env.Dir, env.ConfigPath)
	default:
		fmt.Fprintf(out, "and leaves in %s, also after Ctrl-C: the config %s, certificates (certs/), both hosts' storage (%s, %s); remove the directory when done.\n",
			env.Dir, env.ConfigPath, env.Config.Hosts["nas-a"].Root, env.Config.Hosts["nas-b"].Root)
	}
	fmt.Fprintf(out, "try, from another shell:\n  ferry status --config %s\n  ferry run --config %s %s --wait\n", env.ConfigPath, env.ConfigPath, Job)
	fmt.Fprintf(out, "Press Ctrl-C to stop.\n")
}

// Env is a running demo installation: server, workers, config and share.
type Env struct {
	Dir        string
	ConfigPath string
	Config     *config.Config
	Server     *server.Server
	Client     client.Client
	// Share is the live source dataset's directory on nas-a.
	Share string
	// Replica is where nas-b shows the replica: `latest` and one entry per
	// snapshot (storage/replicaview).
	Replica   string
	ShareSize int64
	// Backend is the hosts' storage backend.
	Backend string

	out      io.Writer
	cleanups []func() error
	// pools are the zfs demo's (nas-a's, nas-b's); keepPools leaves them
	// when the demo ends (--keep).
	pools     []zfsPool
	keepPools bool
}

// Start brings up the server, certificates, config, sample share and both
// workers, and applies the demo job's schedule. Close tears it all down.
func Start(ctx context.Context, opts Options) (env *Env, err error) {
	env = &Env{out: opts.Out, ShareSize: opts.ShareSize, Backend: opts.Backend}
	if env.out == nil {
		env.out = io.Discard
	}
	if env.ShareSize <= 0 {
		env.ShareSize = 200 << 20
	}
	switch env.Backend {
	case "":
		env.Backend = config.BackendDir
	case config.BackendDir:
	case config.BackendBtrfs:
		if os.Geteuid() != 0 {
			return env, errors.New("the btrfs demo needs root: it makes, mounts and removes two loop btrfs images (run it with sudo, or without --backend for the dir backend)")
		}
	case config.BackendZFS:
		if err := CheckZFS(); err != nil {
			return env, err
		}
	default:
		return env, fmt.Errorf("the demo runs on the dir, btrfs or zfs backend, not %q", env.Backend)
	}
	defer func() {
		if err != nil {
			env.Close()
		}
	}()
	env.Dir = opts.Dir
	if env.Dir == "" {
		if env.Dir, err = os.MkdirTemp("", "ferry-demo-"); err != nil {
			return env, err
		}
		if !opts.Keep {
			// dir.RemoveAll: the dir backend's snapshots are read-only, which
			// os.RemoveAll cannot undo when not running as root.
			top := env.Dir
			env.onClose(func() error { return dir.RemoveAll(top) })
		}
	} else if err := os.MkdirAll(env.Dir, 0o755); err != nil {
		return env, err
	}
	logDir := filepath.Join(env.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return env, err
	}
	logger, closeLog, err := fileLogger(filepath.Join(logDir, "ferry.log"))
	if err != nil {
		return env, err
	}
	env.onClose(func() error { closeLog(); return nil })

	fmt.Fprintf(env.out, "ferry demo: everything lives in %s\n", env.Dir)
	srv, err := server.Start(ctx, server.Options{
		Ephemeral: true,
		Address:   freeOr(orDefault(opts.Address, server.DefaultAddress)),
		UIAddress: freeOr(orDefault(opts.UIAddress, server.DefaultUIAddress)),
		Logger:    logger.Named("server"),
	})
	if err != nil {
		return env, fmt.Errorf("start the embedded Temporal server: %w", err)
	}
	env.Server = srv
	env.onClose(srv.Stop)
	fmt.Fprintf(env.out, "  Temporal server  %s (namespace %s, in memory)\n  web UI           %s\n", srv.FrontendAddress(), srv.Namespace(), srv.UIURL())

	roots := map[string]string{"nas-a": filepath.Join(env.Dir, "nas-a"), "nas-b": filepath.Join(env.Dir, "nas-b")}
	if env.Backend == config.BackendBtrfs {
		// Images of an earlier demo that was killed stay mounted and hold
		// loop devices: release those whose process is gone.
		stale, _ := filepath.Glob(filepath.Join(os.TempDir(), "ferry-demo-*"))
		for _, d := range append(stale, os.TempDir()) {
			if reaped, err := loopfs.ReapStale(d); err == nil && len(reaped) > 0 {
				fmt.Fprintf(env.out, "  released %d loop filesystem(s) of an earlier demo that did not finish\n", len(reaped))
			}
		}
		// Room for the share, its snapshots and what the runs change; the
		// images are sparse.
		size := max(int64(1<<30), 3*env.ShareSize+512<<20)
		for _, h := range []string{"nas-a", "nas-b"} {
			fs, err := loopfs.Create(env.Dir, size)
			if err != nil {
				return env, fmt.Errorf("make %s's btrfs image: %w", h, err)
			}
			env.onClose(fs.Close)
			roots[h] = fs.Mountpoint
			fmt.Fprintf(env.out, "  %-16s btrfs on %s, mounted at %s\n", h, fs.Device, fs.Mountpoint)
		}
	}
	if env.Backend == config.BackendZFS {
		// Room for the share, its snapshots and what the runs change; the
		// images are sparse.
		size := max(int64(512<<20), 3*env.ShareSize+256<<20)
		for _, h := range []string{"nas-a", "nas-b"} {
			p, err := makeZFSPool(ctx, env.Dir, h, size)
			if err != nil {
				return env, fmt.Errorf("make %s's ZFS pool: %w", h, err)
			}
			env.pools = append(env.pools, p)
			env.onClose(func() error {
				if env.keepPools {
					return nil
				}
				return p.destroy()
			})
			roots[h] = p.Root()
			fmt.Fprintf(env.out, "  %-16s ZFS pool %s on %s, root dataset %s mounted at %s\n", h, p.Name, p.Image, p.Root(), filepath.Join(p.Mount, "ferry"))
		}
	}
	env.Replica = filepath.Join(roots["nas-b"], "replicas", "share01")
	if env.Backend == config.BackendZFS {
		env.Replica = filepath.Join(env.pools[1].Mount, "ferry", "replicas", "share01")
	}
	if env.ConfigPath, err = writeSetup(env.Dir, srv.FrontendAddress(), srv.Namespace(), env.Backend, roots); err != nil {
		return env, err
	}
	if env.Config, err = config.Load(env.ConfigPath); err != nil {
		return env, err
	}
	env.Share = filepath.Join(env.Config.Hosts["nas-a"].Root, "share01")
	if env.Backend == config.BackendZFS {
		env.Share = filepath.Join(env.pools[0].Mount, "ferry", "share01")
		if err := zfsDataset(ctx, env.pools[0].Root()+"/share01"); err != nil {
			return env, fmt.Errorf("create the share's dataset: %w", err)
		}
	} else if env.Backend == config.BackendBtrfs {
		out, err := exec.CommandContext(ctx, "btrfs", "subvolume", "create", env.Share).CombinedOutput()
		if err != nil {
			return env, fmt.Errorf("create the share's subvolume: %v: %s", err, strings.TrimSpace(string(out)))
		}
	} else if err := os.MkdirAll(env.Share, 0o755); err != nil {
		return env, err
	}
	if err := sampleshare.Write(env.Share, env.ShareSize, uint64(time.Now().UnixNano())); err != nil {
		return env, fmt.Errorf("write the sample share: %w", err)
	}
	fmt.Fprintf(env.out, "  sample share     %s, %s of photos, documents and source files\n", Source, starter.FormatBytes(env.ShareSize))

	env.Client, err = client.DialContext(ctx, client.Options{
		HostPort: srv.FrontendAddress(), Namespace: srv.Namespace(),
		Logger: logging.Temporal(logger.Named("sdk").WithOptions(zap.IncreaseLevel(zapcore.WarnLevel))),
	})
	if err != nil {
		return env, err
	}
	env.onClose(func() error { env.Client.Close(); return nil })

	workerCtx, stopWorkers := context.WithCancel(context.Background())
	workersDone := make(chan error, 2)
	for _, h := range []string{"nas-a", "nas-b"} {
		go func() {
			workersDone <- worker.Run(workerCtx, env.Client, worker.Options{Config: env.Config, Host: h, Logger: logger.Named(h), StopTimeout: 2 * time.Second})
		}()
	}
	env.onClose(func() error {
		stopWorkers()
		var errs []error
		for range 2 {
			if err := <-workersDone; err != nil {
				errs = append(errs, fmt.Errorf("worker: %w", err))
			}
		}
		return errors.Join(errs...)
	})
	fmt.Fprintf(env.out, "  workers          nas-a (source) and nas-b (target), %s backend; logs in %s\n", env.Backend, logDir)

	if _, err := starter.Apply(ctx, env.Client, env.Config, starter.ApplyOptions{}); err != nil {
		return env, fmt.Errorf("apply the demo job's schedule: %w", err)
	}
	return env, nil
}

func (e *Env) onClose(f func() error) { e.cleanups = append(e.cleanups, f) }

// Close stops the workers, the client and the server and removes what the
// demo made (unless kept), in reverse order of creation.
func (e *Env) Close() error {
	var errs []error
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		if err := e.cleanups[i](); err != nil {
			errs = append(errs, err)
		}
	}
	e.cleanups = nil
	return errors.Join(errs...)
}

// Replicate runs the demo job once, narrating its progress, and returns its
// result and wall time (trigger to result).
func (e *Env) Replicate(ctx context.Context, out io.Writer) (workflows.ReplicateResult, time.Duration, error) {
	start := time.Now()
	run, err := starter.Run(ctx, e.Client, Job)
	if err != nil {
		return workflows.ReplicateResult{}, 0, err
	}
	r, err := starter.Follow(ctx, e.Client, run.WorkflowID, run.RunID, func(p starter.Progress) {
		fmt.Fprintf(out, "  %s\n", p)
	})
	if err != nil {
		return r, 0, err
	}
	took := time.Since(start)
	moved := starter.FormatBytes(r.Bytes) + " on the wire"
	if r.Received.StreamSize > 0 {
		moved = starter.FormatBytes(r.Received.StreamSize) + " stream, " + moved
	}
	fmt.Fprintf(out, "  done: %s, %d step(s), %s in %s\n", r.Snapshot, len(r.Plan.Steps), moved, took.Round(10*time.Millisecond))
	return r, took, nil
}

// Digests computes the snapshot's content digest on both hosts' storage.
func (e *Env) Digests(ctx context.Context, snapshot string) (source, target string, err error) {
	src, err := worker.OpenBackend(e.Config.Hosts["nas-a"], zap.NewNop())
	if err != nil {
		return "", "", err
	}
	tgt, err := worker.OpenBackend(e.Config.Hosts["nas-b"], zap.NewNop())
	if err != nil {
		return "", "", err
	}
	if source, err = src.ContentDigest(ctx, "share01", snapshot); err != nil {
		return "", "", fmt.Errorf("source content digest: %w", err)
	}
	if target, err = tgt.ContentDigest(ctx, "replicas/share01", snapshot); err != nil {
		return "", "", fmt.Errorf("target content digest: %w", err)
	}
	return source, target, nil
}

// writeSetup makes the CA, the two host certificates and the config file
// for two hosts on backend with the given roots.
func writeSetup(root, frontend, namespace, backend string, roots map[string]string) (string, error) {
	certDir := filepath.Join(root, "certs")
	if _, _, err := certs.Init(certDir, false); err != nil {
		return "", err
	}
	ports := make([]string, 2)
	for i, h := range []string{"nas-a", "nas-b"} {
		if _, _, err := certs.Issue(certDir, h, certs.IssueOptions{}); err != nil {
			return "", err
		}
		if backend != config.BackendZFS { // a zfs root is a dataset, not a path
			if err := os.MkdirAll(roots[h], 0o755); err != nil {
				return "", err
			}
		}
		ports[i] = freeOr("127.0.0.1:0")
	}
	cfg := fmt.Sprintf(`# written by ferry demo
temporal: {address: %q, namespace: %q}
tls: {ca: certs/ca.pem}
hosts:
  nas-a: {data_address: %q, backend: %s, root: %q}
  nas-b: {data_address: %q, backend: %s, root: %q}
jobs:
  %s:
    source: %s
    target: %s
    stream: {compress: zstd}
`, frontend, namespace, ports[0], backend, roots["nas-a"], ports[1], backend, roots["nas-b"], Job, Source, Target)
	p := filepath.Join(root, "ferry.yaml")
	return p, os.WriteFile(p, []byte(cfg), 0o644)
}

// freeOr returns addr when it can be listened on now, else a free port on
// its IP; with port 0 it always picks a concrete free port.
func freeOr(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		got := ln.Addr().String()
		ln.Close()
		return got
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return addr
	}
	defer ln.Close()
	return ln.Addr().String()
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// fileLogger logs every component of the demo into one JSON-lines file.
func fileLogger(path string) (*zap.Logger, func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	l, err := logging.New(logging.Options{JSON: true, Output: f})
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return l, func() { l.Sync(); f.Close() }, nil
}
