package logging

import "go.uber.org/zap/zapcore"

// uniqueKeys keeps each field key once per log line. ferry's loggers are
// layered (the command, the worker, an activity each add host, job, ...), and
// zap would encode a key once per layer: {"host":"a","host":"a"} is JSON
// that many log shippers reject or silently truncate to one value. The
// context fields are held here and merged with the entry's own fields at
// write time; a later field replaces an earlier one of the same key in place.
type uniqueKeys struct {
	zapcore.Core // without context fields
	fields       []zapcore.Field
}

// UniqueKeys wraps core so that every line it writes has each key once.
func UniqueKeys(core zapcore.Core) zapcore.Core {
	if u, ok := core.(*uniqueKeys); ok {
		return u
	}
	return &uniqueKeys{Core: core}
}

func (u *uniqueKeys) With(fields []zapcore.Field) zapcore.Core {
	return &uniqueKeys{Core: u.Core, fields: mergeFields(u.fields, fields)}
}

func (u *uniqueKeys) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if u.Enabled(ent.Level) {
		return ce.AddCore(ent, u)
	}
	return ce
}

func (u *uniqueKeys) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	return u.Core.Write(ent, mergeFields(u.fields, fields))
}

// mergeFields appends more to base (never modifying base), replacing a field
// of base with the same key in the same object: fields after a zap.Namespace
// belong to that nested object, so keys are compared within it.
func mergeFields(base, more []zapcore.Field) []zapcore.Field {
	if len(more) == 0 {
		return base
	}
	out := make([]zapcore.Field, len(base), len(base)+len(more))
	copy(out, base)
	scopes := make([]int, len(base), len(base)+len(more)) // namespace depth of each field
	depth := 0
	for i, f := range base {
		scopes[i] = depth
		if f.Type == zapcore.NamespaceType {
			depth++
		}
	}
	for _, f := range more {
		if dedupable(f) {
			if i := indexOfKey(out, scopes, depth, f.Key); i >= 0 {
				out[i] = f
				continue
			}
		}
		out = append(out, f)
		scopes = append(scopes, depth)
		if f.Type == zapcore.NamespaceType {
			depth++
		}
	}
	return out
}

// dedupable: a namespace opens an object and an inline marshaler adds keys
// of its own, so neither is one key to compare; a Skip field has none.
func dedupable(f zapcore.Field) bool {
	return f.Key != "" && f.Type != zapcore.NamespaceType && f.Type != zapcore.InlineMarshalerType && f.Type != zapcore.SkipType
}

// indexOfKey finds the field with key in the innermost object (depth).
func indexOfKey(fields []zapcore.Field, scopes []int, depth int, key string) int {
	for i := len(fields) - 1; i >= 0 && scopes[i] == depth; i-- {
		if fields[i].Key == key && dedupable(fields[i]) {
			return i
		}
	}
	return -1
}
