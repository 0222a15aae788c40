package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hostsYAML declares two btrfs and two zfs hosts.
const hostsYAML = `hosts:
  nas-a: {data_address: 10.0.0.1:7400, backend: btrfs, root: /mnt/a}
  nas-b: {data_address: 10.0.0.2:7400, backend: btrfs, root: /mnt/b}
  zfs-a: {data_address: 10.0.0.3:7400, backend: zfs, root: tank/a}
  zfs-b: {data_address: 10.0.0.4:7400, backend: zfs, root: tank/b}
`

// withJobs is a valid config around the given jobs mapping body (indented
// two spaces).
func withJobs(jobs string) string {
	return "tls: {ca: ca.pem}\n" + hostsYAML + "jobs:\n" + jobs
}

// withJob is a config with one job j1 from nas-a:s to nas-b:r/s plus the
// given extra fields (YAML flow mapping entries).
func withJob(extra string) string {
	if extra != "" {
		extra = ", " + extra
	}
	return withJobs("  j1: {source: nas-a:s, target: nas-b:r/s" + extra + "}\n")
}

// withHost is a config with only the host nas-x described by fields.
func withHost(name, fields string) string {
	return fmt.Sprintf("hosts:\n  %s: {%s}\n", name, fields)
}

const goodHost = "data_address: 10.0.0.9:7400, backend: dir, root: /srv"

func TestBaseConfigsAreValid(t *testing.T) {
	// The table below relies on these being valid, so that each case's
	// problem is the only one.
	mustParse(t, withJob(""))
	mustParse(t, withHost("nas-x", goodHost))
}

