package server

import (
	"fmt"
	"strings"

	sdklog "go.temporal.io/sdk/log"
	tlog "go.temporal.io/server/common/log"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// defaultTemporalLogLevel is where the Temporal server's own logs start to be
// shown: at info it logs every service start, shard move and namespace cache
// refresh.
const defaultTemporalLogLevel = zapcore.WarnLevel

func parseLevel(s string) (zapcore.Level, error) {
	if s == "" {
		return defaultTemporalLogLevel, nil
	}
	var l zapcore.Level
	if err := l.UnmarshalText([]byte(strings.ToLower(s))); err != nil {
		return 0, fmt.Errorf("temporal log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// ignoredMessages are Temporal warnings that say nothing to a ferry user.
var ignoredMessages = []string{
	// ferry does not use Nexus, so the frontend's HTTP API stays off.
	"HTTP API port has not been set",
}

// minLevelCore drops entries below min (which can change while running) and
// the ignored messages. Unlike zap.IncreaseLevel it also accepts a min below
// the wrapped core's level (the wrapped core still filters).
type minLevelCore struct {
	zapcore.Core
	min zap.AtomicLevel
}

func (c minLevelCore) Enabled(l zapcore.Level) bool { return c.min.Enabled(l) && c.Core.Enabled(l) }

func (c minLevelCore) With(fields []zapcore.Field) zapcore.Core {
	return minLevelCore{Core: c.Core.With(fields), min: c.min}
}

func (c minLevelCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if !c.min.Enabled(e.Level) {
		return ce
	}
	for _, m := range ignoredMessages {
		if strings.HasPrefix(e.Message, m) {
			return ce
		}
	}
	return c.Core.Check(e, ce)
}

func withMinLevel(l *zap.Logger, min zap.AtomicLevel) *zap.Logger {
	return l.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return minLevelCore{Core: c, min: min} }))
}

// temporalLogger adapts zap to the Temporal server's logger interface (which
// reports its own call site, so zap's would only name the adapter).
// Fatal still ends the process, as the server expects; Start checks the
// listen addresses first so that a busy port is an error, not an exit.
func temporalLogger(l *zap.Logger, min zap.AtomicLevel) tlog.Logger {
	return tlog.NewZapLogger(withMinLevel(l.WithOptions(zap.WithCaller(false)), min))
}

// sdkLogger adapts zap to the SDK client's logger interface.
type sdkLogger struct{ s *zap.SugaredLogger }

var _ sdklog.Logger = sdkLogger{}

func newSDKLogger(l *zap.Logger, min zap.AtomicLevel) sdkLogger {
	return sdkLogger{s: withMinLevel(l.WithOptions(zap.WithCaller(false)), min).Sugar()}
}

func (l sdkLogger) Debug(msg string, kv ...any) { l.s.Debugw(msg, kv...) }
func (l sdkLogger) Info(msg string, kv ...any)  { l.s.Infow(msg, kv...) }
func (l sdkLogger) Warn(msg string, kv ...any)  { l.s.Warnw(msg, kv...) }
func (l sdkLogger) Error(msg string, kv ...any) { l.s.Errorw(msg, kv...) }
