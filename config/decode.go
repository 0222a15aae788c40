package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The file's shape. Every leaf is a string so that the checks, not the YAML
// decoder, decide what a value means; map values are pointers so that an
// entry written with no value ("nas-a:") decodes as nil rather than failing.
type rawConfig struct {
	Temporal *rawTemporal        `yaml:"temporal"`
	TLS      *rawTLS             `yaml:"tls"`
	Hosts    map[string]*rawHost `yaml:"hosts"`
	Jobs     map[string]*rawJob  `yaml:"jobs"`
	Notify   *rawNotify          `yaml:"notify"`
}

type rawTemporal struct {
	Address   string        `yaml:"address"`
	Namespace string        `yaml:"namespace"`
	TLS       *rawClientTLS `yaml:"tls"`
}

type rawClientTLS struct {
	CA         string `yaml:"ca"`
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	ServerName string `yaml:"server_name"`
}

type rawTLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

type rawHost struct {
	DataAddress string `yaml:"data_address"`
	Backend     string `yaml:"backend"`
	Root        string `yaml:"root"`
	Cert        string `yaml:"cert"`
	Key         string `yaml:"key"`
	// MetricsAddress is where the worker serves /metrics (plain HTTP).
	MetricsAddress string `yaml:"metrics_address"`
	// Hooks are the commands this host's worker may run around a job's
	// snapshot, by name (hooks.go).
	Hooks map[string]*rawHook `yaml:"hooks"`
}

type rawJob struct {
	Source    string        `yaml:"source"`
	Target    string        `yaml:"target"`
	Every     string        `yaml:"every"`
	Cron      string        `yaml:"cron"`
	Retention *rawRetention `yaml:"retention"`
	Stream    *rawStream    `yaml:"stream"`
	Verify    string        `yaml:"verify"`
	Timeouts  *rawTimeouts  `yaml:"timeouts"`
	Hooks     *rawJobHooks  `yaml:"hooks"`
	Notify    *rawNotify    `yaml:"notify"`
}

type rawTimeouts struct {
	Heartbeat string `yaml:"heartbeat"`
	Host      string `yaml:"host"`
	Stream    string `yaml:"stream"`
}

type rawRetention struct {
	Source string `yaml:"source"`
	Target string `yaml:"target"`
}

type rawStream struct {
	Compress string `yaml:"compress"`
	BWLimit  string `yaml:"bwlimit"`
	Resume   string `yaml:"resume"`
	// ZFSSendDecrypted: zfs only (validate.go).
	ZFSSendDecrypted string `yaml:"zfs_send_decrypted"`
}

// parser collects problems for one file.
type parser struct {
	file     string
	problems []Problem
	// lines maps key paths to the line their key is on.
	lines map[string]int
	// budget bounds the keys the walk visits, so that aliases merged into
	// aliases cannot make it take exponential time.
	budget int
}

// maxKeys is far more keys than any real configuration has, counting each
// merged key once per place it is merged into.
const maxKeys = 100000

func (p *parser) err() error {
	sortProblems(p.problems)
	p.problems = dedupe(p.problems)
	return &Error{File: p.file, Problems: p.problems}
}

// add records a problem at key, placed on the line of key or of its
// nearest ancestor that is in the file.
func (p *parser) add(key, fix, format string, args ...any) {
	p.problems = append(p.problems, Problem{
		File:   p.file,
		Line:   p.lineOf(key),
		Key:    key,
		Reason: fmt.Sprintf(format, args...),
		Fix:    fix,
	})
}

// addErr records err (from one of the Parse functions) at key, using the
// error's own fix when it has one.
func (p *parser) addErr(key, fix string, err error) {
	var fe *fixError
	if errors.As(err, &fe) && fe.fix != "" {
		fix = fe.fix
	}
	p.add(key, fix, "%s", err.Error())
}

