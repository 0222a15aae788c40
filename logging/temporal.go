package logging

import (
	"go.temporal.io/sdk/log"
	"go.uber.org/zap"
)

// Temporal adapts a zap logger to the Temporal SDK's key-value logger.
func Temporal(l *zap.Logger) log.Logger {
	return temporalLogger{l.WithOptions(zap.AddCallerSkip(1)).Sugar()}
}

type temporalLogger struct{ s *zap.SugaredLogger }

func (t temporalLogger) Debug(msg string, kv ...interface{}) { t.s.Debugw(msg, kv...) }
func (t temporalLogger) Info(msg string, kv ...interface{})  { t.s.Infow(msg, kv...) }
func (t temporalLogger) Warn(msg string, kv ...interface{})  { t.s.Warnw(msg, kv...) }
func (t temporalLogger) Error(msg string, kv ...interface{}) { t.s.Errorw(msg, kv...) }

// With implements log.WithLogger so the SDK can attach workflow fields.
func (t temporalLogger) With(kv ...interface{}) log.Logger { return temporalLogger{t.s.With(kv...)} }
