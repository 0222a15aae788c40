package logcheck

import (
	"strings"
	"testing"
)

func TestLine(t *testing.T) {
	for line, want := range map[string]string{
		`{"a":1,"b":{"c":[1,{"d":2}]}}`: "",
		`{"host":"a","host":"a"}`:       `key "host" appears more than once`,
		`{"a":{"x":1,"x":2}}`:           `key "x" appears more than once in a`,
		`{"a":[{"y":1,"y":1}]}`:         `key "y" appears more than once in a[0]`,
		`{"a":{"x":1},"b":{"x":1}}`:     "",
		`ferry: worker stopped`:         "not JSON",
		`[1,2]`:                         "not a JSON object",
		`{"a":1}{"b":2}`:                "more than one JSON value",
		`{"a":1`:                        "not JSON",
	} {
		err := Line([]byte(line))
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", line, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: error %v, want one containing %q", line, err, want)
		}
	}
}

func TestLinesNamesTheLine(t *testing.T) {
	err := Lines([]byte("{\"a\":1}\n\n{\"a\":1,\"a\":2}\n"))
	if err == nil || !strings.Contains(err.Error(), "line 3:") {
		t.Fatalf("got %v, want an error naming line 3", err)
	}
	if err := Lines([]byte("{\"a\":1}\n{\"b\":2}\n")); err != nil {
		t.Fatal(err)
	}
}