func (p *parser) lineOf(key string) int {
	for k := key; k != ""; {
		if l, ok := p.lines[k]; ok {
			return l
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// decode parses data into the raw shape, recording structural problems. It
// returns false when there is nothing to validate further.
func (p *parser) decode(data []byte) (*rawConfig, bool) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.add("", "write the configuration: temporal, tls, hosts and jobs (see docs/config.md)", "the file is empty")
			return nil, false
		}
		p.yamlError(err, data, "fix the YAML syntax")
		return nil, false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			line = 0
		}
		p.problems = append(p.problems, Problem{File: p.file, Line: line,
			Reason: "the file holds more than one YAML document",
			Fix:    `keep a single document (remove the "---" separator)`})
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		p.add("", "write the configuration: temporal, tls, hosts and jobs (see docs/config.md)", "the file is empty")
		return nil, false
	}
	root := doc.Content[0]
	for root.Kind == yaml.AliasNode && root.Alias != nil {
		root = root.Alias
	}
	if root.Kind != yaml.MappingNode {
		p.problems = append(p.problems, Problem{File: p.file, Line: root.Line,
			Reason: fmt.Sprintf("expected a mapping of temporal, tls, hosts and jobs, found %s", kindName(root)),
			Fix:    "write the configuration as key: value pairs (see docs/config.md)"})
		return nil, false
	}
	var raw rawConfig
	p.walk(root, reflect.ValueOf(&raw).Elem(), "", nil)

	// The walk above reported unknown keys, duplicate keys and wrong shapes
	// with their key paths, and kept going. yaml.v3's strict decoder checks
	// the same things (it gives up on a whole mapping at the first
	// duplicate, hence the walk); it is asked as well, so that anything the
	// walk does not know about is still refused.
	if len(p.problems) == 0 {
		var check rawConfig
		strict := yaml.NewDecoder(bytes.NewReader(data))
		strict.KnownFields(true)
		if err := strict.Decode(&check); err != nil {
			p.yamlError(err, data, "fix the YAML there")
		}
	}
	return &raw, true
}

// yamlError turns a yaml.v3 error into problems, keeping its line numbers.
// The two syntax errors people meet most get a word on their cause.
func (p *parser) yamlError(err error, data []byte, fix string) {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	for _, m := range msgs {
		line := 0
		if sub := yamlLine.FindStringSubmatch(m); sub != nil {
			line, _ = strconv.Atoi(sub[1])
			m = sub[2]
		}
		m = strings.TrimPrefix(m, "yaml: ")
		if line == 0 {
			line = aliasLine(m, data)
		}
		reason, f := "invalid YAML: "+m, fix
		if cause, how := syntaxCause(m, sourceLine(data, line)); cause != "" {
			reason, f = reason+" ("+cause+")", how
		}
		p.problems = append(p.problems, Problem{File: p.file, Line: line, Reason: reason, Fix: f})
	}
}

var unknownAnchor = regexp.MustCompile(`unknown anchor '([^']*)' referenced`)

// aliasLine is the line of the alias an "unknown anchor" error is about
// (yaml.v3 gives none), 0 when it is not found.
func aliasLine(msg string, data []byte) int {
	sub := unknownAnchor.FindStringSubmatch(msg)
	if sub == nil {
		return 0
	}
	for i, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, "*"+sub[1]) {
			return i + 1
		}
	}
	return 0
}

// sourceLine is line n (1-based) of data, "" when there is none.
func sourceLine(data []byte, n int) string {
	if n < 1 {
		return ""
	}
	lines := strings.Split(string(data), "\n")
	if n > len(lines) {
		return ""
	}
	return lines[n-1]
}

// syntaxCause names what in text (the line yaml.v3 complained about, with
// its message msg) most likely caused the error, and the fix; "" when it
// is nothing it knows.
func syntaxCause(msg, text string) (cause, fix string) {
	switch {
	case strings.Contains(msg, "found character that cannot start any token") && strings.Contains(text, "\t"):
		return "the line holds a tab: YAML indents with spaces only", "replace the tab with spaces"
	case strings.Contains(msg, "did not find expected alphabetic or numeric character") && strings.Contains(text, "*"),
		strings.Contains(msg, "unknown anchor") && strings.Contains(text, "*"):
		return "an unquoted * starts a YAML alias", `quote the value, e.g. "*.tmp"`
	}
	return "", ""
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "something else"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// walk fills v from node n at key path, checking the shape as it goes:
// mappings where mappings belong, known keys, no duplicate keys, single
// values for leaves. It records the line of every key it sees. seen guards
// against alias cycles.
func (p *parser) walk(n *yaml.Node, v reflect.Value, path string, seen map[*yaml.Node]bool) {
	if n.Kind == yaml.AliasNode {
		if seen[n] || n.Alias == nil {
			return
		}
		if seen == nil {
			seen = map[*yaml.Node]bool{}
		}
		seen[n] = true
		p.walk(n.Alias, v, path, seen)
		delete(seen, n)
		return
	}
	if isNull(n) {
		return // absent value: defaults or "required" checks apply
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			p.add(path, "write a single value here", "expected a single value, found %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			p.add(path, "write a list here, e.g. [/usr/local/bin/prog, --flag]", "expected a list, found %s", kindName(n))
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), 0, len(n.Content)))
		for i, item := range n.Content {
			elem := reflect.New(v.Type().Elem()).Elem()
			p.walk(item, elem, fmt.Sprintf("%s[%d]", path, i), seen)
			v.Set(reflect.Append(v, elem))
		}
	case reflect.Struct, reflect.Map:
		if n.Kind != yaml.MappingNode {
			fix := "write key: value pairs here"
			if names := fieldNames(v.Type()); len(names) > 0 {
				fix += " (keys: " + strings.Join(names, ", ") + ")"
			}
			p.add(path, fix, "expected a mapping, found %s", kindName(n))
			return
		}
		if v.Kind() == reflect.Map && v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		p.walkMapping(n, v, path, seen, map[string]int{}, false)
	}
}

