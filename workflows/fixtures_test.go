package workflows

import "github.com/ferry-nas/ferry/activities"

var resumePos = activities.ResumePosition{Offset: 4096, HashState: []byte{1}}

// quietLogger drops the test environment's debug chatter; warnings and
// errors still reach the test log through the failures they cause.
type quietLogger struct{}

func (quietLogger) Debug(string, ...interface{}) {}
func (quietLogger) Info(string, ...interface{})  {}
func (quietLogger) Warn(string, ...interface{})  {}
func (quietLogger) Error(string, ...interface{}) {}
