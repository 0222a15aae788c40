package config

import (
	"fmt"
	"net"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/robfig/cron/v3"

	"github.com/ferry-nas/ferry/storage"
)

var (
	// Host names become task queues (ferry-host-<name>) and certificate
	// names, so they are DNS labels.
	hostNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// Job names become schedule ids (ferry-<job>) and snapshot names
	// (ferry_<job>_<time>).
	jobNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	// zfsComponentRE is what ZFS allows in a dataset name component.
	zfsComponentRE = regexp.MustCompile(`^[A-Za-z0-9_.: -]+$`)
)

const (
	hostNameFix = "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit (the name becomes the task queue ferry-host-<name> and a certificate name)"
	jobNameFix  = "use 1-64 letters, digits, '_' and '-', starting with a letter or digit (the name becomes the schedule id ferry-<job> and part of snapshot names)"
)

func (p *parser) validate(raw *rawConfig, dir string) *Config {
	resolve := func(s string) string {
		if s == "" {
			return ""
		}
		if filepath.IsAbs(s) {
			return filepath.Clean(s)
		}
		return filepath.Join(dir, s)
	}
	cfg := &Config{Hosts: map[string]Host{}, Jobs: map[string]Job{}}

	// temporal
	rt := raw.Temporal
	if rt == nil {
		rt = &rawTemporal{}
	}
	cfg.Temporal.Address = DefaultTemporalAddress
	if rt.Address != "" {
		cfg.Temporal.Address = rt.Address
		p.checkHostPort("temporal.address", rt.Address, "the Temporal frontend, e.g. 127.0.0.1:7233")
	}
	cfg.Temporal.Namespace = DefaultNamespace
	if rt.Namespace != "" {
		cfg.Temporal.Namespace = rt.Namespace
		if strings.ContainsFunc(rt.Namespace, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
			p.add("temporal.namespace", "use the namespace's exact name, without spaces", "namespace %q contains white space", rt.Namespace)
		}
	}
	if ct := rt.TLS; ct != nil {
		cfg.Temporal.TLS = &ClientTLS{CA: resolve(ct.CA), Cert: resolve(ct.Cert), Key: resolve(ct.Key), ServerName: ct.ServerName}
		p.checkPair("temporal.tls", ct.Cert, ct.Key)
	}

	// tls
	rtls := raw.TLS
	if rtls == nil {
		rtls = &rawTLS{}
	}
	cfg.TLS = TLS{CA: resolve(rtls.CA), Cert: resolve(rtls.Cert), Key: resolve(rtls.Key)}
	p.checkPair("tls", rtls.Cert, rtls.Key)
	if len(raw.Jobs) > 0 && rtls.CA == "" {
		p.add("tls.ca", "set tls.ca to the CA certificate that signed the host certificates (ferry certs makes one)",
			"is not set, but jobs stream between hosts over mutual TLS, which needs the CA")
	}

	// hosts
	if len(raw.Hosts) == 0 {
		p.add("hosts", "declare at least one host, e.g. hosts: {nas-a: {data_address: 10.0.0.1:7400, backend: btrfs, root: /mnt/pool}}",
			"no hosts are declared")
	}
	hostNames := sortedKeys(raw.Hosts)
	addrOwner := map[string]string{}
	for _, name := range hostNames {
		h := p.host(name, raw.Hosts[name], resolve)
		cfg.Hosts[name] = h
		if h.DataAddress == "" {
			continue
		}
		if other, dup := addrOwner[h.DataAddress]; dup {
			p.add("hosts."+name+".data_address", "give each host's data server its own address",
				"%s is also host %s's data_address", h.DataAddress, other)
		} else {
			addrOwner[h.DataAddress] = name
		}
	}

	// jobs, each on its own
	cfg.Notify = p.notify("notify", raw.Notify)
	jobNames := sortedKeys(raw.Jobs)
	endpointsOK := map[string]bool{}
	for _, name := range jobNames {
		j, ok := p.job(name, raw.Jobs[name], cfg.Hosts, hostNames)
		if raw.Jobs[name] == nil || raw.Jobs[name].Notify == nil {
			j.Notify = cfg.Notify // the job's own notify replaces the default
		}
		cfg.Jobs[name] = j
		endpointsOK[name] = ok
	}

	// jobs against each other
	for i, a := range jobNames {
		if !endpointsOK[a] {
			continue
		}
		ja := cfg.Jobs[a]
		for _, b := range jobNames[:i] {
			if !endpointsOK[b] {
				continue
			}
			jb := cfg.Jobs[b]
			if ja.Target.Host == jb.Target.Host && overlap(ja.Target.Dataset, jb.Target.Dataset) {
				p.add("jobs."+a+".target", "give each job its own target dataset, not nested in another job's",
					"target %s %s job %s's target %s: two jobs would write to the same place",
					ja.Target, relation(ja.Target.Dataset, jb.Target.Dataset), b, jb.Target)
			}
		}
		for _, b := range jobNames {
			if b == a || !endpointsOK[b] {
				continue
			}
			jb := cfg.Jobs[b]
			if ja.Target.Host == jb.Source.Host && overlap(ja.Target.Dataset, jb.Source.Dataset) {
				p.add("jobs."+a+".target", "replicate into a dataset that no job uses as its source (replicating a replica onward is not supported)",
					"target %s %s job %s's source %s: one job would receive where the other snapshots",
					ja.Target, relation(ja.Target.Dataset, jb.Source.Dataset), b, jb.Source)
			}
		}
	}
	return cfg
}