// walkMapping fills v (a struct or a map) from mapping n. set holds the keys
// already filled, with their lines. Keys merged in with "<<: *anchor" fill
// only keys not already set, as YAML defines; explicit keys come first.
func (p *parser) walkMapping(n *yaml.Node, v reflect.Value, path string, seen map[*yaml.Node]bool, set map[string]int, merged bool) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if p.budget++; p.budget > maxKeys {
			if p.budget == maxKeys+1 {
				p.problems = append(p.problems, Problem{File: p.file, Line: k.Line, Key: path,
					Reason: fmt.Sprintf("aliases and merges expand to more than %d keys", maxKeys),
					Fix:    "write the configuration without nested merges"})
			}
			return
		}
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, val)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			p.problems = append(p.problems, Problem{File: p.file, Line: k.Line, Key: path,
				Reason: "a key is not a plain name", Fix: "use plain names as keys"})
			continue
		}
		key := join(path, k.Value)
		var field reflect.Value
		if v.Kind() == reflect.Struct {
			f, ok := fieldByTag(v.Type(), k.Value)
			if !ok {
				names := fieldNames(v.Type())
				fix := "remove it (known keys: " + strings.Join(names, ", ") + ")"
				if s := closest(k.Value, names); s != "" {
					fix = fmt.Sprintf("did you mean %q? (known keys: %s)", s, strings.Join(names, ", "))
				}
				p.problems = append(p.problems, Problem{File: p.file, Line: k.Line, Key: key,
					Reason: "unknown key", Fix: fix})
				continue
			}
			field = v.FieldByIndex(f.Index)
		}
		if l, dup := set[k.Value]; dup {
			if !merged {
				p.problems = append(p.problems, Problem{File: p.file, Line: k.Line, Key: key,
					Reason: fmt.Sprintf("duplicate key (first defined at line %d)", l),
					Fix:    "remove one of the two"})
			}
			continue
		}
		set[k.Value] = k.Line
		if _, ok := p.lines[key]; !ok {
			p.lines[key] = k.Line
		}
		if v.Kind() == reflect.Map {
			elem := reflect.New(v.Type().Elem()).Elem()
			p.walk(val, elem, key, seen)
			v.SetMapIndex(reflect.ValueOf(k.Value), elem)
			continue
		}
		p.walk(val, field, key, seen)
	}
	for _, m := range merges {
		p.walkMerge(m, v, path, seen, set)
	}
}

func (p *parser) walkMerge(m *yaml.Node, v reflect.Value, path string, seen map[*yaml.Node]bool, set map[string]int) {
	if m.Kind == yaml.AliasNode {
		if seen[m] || m.Alias == nil {
			return // a mapping merged into itself
		}
		if seen == nil {
			seen = map[*yaml.Node]bool{}
		}
		seen[m] = true
		p.walkMerge(m.Alias, v, path, seen, set)
		delete(seen, m)
		return
	}
	switch m.Kind {
	case yaml.MappingNode:
		p.walkMapping(m, v, path, seen, set, true)
	case yaml.SequenceNode:
		for _, e := range m.Content {
			p.walkMerge(e, v, path, seen, set)
		}
	}
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tagName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func fieldNames(t reflect.Type) []string {
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		names = append(names, tagName(t.Field(i)))
	}
	sort.Strings(names)
	return names
}

func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

// closest returns the candidate within edit distance 2 of s (the nearest),
// or "".
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
