// Package logging builds ferry's structured zap loggers and names the fields
// every log line about replication carries.
package logging

import (
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Field names shared by every component, so logs can be filtered the same way
// whichever process wrote them.
const (
	FieldJob      = "job"
	FieldHost     = "host"
	FieldStep     = "step"
	FieldSnapshot = "snapshot"
)

// Job, Host, Step and Snapshot build the shared fields.
func Job(name string) zap.Field      { return zap.String(FieldJob, name) }
func Host(name string) zap.Field     { return zap.String(FieldHost, name) }
func Step(name string) zap.Field     { return zap.String(FieldStep, name) }
func Snapshot(name string) zap.Field { return zap.String(FieldSnapshot, name) }

// Options choose the level and the encoding.
type Options struct {
	// Level is debug, info, warn or error; empty means info.
	Level string
	// JSON selects JSON lines (for log shippers) instead of console text.
	JSON bool
	// Output receives the lines; nil means stderr.
	Output io.Writer
}

// New builds a logger writing to opts.Output (stderr by default). Every line
// it writes has each field key once, however many layers added fields.
func New(opts Options) (*zap.Logger, error) {
	level := zapcore.InfoLevel
	if opts.Level != "" {
		if err := level.UnmarshalText([]byte(opts.Level)); err != nil {
			return nil, fmt.Errorf("log level %q: want debug, info, warn or error", opts.Level)
		}
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.StringDurationEncoder // "10s", not a bare 10
	var enc zapcore.Encoder
	if opts.JSON {
		enc = zapcore.NewJSONEncoder(encCfg)
	} else {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	out := zapcore.Lock(os.Stderr)
	if opts.Output != nil {
		out = zapcore.Lock(zapcore.AddSync(opts.Output))
	}
	core := zapcore.NewCore(enc, out, level)
	return zap.New(UniqueKeys(core), zap.ErrorOutput(zapcore.Lock(os.Stderr))), nil
}
