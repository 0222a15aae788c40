package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"go.uber.org/zap"
)

// cpuProfileEnv names a path prefix: `ferry worker` then writes a CPU
// profile of its whole life to PREFIX.HOST.PID.pprof, for profiling the
// workers of the e2e tests and benchmarks (docs/testing.md). The profile is
// written when the worker stops gracefully (SIGINT, SIGTERM).
const cpuProfileEnv = "FERRY_CPUPROFILE"

// startCPUProfile starts the profile $FERRY_CPUPROFILE asks for and returns
// its stop; without it, a no-op.
func startCPUProfile(log *zap.Logger, host string) (stop func(), err error) {
	prefix := os.Getenv(cpuProfileEnv)
	if prefix == "" {
		return func() {}, nil
	}
	path := fmt.Sprintf("%s.%s.%d.pprof", prefix, host, os.Getpid())
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (unset it or name a writable path prefix)", cpuProfileEnv, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: start the CPU profile: %w", cpuProfileEnv, err)
	}
	log.Info("writing a CPU profile until the worker stops", zap.String("path", path))
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Warn("CPU profile not written", zap.String("path", path), zap.Error(err))
		}
	}, nil
}
