// A replica file changed in place damages every snapshot that holds it:
// incremental receives hard-link unchanged files to their base's, so one
// inode is the same file in many snapshots.

package dir

import (
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/storage"
)

// sharers lists the other committed snapshots of ds whose rel is the same
// inode as rel of snapshot name (oldest first); nil when it has one link.
func (b *Backend) sharers(ds, name, rel string) []string {
	at := func(n string) string { return filepath.Join(b.snapTree(ds, n), filepath.FromSlash(rel)) }
	var st unix.Stat_t
	if unix.Lstat(at(name), &st) != nil || st.Nlink < 2 {
		return nil
	}
	metas, err := b.listMetas(ds)
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range metas {
		var o unix.Stat_t
		if m.Name != name && unix.Lstat(at(m.Name), &o) == nil && o.Dev == st.Dev && o.Ino == st.Ino {
			out = append(out, m.Name)
		}
	}
	return out
}

// damagedErr is the Conflict of an operation on snapshot name, modified
// as what says. When the change is to the content of the file damaged and
// other snapshots hold that same file, it names them as damaged too and
// its fix removes them all in one command: removing only name would let
// the next run build on the next damaged one.
func (b *Backend) damagedErr(op, ds, name, what, damaged string) error {
	var others []string
	if damaged != "" {
		others = b.sharers(ds, name, damaged)
	}
	if len(others) == 0 {
		return b.modifiedErr(op, ds, name, what)
	}
	all := append([]string{name}, others...)
	cmds := make([]string, len(all))
	for i, n := range all {
		cmds[i] = b.modified(ds, n, what, storage.OriginReceived).Remove
	}
	fix := fmt.Sprintf("remove all %d of them, then run the job again (ferry plans from the newest intact snapshot, or sends in full when none is left); as root: %s — "+
		"every one of these files is part of those snapshots, removing only some leaves them broken. They are replicas (received from the source): "+
		"removing them deletes only these damaged copies; the source's snapshots, if it still has them, and every other replica stay. "+
		"Copy out anything you need from them first: ferry will not use them, send on top of them or remove them itself",
		len(all), strings.Join(cmds, " && "))
	return storage.Errorf(storage.KindConflict, op, ds, name, fix,
		"modified %s: %s; %q is one file (hard-linked) with %q of %s, damaged the same way",
		b.rel(b.snapTree(ds, name)), what, damaged, damaged, strings.Join(others, ", "))
}
