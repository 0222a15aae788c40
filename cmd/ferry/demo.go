package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ferry-nas/ferry/config"
	"github.com/ferry-nas/ferry/demo"
)

func init() { rootCmd.AddCommand(newDemoCmd()) }

func newDemoCmd() *cobra.Command {
	var (
		opts demo.Options
		size string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Replicate a sample share between two local workers: a full, then an incremental run",
		Long: `Run ferry end to end on this machine, without root and without anything
installed: an in-memory Temporal server with its web UI, certificates, two NAS
workers (nas-a and nas-b) on the dir backend, a sample share, a full and an
incremental replication with live progress, and a check that the replica's
content digest equals the source's.

--backend btrfs runs the same demo on the btrfs backend: as root, with
btrfs-progs installed, each worker gets its own loop-mounted btrfs image
(sparse files in the demo directory), unmounted and removed at the end.

--backend zfs runs it on the zfs backend: as root, with the zfs and zpool
commands and a running ZFS service (zfs-fuse's daemon or the kernel module),
each worker gets its own pool (ferrydemo-<pid>-<host>) on a sparse file in
the demo directory, destroyed at the end; with --keep the pools stay after
Ctrl-C and the demo prints the commands that remove them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch opts.Backend {
			case config.BackendDir:
			case config.BackendBtrfs:
				if os.Geteuid() != 0 {
					return fmt.Errorf("--backend btrfs needs root: the demo makes, mounts and removes two loop btrfs images; run it with sudo, or leave out --backend for the dir backend")
				}
			case config.BackendZFS:
				if err := demo.CheckZFS(); err != nil {
					return fmt.Errorf("--backend zfs: %w", err)
				}
			default:
				return fmt.Errorf("--backend: the demo runs on dir, btrfs or zfs, not %q", opts.Backend)
			}
			n, err := config.ParseSize(size)
			if err != nil {
				return fmt.Errorf("--size: %w", err)
			}
			opts.ShareSize, opts.Out = n, cmd.OutOrStdout()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			_, err = demo.Run(ctx, opts)
			return err
		},
	}
	cmd.Flags().StringVar(&size, "size", "200MiB", "size of the sample share")
	cmd.Flags().StringVar(&opts.Dir, "dir", "", "directory for everything (default: a new temporary directory, removed at the end unless --keep)")
	cmd.Flags().BoolVar(&opts.Keep, "keep", false, "keep the server, UI, workers and files up until Ctrl-C")
	cmd.Flags().StringVar(&opts.Address, "address", "", "Temporal frontend address (default 127.0.0.1:7233, or a free port when busy)")
	cmd.Flags().StringVar(&opts.Backend, "backend", config.BackendDir, "storage backend of both hosts: dir, btrfs (root only: two loop-mounted btrfs images) or zfs (root only: two ZFS pools on sparse files)")
	cmd.Flags().StringVar(&opts.UIAddress, "ui-address", "", "web UI address (default 127.0.0.1:8233, or a free port when busy)")
	return cmd
}
