package btrfs

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"testing"
)

// BenchmarkHotStreamChecker parses and checks a version 1 stream of 48 KiB
// WRITE commands (what btrfs send emits for file data) as every receive
// does before btrfs receive sees it: framing, CRC32C, attributes, path
// rules. Bytes are the stream's.
func BenchmarkHotStreamChecker(b *testing.B) {
	data := make([]byte, sendReadSize)
	rand.Read(data)
	sb := subvolStream("snap")
	const files, writes = 4, 64 // 12 MiB of data
	for f := range files {
		name := fmt.Sprintf("dir/file-%d", f)
		sb = sb.mkfile(name, uint64(257+f))
		for w := range writes {
			sb = sb.cmd(cmdWrite, tStr(attrPath, name), tU64(18, uint64(w*sendReadSize)), tlv{attrData, data})
		}
	}
	stream := sb.end().bytes()
	rules := streamRules{name: "snap"}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		sr := newStreamReader(bytes.NewReader(stream))
		if _, err := sr.header(); err != nil {
			b.Fatal(err)
		}
		st := streamState{Version: sr.version}
		for {
			c, err := sr.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if err := st.check(c, &rules); err != nil {
				b.Fatal(err)
			}
		}
		if !st.Ended {
			b.Fatal("no end command")
		}
	}
}
