// Package config reads ferry's configuration: one YAML file shared by every
// host, naming the Temporal endpoint, the TLS material, the hosts with their
// storage and the replication jobs between them.
//
// The file is parsed strictly (unknown and duplicate keys are errors) and
// validated as a whole before anything runs. Every problem found is reported
// at once, as an *Error listing one Problem per line with the file, the key
// and how to fix it. docs/config.md describes every key.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ferry-nas/ferry/storage"
)

// Backends.
const (
	BackendDir   = "dir"
	BackendBtrfs = "btrfs"
	BackendZFS   = "zfs"
)

// Stream compression (stream.compress).
const (
	CompressNone = "none"
	CompressZstd = "zstd"
)

// Verification levels (verify).
const (
	VerifyQuick = "quick"
	VerifyDeep  = "deep"
)

// Defaults applied to keys that are absent.
const (
	DefaultTemporalAddress = "127.0.0.1:7233"
	DefaultNamespace       = "default"
	DefaultCompress        = CompressZstd
	DefaultResume          = storage.ResumeAuto
	DefaultVerify          = VerifyQuick
)

// Limits enforced by validation.
const (
	// MinEvery is the shortest schedule interval (every:).
	MinEvery = time.Minute
	// MinGridPeriod is the shortest retention bucket period.
	MinGridPeriod = time.Minute
	// MinBWLimit is the smallest stream.bwlimit, in bytes per second.
	MinBWLimit = 1024
)

// Config is a parsed and validated configuration file.
type Config struct {
	Temporal Temporal
	TLS      TLS
	// Hosts by name; Host.Name repeats the key.
	Hosts map[string]Host
	// Jobs by name; Job.Name repeats the key. May be empty (a config for
	// workers only).
	Jobs map[string]Job
	// File is the absolute path of the file the config came from, or empty
	// when it was parsed without a file name.
	File string
	// Notify is the default of every job's Notify (top-level notify).
	Notify Notify
}

// Temporal is how ferry reaches the Temporal frontend.
type Temporal struct {
	Address   string
	Namespace string
	// TLS, when non-nil, connects with TLS (and mutual TLS when Cert/Key are
	// set) to an existing cluster; nil means plain gRPC.
	TLS *ClientTLS
}

// ClientTLS is TLS for the Temporal client. File paths are absolute.
type ClientTLS struct {
	// CA is the CA bundle to trust; empty means the system roots.
	CA   string
	Cert string
	Key  string
	// ServerName overrides the name checked in the server's certificate.
	ServerName string
}

// TLS is the data plane's TLS material. File paths are absolute.
type TLS struct {
	// CA signs every host certificate; required when any job is configured.
	CA string
	// Cert and Key are the certificate a worker uses when neither its
	// command line nor its hosts.<name> entry names one.
	Cert string
	Key  string
}

// Host is one NAS host.
type Host struct {
	Name string
	// DataAddress is host:port where this host's data server listens and
	// where other hosts dial it.
	DataAddress string
	// Backend is BackendDir, BackendBtrfs or BackendZFS.
	Backend string
	// Root is the absolute, clean path datasets are relative to.
	Root string
	// Cert and Key, when set, are this host's certificate (absolute paths).
	Cert string
	Key  string
	// MetricsAddress, when set, is host:port where the host's worker
	// serves Prometheus metrics on /metrics (plain HTTP); empty means off.
	MetricsAddress string
	// Hooks are the commands this host's worker may run around the
	// snapshots of jobs whose source it is, by name (hosts.<h>.hooks).
	Hooks map[string]Hook
}

// Job is one replication from a source dataset to a target dataset.
type Job struct {
	Name   string
	Source Endpoint
	Target Endpoint
	// Every is the schedule interval; 0 when unset.
	Every time.Duration
	// Cron is a standard 5-field cron expression or @descriptor; empty when
	// unset. At most one of Every and Cron is set; neither means manual.
	Cron      string
	Retention Retention
	Stream    Stream
	// Verify is VerifyQuick or VerifyDeep.
	Verify string
	// Timeouts bound the run's steps; zero values take the workflow's defaults.
	Timeouts Timeouts
	// Hooks name hooks of the source host run around the snapshot.
	Hooks JobHooks
	// Notify is where the job's failures and recoveries are reported (the
	// job's notify, else the top-level one); zero for nowhere.
	Notify Notify
}