// relation describes how dataset a relates to dataset b, which overlap.
func relation(a, b string) string {
	switch {
	case a == b:
		return "is the same dataset as"
	case within(a, b):
		return "is inside"
	default:
		return "contains"
	}
}

func (p *parser) host(name string, rh *rawHost, resolve func(string) string) Host {
	key := "hosts." + name
	if rh == nil {
		rh = &rawHost{}
	}
	if !hostNameRE.MatchString(name) {
		p.add(key, hostNameFix, "host name %q is not valid", name)
	}
	h := Host{Name: name, DataAddress: rh.DataAddress, Backend: rh.Backend, Root: rh.Root,
		Cert: resolve(rh.Cert), Key: resolve(rh.Key), MetricsAddress: rh.MetricsAddress}

	if rh.DataAddress == "" {
		p.add(key+".data_address", "set it to host:port where this host's data server listens, e.g. 10.0.0.1:7400",
			"is required")
	} else {
		p.checkHostPort(key+".data_address", rh.DataAddress, "this host's data server, e.g. 10.0.0.1:7400")
	}

	if rh.MetricsAddress != "" {
		p.checkHostPort(key+".metrics_address", rh.MetricsAddress,
			"the worker's plain-HTTP /metrics endpoint on a management address or localhost, e.g. 127.0.0.1:9400")
		if rh.MetricsAddress == rh.DataAddress {
			p.add(key+".metrics_address", "give /metrics its own port, e.g. 127.0.0.1:9400",
				"%s is also this host's data_address", rh.MetricsAddress)
		}
	}

	switch rh.Backend {
	case BackendDir, BackendBtrfs, BackendZFS:
	case "":
		p.add(key+".backend", "set it to dir, btrfs or zfs", "is required")
	default:
		p.add(key+".backend", "use dir, btrfs or zfs", "unknown backend %q", rh.Backend)
	}

	const rootFix = "set it to the absolute path datasets are relative to, e.g. /mnt/pool01"
	const zfsRootFix = "set it to the ZFS dataset datasets are relative to (its name, not its mount point), e.g. tank/ferry"
	switch r := rh.Root; {
	case rh.Backend == BackendZFS && r == "":
		p.add(key+".root", zfsRootFix, "is required")
	case rh.Backend == BackendZFS:
		for _, c := range strings.Split(r, "/") {
			if !zfsComponentRE.MatchString(c) || c == "." || c == ".." {
				p.add(key+".root", zfsRootFix, "root %q is not a ZFS dataset name (component %q)", r, c)
				break
			}
		}
	case r == "":
		p.add(key+".root", rootFix, "is required")
	case strings.ContainsFunc(r, unicode.IsControl):
		p.add(key+".root", rootFix, "root %q contains a control character", r)
	case !path.IsAbs(r):
		p.add(key+".root", rootFix, "root %q is not an absolute path", r)
	case r == "/":
		p.add(key+".root", "use a directory below / dedicated to ferry's datasets, e.g. /mnt/pool01", "root must not be /")
	case path.Clean(r) != r:
		p.add(key+".root", fmt.Sprintf("write it as %s", path.Clean(r)),
			"root %q is not a clean path (no .., ., // or trailing /)", r)
	}

	p.checkPair(key, rh.Cert, rh.Key)
	h.Hooks = p.hooks(key, rh.Hooks)
	return h
}

