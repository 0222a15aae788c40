package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-nas/ferry/storage"
)

// problems parses src as ferry.yaml and returns its problems, failing the
// test if it parses cleanly or fails with something other than *Error.
func problems(t *testing.T, src string) []Problem {
	t.Helper()
	cfg, err := Parse([]byte(src), "/etc/ferry/ferry.yaml")
	require.Error(t, err, "config should be rejected")
	require.Nil(t, cfg)
	var ce *Error
	require.True(t, errors.As(err, &ce), "error is %T, want *Error", err)
	require.NotEmpty(t, ce.Problems)
	return ce.Problems
}

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(src), "/etc/ferry/ferry.yaml")
	require.NoError(t, err)
	return cfg
}

func TestExampleFromDesign(t *testing.T) {
	cfg, err := Load("testdata/example.yaml")
	require.NoError(t, err)
	dir, err := filepath.Abs("testdata")
	require.NoError(t, err)

	want := &Config{
		Temporal: Temporal{Address: "127.0.0.1:7233", Namespace: "default"},
		TLS:      TLS{CA: filepath.Join(dir, "certs/ca.pem")},
		Hosts: map[string]Host{
			"nas-a": {Name: "nas-a", DataAddress: "10.0.0.1:7400", Backend: BackendBtrfs, Root: "/mnt2/pool01"},
			"nas-b": {Name: "nas-b", DataAddress: "10.0.0.2:7400", Backend: BackendBtrfs, Root: "/mnt2/backup"},
		},
		Jobs: map[string]Job{
			"share01": {
				Name:   "share01",
				Source: Endpoint{Host: "nas-a", Dataset: "share01"},
				Target: Endpoint{Host: "nas-b", Dataset: "replicas/share01"},
				Every:  time.Hour,
				Retention: Retention{
					Source: Grid{Text: "24x1h | 7x1d", Buckets: []Bucket{
						{Count: 24, Period: time.Hour}, {Count: 7, Period: 24 * time.Hour}}},
					Target: Grid{Text: "24x1h | 30x1d | 12x30d", Buckets: []Bucket{
						{Count: 24, Period: time.Hour}, {Count: 30, Period: 24 * time.Hour}, {Count: 12, Period: 30 * 24 * time.Hour}}},
				},
				Stream: Stream{Compress: CompressZstd, BWLimit: 50 << 20, Resume: storage.ResumeAuto},
				Verify: VerifyQuick,
			},
		},
		File: filepath.Join(dir, "example.yaml"),
	}
	assert.Equal(t, want, cfg)
	assert.Equal(t, "nas-a:share01", cfg.Jobs["share01"].Source.String())
	assert.Equal(t, "24x1h | 30x1d | 12x30d", cfg.Jobs["share01"].Retention.Target.String())
	assert.False(t, cfg.Jobs["share01"].Manual())
}

func TestDefaults(t *testing.T) {
	cfg := mustParse(t, `
tls: {ca: /etc/ferry/ca.pem}
hosts:
  nas-a: {data_address: "[fd00::1]:7400", backend: dir, root: /srv/a}
  nas-b: {data_address: nas-b.lan:7400, backend: dir, root: /srv/b}
jobs:
  docs: {source: nas-a:docs, target: nas-b:docs}
`)
	assert.Equal(t, Temporal{Address: DefaultTemporalAddress, Namespace: DefaultNamespace}, cfg.Temporal)
	j, err := cfg.Job("docs")
	require.NoError(t, err)
	assert.Equal(t, Stream{Compress: CompressZstd, BWLimit: 0, Resume: storage.ResumeAuto}, j.Stream)
	assert.Equal(t, VerifyQuick, j.Verify)
	assert.True(t, j.Retention.Source.IsZero())
	assert.True(t, j.Retention.Target.IsZero())
	assert.True(t, j.Manual())
	assert.Empty(t, cfg.TLS.Cert)
}

func TestNoJobsIsValid(t *testing.T) {
	// A worker-only config: hosts but no jobs, and then no CA is needed.
	cfg := mustParse(t, "hosts:\n  nas-a: {data_address: 10.0.0.1:7400, backend: dir, root: /srv}\n")
	assert.Empty(t, cfg.Jobs)
	assert.Equal(t, []string{"nas-a"}, cfg.HostNames())
	assert.Empty(t, cfg.JobNames())
}

