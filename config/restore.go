package config

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// RestoreDestination parses and checks a restore's --to HOST:DATASET for
// job: the host is declared and has the backend of the job's target (the
// replica is sent in that backend's stream format), and the dataset passes
// the checks of a configured one. Whether it exists is the host's to say.
func (c *Config) RestoreDestination(job Job, to string) (Endpoint, error) {
	example := job.Source.Host + ":" + path.Base(job.Source.Dataset) + "-restored"
	ep, err := ParseEndpoint(to)
	if err != nil {
		fix := "write --to HOST:DATASET, e.g. " + example
		if fe := (*fixError)(nil); errors.As(err, &fe) && !strings.HasPrefix(fe.fix, "write host:dataset") {
			fix = fe.fix // the dataset's own fix; the generic one would name a config key's example
		}
		return Endpoint{}, fmt.Errorf("--to %s: %w; %s", to, err, fix)
	}
	h, err := c.Host(ep.Host)
	if err != nil {
		return Endpoint{}, fmt.Errorf("--to %s: %w; restore to one of them, e.g. --to %s", to, err, example)
	}
	target, err := c.Host(job.Target.Host)
	if err != nil {
		return Endpoint{}, err
	}
	if h.Backend != target.Backend {
		return Endpoint{}, fmt.Errorf("--to %s: host %s has backend %s, but job %s's replica is on %s (%s): restore to a host with the %s backend (such as %s)",
			to, h.Name, h.Backend, job.Name, target.Name, target.Backend, target.Backend, job.Source.Host)
	}
	return ep, nil
}