// Timeouts bound a run's steps (jobs.<j>.timeouts).
type Timeouts struct {
	// Heartbeat is how long a receive may go silent before its worker is
	// presumed dead and the step is retried (default 30s).
	Heartbeat time.Duration
	// Host bounds each short step on a host, retries included, so a host
	// that is down fails the run instead of hanging it (default 10m).
	Host time.Duration
	// Stream bounds one step's transfer, retries included (default 72h).
	Stream time.Duration
}

// Manual reports whether the job has no schedule and only runs on demand.
func (j Job) Manual() bool { return j.Every == 0 && j.Cron == "" }

// Endpoint is a dataset on a host: the dataset path is relative to the
// host's root, with components separated by "/".
type Endpoint struct {
	Host    string
	Dataset string
}

// String returns "host:dataset".
func (e Endpoint) String() string { return e.Host + ":" + e.Dataset }

// Retention is the pruning policy for each side of a job. An empty Grid
// keeps every snapshot ferry made.
type Retention struct {
	Source Grid
	Target Grid
}

// Stream tunes the transfer.
type Stream struct {
	// Compress is CompressZstd or CompressNone.
	Compress string
	// BWLimit is the rate limit in bytes per second; 0 means unlimited.
	BWLimit int64
	// Resume is the stream.resume mode (storage.ResumeModes).
	Resume storage.ResumeMode
	// ZFSSendDecrypted (stream.zfs_send_decrypted, zfs jobs only) sends an
	// encrypted source dataset decrypted; by default it is sent raw, or
	// refused where the source cannot send raw.
	ZFSSendDecrypted bool
}

// NotFoundError says the config file is not there; commands add how to
// name another one (--config).
type NotFoundError struct {
	Path, Abs string
	Err       error
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("config: no config file at %s (%s)", e.Path, e.Abs)
}

func (e *NotFoundError) Unwrap() error { return e.Err }

// Load reads and validates the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		where := path
		if abs, aerr := filepath.Abs(path); aerr == nil {
			where = abs
		}
		return nil, &NotFoundError{Path: path, Abs: where, Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// Parse validates data as the contents of file. Relative paths in the
// config are resolved against file's directory (the current directory when
// file is empty) and returned absolute. Any problems are returned together
// as an *Error.
func Parse(data []byte, file string) (*Config, error) {
	display := file
	if display == "" {
		display = "<config>"
	}
	baseDir, absFile := "", ""
	if file != "" {
		if a, err := filepath.Abs(file); err == nil {
			absFile = a
			baseDir = filepath.Dir(a)
		}
	}
	if baseDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("config: resolving relative paths: %w", err)
		}
		baseDir = wd
	}

	p := &parser{file: display, lines: map[string]int{}}
	raw, ok := p.decode(data)
	if !ok {
		return nil, p.err()
	}
	cfg := p.validate(raw, baseDir)
	if len(p.problems) > 0 {
		return nil, p.err()
	}
	cfg.File = absFile
	return cfg, nil
}

// HostNames returns the host names, sorted.
func (c *Config) HostNames() []string { return sortedKeys(c.Hosts) }

// JobNames returns the job names, sorted.
func (c *Config) JobNames() []string { return sortedKeys(c.Jobs) }

// Job returns the named job, or an error listing the known jobs.
func (c *Config) Job(name string) (Job, error) {
	j, ok := c.Jobs[name]
	if !ok {
		return Job{}, fmt.Errorf("config: unknown job %q (%s)", name, known("jobs", c.JobNames()))
	}
	return j, nil
}

// Host returns the named host, or an error listing the known hosts.
func (c *Config) Host(name string) (Host, error) {
	h, ok := c.Hosts[name]
	if !ok {
		return Host{}, fmt.Errorf("config: unknown host %q (%s)", name, known("hosts", c.HostNames()))
	}
	return h, nil
}

func known(what string, names []string) string {
	if len(names) == 0 {
		return "no " + what + " are configured"
	}
	return what + ": " + strings.Join(names, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