// job validates one job on its own. ok reports whether both endpoints are
// valid, so that the job can be compared with the others.
func (p *parser) job(name string, rj *rawJob, hosts map[string]Host, hostNames []string) (Job, bool) {
	key := "jobs." + name
	if rj == nil {
		rj = &rawJob{}
	}
	if !jobNameRE.MatchString(name) {
		p.add(key, jobNameFix, "job name %q is not valid", name)
	}
	j := Job{Name: name, Cron: rj.Cron, Verify: DefaultVerify,
		Stream: Stream{Compress: DefaultCompress, Resume: DefaultResume}}

	var srcOK, dstOK bool
	j.Source, srcOK = p.endpoint(key+".source", rj.Source, hosts, hostNames)
	j.Target, dstOK = p.endpoint(key+".target", rj.Target, hosts, hostNames)
	if srcOK && dstOK {
		src, dst := j.Source, j.Target
		if src.Host == dst.Host && overlap(src.Dataset, dst.Dataset) {
			p.add(key+".target", "replicate into a dataset outside the source (and not containing it)",
				"target %s %s the source %s", dst, relation(dst.Dataset, src.Dataset), src)
			dstOK = false
		}
		sb, tb := hosts[src.Host].Backend, hosts[dst.Host].Backend
		if validBackend(sb) && validBackend(tb) && sb != tb {
			p.add(key+".target", "replicate between hosts with the same backend",
				"target host %s uses backend %s but source host %s uses backend %s; streams of one backend cannot be received by another",
				dst.Host, tb, src.Host, sb)
		}
	}

	// schedule
	if rj.Every != "" && rj.Cron != "" {
		p.add(key+".cron", "keep either every or cron (or neither, for a manual job)", "every and cron are both set")
	}
	if rj.Every != "" {
		d, err := ParseDuration(rj.Every)
		switch {
		case err != nil:
			p.addErr(key+".every", durationFix, err)
		case d < MinEvery:
			p.add(key+".every", "use 1m or longer", "every %s is shorter than the minimum 1m", rj.Every)
		default:
			j.Every = d
		}
	}
	if rj.Cron != "" {
		sched, err := cron.ParseStandard(rj.Cron)
		if err != nil {
			p.add(key+".cron", `write 5 fields (minute hour day-of-month month day-of-week), e.g. "0 * * * *", or a descriptor such as @daily`,
				"cron %q is not valid: %v", rj.Cron, err)
		} else if cd, ok := sched.(cron.ConstantDelaySchedule); ok && cd.Delay < MinEvery {
			p.add(key+".cron", "use 1m or longer", "cron %q runs more often than the minimum of once a minute", rj.Cron)
		}
	}

	// retention
	if rr := rj.Retention; rr != nil {
		var err error
		if j.Retention.Source, err = ParseGrid(rr.Source); err != nil {
			p.addErr(key+".retention.source", gridFix, err)
		}
		if j.Retention.Target, err = ParseGrid(rr.Target); err != nil {
			p.addErr(key+".retention.target", gridFix, err)
		}
	}

	// stream
	if rs := rj.Stream; rs != nil {
		if rs.Compress != "" {
			j.Stream.Compress = rs.Compress
			if rs.Compress != CompressNone && rs.Compress != CompressZstd {
				p.add(key+".stream.compress", "use zstd or none", "unknown compression %q", rs.Compress)
			}
		}
		if rs.Resume != "" {
			j.Stream.Resume = storage.ResumeMode(rs.Resume)
			if !j.Stream.Resume.Valid() {
				p.add(key+".stream.resume", "use auto, staged or off", "unknown resume mode %q", rs.Resume)
			}
		}
		if rs.BWLimit != "" {
			// A rate reads naturally as "50MiB/s"; the unit is per second anyway.
			n, err := ParseSize(strings.TrimSuffix(strings.TrimSpace(rs.BWLimit), "/s"))
			switch {
			case err != nil:
				p.addErr(key+".stream.bwlimit", sizeFix, err)
			case n < MinBWLimit:
				p.add(key+".stream.bwlimit", "set at least 1KiB (per second), or remove bwlimit for no limit",
					"bwlimit %s is below the minimum 1KiB", rs.BWLimit)
			default:
				j.Stream.BWLimit = n
			}
		}
		if v := rs.ZFSSendDecrypted; v != "" {
			k := key + ".stream.zfs_send_decrypted"
			switch b := hosts[j.Source.Host].Backend; {
			case v != "true" && v != "false":
				p.add(k, "use true or false", "zfs_send_decrypted %q is not true or false", v)
			case srcOK && b != BackendZFS:
				p.add(k, "remove it: it only applies to jobs between zfs hosts",
					"zfs_send_decrypted is set but source host %s uses backend %s, which has no encrypted datasets to send", j.Source.Host, b)
			default:
				j.Stream.ZFSSendDecrypted = v == "true"
			}
		}
	}

	if rt := rj.Timeouts; rt != nil {
		for _, t := range []struct {
			name     string
			text     string
			min, max time.Duration
			dst      *time.Duration
		}{
			{"heartbeat", rt.Heartbeat, time.Second, 10 * time.Minute, &j.Timeouts.Heartbeat},
			{"host", rt.Host, 10 * time.Second, 0, &j.Timeouts.Host},
			{"stream", rt.Stream, time.Minute, 0, &j.Timeouts.Stream},
		} {
			if t.text == "" {
				continue
			}
			d, err := ParseDuration(t.text)
			switch {
			case err != nil:
				p.addErr(key+".timeouts."+t.name, durationFix, err)
			case d < t.min || (t.max > 0 && d > t.max):
				limits := "at least " + t.min.String()
				if t.max > 0 {
					limits = "between " + t.min.String() + " and " + t.max.String()
				}
				p.add(key+".timeouts."+t.name, "set it "+limits, "timeout %s is out of range", t.text)
			default:
				*t.dst = d
			}
		}
	}

	if rj.Verify != "" {
		j.Verify = rj.Verify
		if rj.Verify != VerifyQuick && rj.Verify != VerifyDeep {
			p.add(key+".verify", "use quick or deep", "unknown verify level %q", rj.Verify)
		}
	}
	j.Hooks = p.jobHooks(key, rj.Hooks, j, hosts, srcOK)
	j.Notify = p.notify(key+".notify", rj.Notify)
	return j, srcOK && dstOK
}

