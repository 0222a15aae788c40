package config

import "fmt"

// RestoreDestination parses and checks a restore's --to HOST:DATASET for
// job: the host is declared and has the backend of the job's target (the
// replica is sent in that backend's stream format), and the dataset passes
// the checks of a configured one. Whether it exists is the host's to say.
func (c *Config) RestoreDestination(job Job, to string) (Endpoint, error) {
	ep, err := ParseEndpoint(to)
	if err != nil {
		return Endpoint{}, fmt.Errorf("--to %s: %w", to, err)
	}
	h, err := c.Host(ep.Host)
	if err != nil {
		return Endpoint{}, fmt.Errorf("--to %s: %w", to, err)
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