func TestAccepted(t *testing.T) {
	cfg := mustParse(t, `
temporal:
  address: temporal.example.com:7233
  namespace: backups
  tls: {server_name: temporal.example.com}
tls: {ca: ca.pem, cert: shared.pem, key: shared.key}
hosts:
  nas-a: {data_address: 10.0.0.1:7400, backend: zfs, root: tank}
  nas-b: {data_address: 10.0.0.2:7400, backend: zfs, root: backup}
jobs:
  daily: &common
    source: nas-a:media
    target: nas-b:media
    every: 1d12h
    stream: {compress: none, bwlimit: 2.5MiB/s, resume: staged}
    verify: deep
  weekly:
    <<: *common
    source: nas-a:photos
    target: nas-b:photos
    every: ""
    cron: "@weekly"
    retention: {target: "4x1w|12x4w"}
  cron_job:
    source: "nas-a:data/my share"
    target: nas-b:data
    cron: "30 2 * * 1-5"
    stream: {bwlimit: 1048576, zfs_send_decrypted: true}
`)
	assert.Equal(t, "temporal.example.com:7233", cfg.Temporal.Address)
	assert.Equal(t, "backups", cfg.Temporal.Namespace)
	require.NotNil(t, cfg.Temporal.TLS, "tls: {...} under temporal turns TLS on")
	assert.Equal(t, ClientTLS{ServerName: "temporal.example.com"}, *cfg.Temporal.TLS)
	assert.Equal(t, TLS{CA: "/etc/ferry/ca.pem", Cert: "/etc/ferry/shared.pem", Key: "/etc/ferry/shared.key"}, cfg.TLS)
	assert.Equal(t, []string{"cron_job", "daily", "weekly"}, cfg.JobNames())

	daily := cfg.Jobs["daily"]
	assert.Equal(t, 36*time.Hour, daily.Every)
	assert.Equal(t, Stream{Compress: CompressNone, BWLimit: 5 << 19, Resume: storage.ResumeStaged}, daily.Stream)
	assert.Equal(t, VerifyDeep, daily.Verify)

	// Merged from daily, with explicit keys winning.
	weekly := cfg.Jobs["weekly"]
	assert.Equal(t, "nas-a:photos", weekly.Source.String())
	assert.Equal(t, time.Duration(0), weekly.Every)
	assert.Equal(t, "@weekly", weekly.Cron)
	assert.Equal(t, VerifyDeep, weekly.Verify)
	assert.Equal(t, daily.Stream, weekly.Stream)
	assert.Equal(t, []Bucket{{4, 7 * 24 * time.Hour}, {12, 28 * 24 * time.Hour}}, weekly.Retention.Target.Buckets)

	cj := cfg.Jobs["cron_job"]
	assert.Equal(t, Endpoint{Host: "nas-a", Dataset: "data/my share"}, cj.Source)
	assert.Equal(t, "30 2 * * 1-5", cj.Cron)
	assert.Equal(t, int64(1<<20), cj.Stream.BWLimit)
	assert.Equal(t, CompressZstd, cj.Stream.Compress)
	assert.True(t, cj.Stream.ZFSSendDecrypted, "stream.zfs_send_decrypted on a zfs job")
	assert.False(t, daily.Stream.ZFSSendDecrypted, "encrypted datasets go raw by default")
}

func TestRelativePathsResolveAgainstConfigDir(t *testing.T) {
	src := []byte(`
temporal:
  tls: {ca: tls/temporal-ca.pem, cert: tls/client.pem, key: /abs/client.key}
tls: {ca: certs/ca.pem, cert: ./certs/../certs/any.pem, key: certs/any.key}
hosts:
  nas-a: {data_address: 10.0.0.1:7400, backend: dir, root: /srv, cert: certs/nas-a.pem, key: certs/nas-a.key}
`)
	cfg, err := Parse(src, "conf/ferry.yaml")
	require.NoError(t, err)
	wd, err := os.Getwd()
	require.NoError(t, err)
	dir := filepath.Join(wd, "conf")

	assert.Equal(t, filepath.Join(dir, "ferry.yaml"), cfg.File)
	assert.Equal(t, TLS{
		CA:   filepath.Join(dir, "certs/ca.pem"),
		Cert: filepath.Join(dir, "certs/any.pem"),
		Key:  filepath.Join(dir, "certs/any.key"),
	}, cfg.TLS)
	assert.Equal(t, &ClientTLS{
		CA:   filepath.Join(dir, "tls/temporal-ca.pem"),
		Cert: filepath.Join(dir, "tls/client.pem"),
		Key:  "/abs/client.key",
	}, cfg.Temporal.TLS)
	h, err := cfg.Host("nas-a")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "certs/nas-a.pem"), h.Cert)
	assert.Equal(t, filepath.Join(dir, "certs/nas-a.key"), h.Key)

	// Without a file name: the current directory, and no File.
	cfg, err = Parse(src, "")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(wd, "certs/ca.pem"), cfg.TLS.CA)
	assert.Empty(t, cfg.File)
}

func TestAccessors(t *testing.T) {
	cfg := mustParse(t, `
tls: {ca: ca.pem}
hosts:
  zeta: {data_address: 10.0.0.1:7400, backend: dir, root: /srv}
  alpha: {data_address: 10.0.0.2:7400, backend: dir, root: /srv}
jobs:
  b: {source: zeta:x, target: alpha:x}
  a: {source: alpha:y, target: zeta:y}
`)
	assert.Equal(t, []string{"alpha", "zeta"}, cfg.HostNames())
	assert.Equal(t, []string{"a", "b"}, cfg.JobNames())
	j, err := cfg.Job("b")
	require.NoError(t, err)
	assert.Equal(t, "zeta:x", j.Source.String())
	_, err = cfg.Job("c")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown job "c" (jobs: a, b)`)
	_, err = cfg.Host("beta")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown host "beta" (hosts: alpha, zeta)`)
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	require.Error(t, err)
	assert.True(t, errors.Is(err, fs.ErrNotExist))
}

