// Package sampleshare writes realistic NAS shares, and the changes between
// two replications, for the demo and the tests.
package sampleshare

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// Write fills dir with about size bytes of files that look like a NAS
// share: large incompressible media, compressible documents, a deep tree of
// small files, an empty file and a symlink. The same seed writes the same
// share.
func Write(dir string, size int64, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	media := size * 6 / 10
	docs := size * 3 / 10
	small := size - media - docs

	// File sizes scale with the share so that every kind of file has many
	// instances whatever the size (Change relies on a few of each).
	mediaFile, docFile := max(media/24, 64<<10), max(docs/16, 4<<10)
	for i := 0; media > 0; i++ {
		n := min(media, mediaFile/2+rng.Int64N(mediaFile))
		if err := writeRandom(filepath.Join(dir, "photos", fmt.Sprintf("2026-%02d", i%12+1), fmt.Sprintf("IMG_%04d.jpg", i)), n, rng); err != nil {
			return err
		}
		media -= n
	}
	for i := 0; docs > 0; i++ {
		n := min(docs, docFile/2+rng.Int64N(docFile/2))
		if err := writeText(filepath.Join(dir, "documents", fmt.Sprintf("report-%03d.txt", i)), n, rng); err != nil {
			return err
		}
		docs -= n
	}
	for i := 0; small > 0; i++ {
		n := min(small, int64(1+rng.IntN(16<<10)))
		p := filepath.Join(dir, "projects", fmt.Sprintf("p%d", i%7), fmt.Sprintf("src%d", i%5), fmt.Sprintf("file-%04d.go", i))
		if err := writeText(p, n, rng); err != nil {
			return err
		}
		small -= n
	}
	if err := os.WriteFile(filepath.Join(dir, "documents", "empty.txt"), nil, 0o644); err != nil {
		return err
	}
	return os.Symlink("documents/report-000.txt", filepath.Join(dir, "latest-report"))
}

// Change makes the changes an incremental replication must carry: a
// new file, a modified one, a deleted file and directory, a renamed file
// and directory, and a retargeted symlink. It returns a line per change.
func Change(dir string, seed uint64) ([]string, error) {
	rng := rand.New(rand.NewPCG(seed, 0xc4a9))
	var done []string
	step := func(what string, err error) error {
		if err == nil {
			done = append(done, what)
		}
		return err
	}
	if err := step("added photos/new/IMG_NEW.jpg (2 MiB)", writeRandom(filepath.Join(dir, "photos", "new", "IMG_NEW.jpg"), 2<<20, rng)); err != nil {
		return done, err
	}
	if err := step("modified documents/report-001.txt", appendText(filepath.Join(dir, "documents", "report-001.txt"), 64<<10, rng)); err != nil {
		return done, err
	}
	if err := step("deleted documents/report-002.txt", os.Remove(filepath.Join(dir, "documents", "report-002.txt"))); err != nil {
		return done, err
	}
	if err := step("deleted projects/p6/", os.RemoveAll(filepath.Join(dir, "projects", "p6"))); err != nil {
		return done, err
	}
	if err := step("renamed documents/report-003.txt -> documents/archive-003.txt",
		os.Rename(filepath.Join(dir, "documents", "report-003.txt"), filepath.Join(dir, "documents", "archive-003.txt"))); err != nil {
		return done, err
	}
	if err := step("renamed projects/p0/ -> projects/p0-old/",
		os.Rename(filepath.Join(dir, "projects", "p0"), filepath.Join(dir, "projects", "p0-old"))); err != nil {
		return done, err
	}
	link := filepath.Join(dir, "latest-report")
	if err := os.Remove(link); err != nil {
		return done, err
	}
	err := step("retargeted latest-report -> documents/report-001.txt", os.Symlink("documents/report-001.txt", link))
	return done, err
}

func create(p string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
}

func writeRandom(p string, n int64, rng *rand.Rand) error {
	f, err := create(p)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var b [8]byte
	for i := int64(0); i < n; i += 8 {
		v := rng.Uint64()
		for j := range b {
			b[j] = byte(v >> (8 * j))
		}
		if _, err := w.Write(b[:min(8, n-i)]); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

var words = []string{"replication", "snapshot", "share", "backup", "pool", "volume", "quarterly", "invoice",
	"the", "of", "and", "to", "NAS", "report", "budget", "photo", "project", "draft", "final", "review"}

func writeText(p string, n int64, rng *rand.Rand) error {
	f, err := create(p)
	if err != nil {
		return err
	}
	if err := text(f, n, rng); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func appendText(p string, n int64, rng *rand.Rand) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if err := text(f, n, rng); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func text(f *os.File, n int64, rng *rand.Rand) error {
	w := bufio.NewWriterSize(f, 256<<10)
	var written int64
	for written < n {
		word := words[rng.IntN(len(words))]
		sep := " "
		if rng.IntN(12) == 0 {
			sep = "\n"
		}
		s := word + sep
		if int64(len(s)) > n-written {
			s = s[:n-written]
		}
		k, err := w.WriteString(s)
		if err != nil {
			return err
		}
		written += int64(k)
	}
	return w.Flush()
}