func validBackend(b string) bool {
	return b == BackendDir || b == BackendBtrfs || b == BackendZFS
}

// endpoint parses and checks a job's source or target.
func (p *parser) endpoint(key, s string, hosts map[string]Host, hostNames []string) (Endpoint, bool) {
	if s == "" {
		p.add(key, "write host:dataset, e.g. nas-b:replicas/share01", "is required")
		return Endpoint{}, false
	}
	e, err := ParseEndpoint(s)
	if err != nil {
		p.addErr(key, "write host:dataset, e.g. nas-b:replicas/share01", err)
		host, ds, _ := strings.Cut(s, ":")
		return Endpoint{Host: host, Dataset: ds}, false
	}
	h, ok := hosts[e.Host]
	if !ok {
		declared := "none are declared"
		if len(hostNames) > 0 {
			declared = "declared: " + strings.Join(hostNames, ", ")
		}
		p.add(key, "fix the name or add the host", "host %q is not declared under hosts (%s)", e.Host, declared)
		return e, false
	}
	if h.Backend == BackendZFS {
		for _, c := range strings.Split(e.Dataset, "/") {
			if !zfsComponentRE.MatchString(c) {
				p.add(key, "use only letters, digits, '_', '-', '.', ':' and spaces in ZFS dataset names",
					"dataset %q is not a valid ZFS dataset name (component %q)", e.Dataset, c)
				return e, false
			}
		}
	}
	return e, true
}

// checkHostPort checks s is host:port with a port from 1 to 65535.
func (p *parser) checkHostPort(key, s, what string) {
	fix := "write host:port for " + what + " (there is no default port)"
	h, port, err := net.SplitHostPort(s)
	if err != nil {
		p.add(key, fix, "%q is not host:port", s)
		return
	}
	if h == "" || strings.ContainsFunc(h, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		p.add(key, fix, "%q has no valid host before the port", s)
		return
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		p.add(key, fix, "port %q in %q is not a number from 1 to 65535", port, s)
	}
}

// checkPair reports a cert without a key or a key without a cert under key.
func (p *parser) checkPair(key, cert, keyFile string) {
	const fix = "set both cert and key, or neither"
	switch {
	case cert != "" && keyFile == "":
		p.add(join(key, "key"), fix, "cert is set but key is not")
	case cert == "" && keyFile != "":
		p.add(join(key, "cert"), fix, "key is set but cert is not")
	}
}