func TestAllProblemsReported(t *testing.T) {
	ps := problems(t, `temporal: {address: localhost}
hosts:
  nas-a: {data_address: 10.0.0.1, backend: ext4, root: mnt}
jobs:
  j1:
    source: nas-a:../x
    target: nas-c:y
    every: 10s
    verify: fast
`)
	var keys []string
	for _, p := range ps {
		keys = append(keys, p.Key)
		assert.Equal(t, "/etc/ferry/ferry.yaml", p.File)
		assert.NotEmpty(t, p.Reason)
		assert.NotEmpty(t, p.Fix, "problem %q has no fix", p.Key)
	}
	// Sorted by line, then key; tls.ca is missing altogether (line 0).
	assert.Equal(t, []string{
		"tls.ca",
		"temporal.address",
		"hosts.nas-a.backend",
		"hosts.nas-a.data_address",
		"hosts.nas-a.root",
		"jobs.j1.source",
		"jobs.j1.target",
		"jobs.j1.every",
		"jobs.j1.verify",
	}, keys)

	err := &Error{File: "/etc/ferry/ferry.yaml", Problems: ps}
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, len(ps), "one problem per line")
	assert.Equal(t, `/etc/ferry/ferry.yaml:7: jobs.j1.target: host "nas-c" is not declared under hosts (declared: nas-a); fix the name or add the host`, lines[6])
	assert.True(t, strings.HasPrefix(lines[0], "/etc/ferry/ferry.yaml: tls.ca: "), lines[0])
}

func TestProblemString(t *testing.T) {
	p := Problem{File: "ferry.yaml", Key: "jobs.share01.target",
		Reason: `host "nas-c" is not declared under hosts (declared: nas-a, nas-b)`, Fix: "fix the name or add the host"}
	assert.Equal(t, `ferry.yaml: jobs.share01.target: host "nas-c" is not declared under hosts (declared: nas-a, nas-b); fix the name or add the host`, p.String())
	p.Line = 9
	assert.True(t, strings.HasPrefix(p.String(), "ferry.yaml:9: jobs.share01.target: "))
}

func TestMergeBombIsBounded(t *testing.T) {
	// Each job merges the previous one ten times: 10^12 keys if expanded.
	var b strings.Builder
	b.WriteString("hosts: {}\njobs:\n  j0: &a0 {verify: deep}\n")
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&b, "  j%d: &a%d {<<: [%s]}\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
	}
	start := time.Now()
	ps := problems(t, b.String())
	assert.Less(t, time.Since(start), 5*time.Second)
	found := false
	for _, p := range ps {
		found = found || strings.Contains(p.Reason, "expand to more than")
	}
	assert.True(t, found, "the expansion limit is reported")
}

func TestDocsExampleIsTestdata(t *testing.T) {
	doc, err := os.ReadFile("../docs/config.md")
	require.NoError(t, err)
	example, err := os.ReadFile("testdata/example.yaml")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	require.True(t, ok, "docs/config.md has a yaml block")
	block, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	assert.Equal(t, string(example), block, "the first example in docs/config.md is config/testdata/example.yaml")
}

func TestJobTimeoutsParse(t *testing.T) {
	cfg := mustParse(t, withJob("timeouts: {heartbeat: 5s, host: 2m, stream: 12h}"))
	j, err := cfg.Job("j1")
	require.NoError(t, err)
	require.Equal(t, Timeouts{Heartbeat: 5 * time.Second, Host: 2 * time.Minute, Stream: 12 * time.Hour}, j.Timeouts)
}

func TestDeployExampleIsValid(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "deploy", "ferry.example.yaml"))
	require.NoError(t, err)
	require.Equal(t, []string{"photos", "share01"}, cfg.JobNames())
	photos, err := cfg.Job("photos")
	require.NoError(t, err)
	require.Equal(t, storage.ResumeStaged, photos.Stream.Resume)
	require.Equal(t, 168*time.Hour, photos.Timeouts.Stream)
}

func TestMetricsAddress(t *testing.T) {
	cfg := mustParse(t, "hosts:\n  nas-a: {data_address: 10.0.0.1:7400, backend: dir, root: /srv, metrics_address: 127.0.0.1:9400}\n  nas-b: {data_address: 10.0.0.2:7400, backend: dir, root: /srv}\n")
	assert.Equal(t, "127.0.0.1:9400", cfg.Hosts["nas-a"].MetricsAddress)
	assert.Empty(t, cfg.Hosts["nas-b"].MetricsAddress, "off by default")
}