func TestRules(t *testing.T) {
	long := strings.Repeat("a", 64)
	cases := []struct {
		name   string
		src    string
		key    string // Problem.Key
		reason string // distinctive part of Problem.Reason
	}{
		// file and structure
		{"empty file", "", "", "the file is empty"},
		{"only comments", "# nothing yet\n", "", "the file is empty"},
		{"not a mapping", "- nas-a\n", "", "expected a mapping"},
		{"yaml syntax", "hosts: {nas-a: [\n", "", "invalid YAML"},
		{"two documents", withHost("nas-x", goodHost) + "---\nhosts: {}\n", "", "more than one YAML document"},
		{"unknown top-level key", withHost("nas-x", goodHost) + "schedules: {}\n", "schedules", "unknown key"},
		{"unknown job key", withJob("sorce: nas-a:s"), "jobs.j1.sorce", "unknown key"},
		{"unknown host key", withHost("nas-x", goodHost+", port: 7400"), "hosts.nas-x.port", "unknown key"},
		{"duplicate host", withHost("nas-x", goodHost) + "  nas-x: {" + goodHost + "}\n", "hosts.nas-x", "duplicate key"},
		{"duplicate job key", withJob("every: 1h, every: 2h"), "jobs.j1.every", "duplicate key"},
		{"list instead of mapping", withJob("stream: [zstd]"), "jobs.j1.stream", "expected a mapping, found a list"},
		{"mapping instead of value", withJob("every: {h: 1}"), "jobs.j1.every", "expected a single value"},

		// hosts
		{"no hosts", "hosts: {}\n", "hosts", "no hosts are declared"},
		{"no hosts key", "temporal: {namespace: x}\n", "hosts", "no hosts are declared"},
		{"host name uppercase", withHost("NAS-X", goodHost), "hosts.NAS-X", "host name \"NAS-X\" is not valid"},
		{"host name underscore", withHost("nas_x", goodHost), "hosts.nas_x", "is not valid"},
		{"host name trailing dash", withHost("nas-", goodHost), "hosts.nas-", "is not valid"},
		{"host name too long", withHost(long, goodHost), "hosts." + long, "is not valid"},
		{"data_address missing", withHost("nas-x", "backend: dir, root: /srv"), "hosts.nas-x.data_address", "is required"},
		{"data_address without port", withHost("nas-x", "data_address: 10.0.0.9, backend: dir, root: /srv"), "hosts.nas-x.data_address", "is not host:port"},
		{"data_address port 0", withHost("nas-x", "data_address: 10.0.0.9:0, backend: dir, root: /srv"), "hosts.nas-x.data_address", "not a number from 1 to 65535"},
		{"data_address port too big", withHost("nas-x", "data_address: 10.0.0.9:65536, backend: dir, root: /srv"), "hosts.nas-x.data_address", "not a number from 1 to 65535"},
		{"data_address port name", withHost("nas-x", "data_address: 10.0.0.9:ferry, backend: dir, root: /srv"), "hosts.nas-x.data_address", "not a number from 1 to 65535"},
		{"data_address no host", withHost("nas-x", "data_address: \":7400\", backend: dir, root: /srv"), "hosts.nas-x.data_address", "has no valid host"},
		{"data_address shared", "hosts:\n  nas-a: {" + goodHost + "}\n  nas-b: {" + goodHost + "}\n", "hosts.nas-b.data_address", "is also host nas-a's data_address"},
		{"backend missing", withHost("nas-x", "data_address: 10.0.0.9:7400, root: /srv"), "hosts.nas-x.backend", "is required"},
		{"backend unknown", withHost("nas-x", "data_address: 10.0.0.9:7400, backend: ext4, root: /srv"), "hosts.nas-x.backend", `unknown backend "ext4"`},
		{"root missing", withHost("nas-x", "data_address: 10.0.0.9:7400, backend: dir"), "hosts.nas-x.root", "is required"},
		{"root relative", withHost("nas-x", "data_address: 10.0.0.9:7400, backend: dir, root: srv"), "hosts.nas-x.root", "not an absolute path"},
		{"zfs root a path", withHost("nas-x", "data_address: 10.0.0.9:7400, backend: zfs, root: /tank/ferry"), "hosts.nas-x.root", `root "/tank/ferry" is not a ZFS dataset name`},
		{"zfs root bad component", withHost("nas-x", "data_address: 10.0.0.9:7400, backend: zfs, root: tank/a@b"), "hosts.nas-x.root", "not a ZFS dataset name"},
		{"root is /", withHost("nas-x", "data_address: 10.0.0.9:7400, backend: dir, root: /"), "hosts.nas-x.root", "must not be /"},
		{"root with ..", withHost("nas-x", "data_address: 10.0.0.9:7400, backend: dir, root: /srv/../etc"), "hosts.nas-x.root", "not a clean path"},
		{"root trailing slash", withHost("nas-x", "data_address: 10.0.0.9:7400, backend: dir, root: /srv/"), "hosts.nas-x.root", "not a clean path"},
		{"host cert without key", withHost("nas-x", goodHost+", cert: x.pem"), "hosts.nas-x.key", "cert is set but key is not"},
		{"host key without cert", withHost("nas-x", goodHost+", key: x.key"), "hosts.nas-x.cert", "key is set but cert is not"},
		{"metrics_address without port", withHost("nas-x", goodHost+", metrics_address: localhost"), "hosts.nas-x.metrics_address", "is not host:port"},
		{"metrics_address no host", withHost("nas-x", goodHost+", metrics_address: \":9400\""), "hosts.nas-x.metrics_address", "has no valid host"},
		{"metrics_address bad port", withHost("nas-x", goodHost+", metrics_address: 127.0.0.1:http"), "hosts.nas-x.metrics_address", "not a number from 1 to 65535"},
		{"metrics_address is data_address", withHost("nas-x", goodHost+", metrics_address: 10.0.0.9:7400"), "hosts.nas-x.metrics_address", "is also this host's data_address"},

		// job names and endpoints
		{"job name with dot", withJobs("  j.1: {source: nas-a:s, target: nas-b:s}\n"), "jobs.j.1", "job name \"j.1\" is not valid"},
		{"job name leading dash", withJobs("  -j: {source: nas-a:s, target: nas-b:s}\n"), "jobs.-j", "is not valid"},
		{"job name too long", withJobs("  " + long + "b: {source: nas-a:s, target: nas-b:s}\n"), "jobs." + long + "b", "is not valid"},
		{"source missing", withJobs("  j1: {target: nas-b:s}\n"), "jobs.j1.source", "is required"},
		{"target missing", withJobs("  j1: {source: nas-a:s}\n"), "jobs.j1.target", "is required"},
		{"endpoint without colon", withJobs("  j1: {source: nas-a, target: nas-b:s}\n"), "jobs.j1.source", "is not host:dataset"},
		{"endpoint without host", withJobs("  j1: {source: nas-a:s, target: \":s\"}\n"), "jobs.j1.target", "has no host"},
		{"unknown host", withJobs("  j1: {source: nas-a:s, target: nas-c:s}\n"), "jobs.j1.target", `host "nas-c" is not declared under hosts (declared: nas-a, nas-b, zfs-a, zfs-b)`},
		{"dataset empty", withJobs("  j1: {source: nas-a:s, target: \"nas-b:\"}\n"), "jobs.j1.target", "dataset is empty"},
		{"dataset absolute", withJobs("  j1: {source: nas-a:/etc, target: nas-b:s}\n"), "jobs.j1.source", "is an absolute path"},
		{"dataset ..", withJobs("  j1: {source: nas-a:s, target: nas-b:r/../../etc}\n"), "jobs.j1.target", `contains a ".." component`},
		{"dataset .", withJobs("  j1: {source: nas-a:./s, target: nas-b:s}\n"), "jobs.j1.source", `contains a "." component`},
		{"dataset empty component", withJobs("  j1: {source: nas-a:s, target: nas-b:r//s}\n"), "jobs.j1.target", "empty component"},
		{"dataset trailing slash", withJobs("  j1: {source: nas-a:s/, target: nas-b:s}\n"), "jobs.j1.source", "ends with a slash"},
		{"dataset backslash", withJobs("  j1: {source: nas-a:s, target: 'nas-b:r\\s'}\n"), "jobs.j1.target", "backslash"},
		{"dataset control character", withJobs("  j1: {source: \"nas-a:s\\tx\", target: nas-b:s}\n"), "jobs.j1.source", "control character"},
		{"dataset NUL", withJobs("  j1: {source: \"nas-a:s\\0\", target: nas-b:s}\n"), "jobs.j1.source", "control character"},
		{"dataset reserved .ferry", withJobs("  j1: {source: nas-a:s, target: nas-b:.ferry/s}\n"), "jobs.j1.target", "reserved"},
		{"zfs dataset name", withJobs("  j1: {source: zfs-a:s, target: zfs-b:r@s}\n"), "jobs.j1.target", "not a valid ZFS dataset name"},
		{"source equals target", withJobs("  j1: {source: nas-a:s, target: nas-a:s}\n"), "jobs.j1.target", "is the same dataset as the source"},
		{"target inside source", withJobs("  j1: {source: nas-a:s, target: nas-a:s/backup}\n"), "jobs.j1.target", "is inside the source"},
		{"source inside target", withJobs("  j1: {source: nas-a:s/sub, target: nas-a:s}\n"), "jobs.j1.target", "contains the source"},
		{"backend mismatch", withJobs("  j1: {source: nas-a:s, target: zfs-b:s}\n"), "jobs.j1.target", "target host zfs-b uses backend zfs but source host nas-a uses backend btrfs"},

		// jobs against each other
		{"two jobs same target", withJobs("  j1: {source: nas-a:s, target: nas-b:r}\n  j2: {source: nas-a:t, target: nas-b:r}\n"), "jobs.j2.target", "is the same dataset as job j1's target"},
		{"nested targets", withJobs("  j1: {source: nas-a:s, target: nas-b:r}\n  j2: {source: nas-a:t, target: nas-b:r/t}\n"), "jobs.j2.target", "is inside job j1's target"},
		{"target is another job's source", withJobs("  j1: {source: nas-a:s, target: nas-b:r}\n  j2: {source: nas-b:r, target: nas-a:t}\n"), "jobs.j1.target", "is the same dataset as job j2's source"},
		{"target inside another job's source", withJobs("  j1: {source: nas-a:s, target: nas-b:home/r}\n  j2: {source: nas-b:home, target: nas-a:t}\n"), "jobs.j1.target", "is inside job j2's source"},

		// schedule
		{"every too short", withJob("every: 30s"), "jobs.j1.every", "shorter than the minimum 1m"},
		{"every garbage", withJob("every: hourly"), "jobs.j1.every", `"hourly" is not a duration`},
		{"every without unit", withJob("every: 60"), "jobs.j1.every", "has no unit"},
		{"every and cron", withJob(`every: 1h, cron: "0 * * * *"`), "jobs.j1.cron", "every and cron are both set"},
		{"cron six fields", withJob(`cron: "0 0 * * * *"`), "jobs.j1.cron", "expected exactly 5 fields"},
		{"cron bad descriptor", withJob(`cron: "@fortnightly"`), "jobs.j1.cron", "is not valid"},
		{"cron @every too short", withJob(`cron: "@every 30s"`), "jobs.j1.cron", "more often than the minimum"},

		// retention
		{"grid garbage", withJob(`retention: {source: "weekly"}`), "jobs.j1.retention.source", "is not COUNTxPERIOD"},
		{"grid count zero", withJob(`retention: {target: "0x1h"}`), "jobs.j1.retention.target", "is not a whole number ≥ 1"},
		{"grid period too short", withJob(`retention: {target: "10x30s"}`), "jobs.j1.retention.target", "shorter than 1m"},
		{"grid periods decrease", withJob(`retention: {target: "7x1d | 24x1h"}`), "jobs.j1.retention.target", "shorter than the previous bucket's 1d"},
		{"grid empty bucket", withJob(`retention: {target: "24x1h || 7x1d"}`), "jobs.j1.retention.target", "bucket 2 of"},
		{"grid bad period", withJob(`retention: {target: "24x1y"}`), "jobs.j1.retention.target", `unknown unit "y"`},

		// stream and verify
		{"compress unknown", withJob("stream: {compress: lz4}"), "jobs.j1.stream.compress", `unknown compression "lz4"`},
		{"resume unknown", withJob("stream: {resume: always}"), "jobs.j1.stream.resume", `unknown resume mode "always"`},
		{"bwlimit garbage", withJob("stream: {bwlimit: fast}"), "jobs.j1.stream.bwlimit", `"fast" is not a size`},
		{"bwlimit bits", withJob("stream: {bwlimit: 100Mb}"), "jobs.j1.stream.bwlimit", `unknown unit "Mb"`},
		{"bwlimit too small", withJob("stream: {bwlimit: 512}"), "jobs.j1.stream.bwlimit", "below the minimum 1KiB"},
		{"bwlimit zero", withJob("stream: {bwlimit: 0}"), "jobs.j1.stream.bwlimit", "below the minimum 1KiB"},
		{"zfs_send_decrypted on btrfs", withJob("stream: {zfs_send_decrypted: true}"), "jobs.j1.stream.zfs_send_decrypted",
			"zfs_send_decrypted is set but source host nas-a uses backend btrfs"},
		{"zfs_send_decrypted not a bool", withJobs("  j1: {source: zfs-a:s, target: zfs-b:r, stream: {zfs_send_decrypted: maybe}}\n"), "jobs.j1.stream.zfs_send_decrypted", `"maybe" is not true or false`},
		{"verify unknown", withJob("verify: full"), "jobs.j1.verify", `unknown verify level "full"`},
		{"heartbeat timeout too short", withJob("timeouts: {heartbeat: 500ms}"), "jobs.j1.timeouts.heartbeat", "out of range"},
		{"heartbeat timeout too long", withJob("timeouts: {heartbeat: 1h}"), "jobs.j1.timeouts.heartbeat", "out of range"},
		{"host timeout garbage", withJob("timeouts: {host: soon}"), "jobs.j1.timeouts.host", `"soon" is not a duration`},
		{"stream timeout too short", withJob("timeouts: {stream: 10s}"), "jobs.j1.timeouts.stream", "out of range"},
		{"timeouts unknown key", withJob("timeouts: {verify: 1m}"), "jobs.j1.timeouts.verify", "unknown key"},

		// tls and temporal
		{"ca missing with jobs", strings.Replace(withJob(""), "tls: {ca: ca.pem}\n", "", 1), "tls.ca", "is not set"},
		{"tls cert without key", strings.Replace(withJob(""), "{ca: ca.pem}", "{ca: ca.pem, cert: c.pem}", 1), "tls.key", "cert is set but key is not"},
		{"temporal tls key without cert", withHost("nas-x", goodHost) + "temporal: {tls: {key: k.pem}}\n", "temporal.tls.cert", "key is set but cert is not"},
		{"temporal address without port", withHost("nas-x", goodHost) + "temporal: {address: temporal.lan}\n", "temporal.address", "is not host:port"},
		{"temporal namespace with space", withHost("nas-x", goodHost) + "temporal: {namespace: \"my ns\"}\n", "temporal.namespace", "white space"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps := problems(t, tc.src)
			require.Len(t, ps, 1, "want exactly one problem, got:\n%v", (&Error{Problems: ps}).Error())
			p := ps[0]
			assert.Equal(t, tc.key, p.Key)
			assert.Contains(t, p.Reason, tc.reason)
			assert.Equal(t, "/etc/ferry/ferry.yaml", p.File)
			assert.NotEmpty(t, p.Fix, "every problem says how to fix it")
			if tc.key != "" && !strings.HasPrefix(tc.key, "tls.ca") && tc.key != "hosts" {
				assert.Positive(t, p.Line, "problem at a key in the file has a line")
			}
		})
	}
}

func TestEntriesWithoutValues(t *testing.T) {
	// "nas-x:" with nothing after it is an entry with every field missing.
	ps := problems(t, "hosts:\n  nas-x:\n")
	assert.Equal(t, []string{"hosts.nas-x.backend", "hosts.nas-x.data_address", "hosts.nas-x.root"}, problemKeys(ps))
	for _, p := range ps {
		assert.Equal(t, "is required", p.Reason)
		assert.Equal(t, 2, p.Line, "a missing key is placed on its parent's line")
	}

	ps = problems(t, withJobs("  j1:\n  j2: {source: nas-a:t, target: nas-b:t}\n"))
	assert.Equal(t, []string{"jobs.j1.source", "jobs.j1.target"}, problemKeys(ps))
}

func problemKeys(ps []Problem) []string {
	var keys []string
	for _, p := range ps {
		keys = append(keys, p.Key)
	}
	return keys
}
