// A receive's staging files, its durable checkpoints and its commit into
// a complete snapshot.

package dir

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/resume"
	"github.com/ferry-nas/ferry/storage"
	"github.com/ferry-nas/ferry/storage/metafile"
)

// Files in a receive's staging directory <root>/.ferry/staging/<dataset>/<name>/.
const (
	stTree       = "tree"            // the snapshot being built
	stTmp        = "tmp"             // files being written before their rename into tree
	stStream     = "stream.json"     // the stream's header, written before any entry
	stCheckpoint = "checkpoint.json" // the last durable position
	stManifest   = "manifest"        // written at the end
	// stDirModes lists, when ferry is not root, the true mode of every
	// directory the stream carried ("quoted-path octal-mode" lines in
	// stream order): staged directories keep owner rwx until the end.
	stDirModes = "dirmodes"
)

// streamInfo is the stream's header as stored in the staging directory.
type streamInfo struct {
	Version        string `json:"version"`
	Dataset        string `json:"dataset"` // the dataset on the sending host
	Snapshot       string `json:"snapshot"`
	GUID           string `json:"guid"`
	ManifestDigest string `json:"manifest_digest"`
	ParentSnapshot string `json:"parent_snapshot,omitempty"`
	ParentGUID     string `json:"parent_guid,omitempty"`
	ParentDigest   string `json:"parent_digest,omitempty"`
	TargetParent   string `json:"target_parent,omitempty"` // req.Parent
	// TargetParentGUID is the target base's own GUID when the receive began.
	TargetParentGUID string    `json:"target_parent_guid,omitempty"`
	StartedAt        time.Time `json:"started_at"`
}

// origin is what the staged receive is of, for storage.CheckResume.
func (i *streamInfo) origin() storage.ReceiveOrigin {
	return storage.ReceiveOrigin{Name: i.Snapshot, SourceGUID: i.GUID, Parent: i.TargetParent, ParentGUID: i.TargetParentGUID}
}

// checkpoint is how far a receive got with everything before it durable.
type checkpoint struct {
	// Position is the stream position right after the last applied entry's
	// content; Pad bytes of tar padding follow it before the next header,
	// which a resumed receive skips.
	Position resume.Position `json:"position"`
	Pad      int64           `json:"pad"`
	// DirModesLen is the length of stDirModes at this checkpoint.
	DirModesLen int64 `json:"dir_modes_len,omitempty"`
	Entries     int64 `json:"entries"`
	// LastPath (strconv-quoted) is the last applied entry, for the order check.
	LastPath string    `json:"last_path"`
	At       time.Time `json:"at"`
}

// checkpoint makes everything applied so far durable, records pos, and
// tells the caller.
func (rx *receiver) checkpoint(pos resume.Position, pad int64) error {
	if len(rx.dirty) > 4096 {
		if err := syncFS(rx.dir); err != nil {
			return err
		}
	} else if err := syncPaths(rx.dirty); err != nil {
		return err
	}
	rx.dirty = rx.dirty[:0]
	ck := &checkpoint{Position: pos, Pad: pad, Entries: rx.entries, LastPath: strconv.Quote(rx.last), At: time.Now().UTC()}
	if rx.dirModes != nil {
		off, err := rx.dirModes.Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		ck.DirModesLen = off
	}
	if err := metafile.WriteJSON(filepath.Join(rx.dir, stCheckpoint), ck); err != nil {
		return err
	}
	rx.ck, rx.ckOffset, rx.ckTime = ck, pos.Offset, time.Now()
	if rx.req.Durable != nil {
		rx.req.Durable(pos)
	}
	return nil
}

// finish checks the staged tree against the stream's manifest digest, makes
// it read-only and moves it into place as a complete snapshot.
func (rx *receiver) finish() (storage.Snapshot, error) {
	b, ds, name := rx.b, rx.req.Dataset, rx.req.Name
	if err := syncFS(rx.dir); err != nil {
		return storage.Snapshot{}, err
	}
	mw, err := createManifest(filepath.Join(rx.dir, stManifest))
	if err != nil {
		return storage.Snapshot{}, err
	}
	var inodes []inodeRec
	w := &treeWalker{root: rx.tree, out: mw, buf: rx.buf, h: rx.h, strip: true, trueDirModes: !b.isRoot, written: &writtenList{files: rx.written}, inodes: &inodes}
	if !b.isRoot {
		if w.dirModes, err = openDirModes(filepath.Join(rx.dir, stDirModes)); err != nil {
			mw.abort()
			return storage.Snapshot{}, err
		}
		defer w.dirModes.close()
	}
	if rx.parent != nil {
		if w.parent, err = openManifest(b.manifestPath(ds, rx.req.Parent)); err != nil {
			mw.abort()
			return storage.Snapshot{}, err
		}
		defer w.parent.close()
		w.parentTree = b.snapTree(ds, rx.req.Parent)
		// A damaged list was refused as the receive began; none: fstatat.
		if w.parentInodes, err = b.openInodes(ds, rx.req.Parent); err != nil {
			mw.abort()
			return storage.Snapshot{}, err
		}
		defer w.parentInodes.close()
	}
	if err := w.walk(); err != nil {
		mw.abort()
		return storage.Snapshot{}, err
	}
	digest, err := mw.close()
	if err != nil {
		return storage.Snapshot{}, err
	}
	if digest != rx.info.ManifestDigest {
		return storage.Snapshot{}, invalid("the received tree's manifest digest %s differs from the stream's %s", digest, rx.info.ManifestDigest)
	}
	if err := syncFS(rx.dir); err != nil {
		return storage.Snapshot{}, err
	}
	if err := removeTree(b.snapTree(ds, name)); err != nil {
		return storage.Snapshot{}, err
	}
	if err := b.lay.MkdirAll(b.snapDir(ds)); err != nil {
		return storage.Snapshot{}, err
	}
	if err := os.Rename(filepath.Join(rx.dir, stManifest), b.manifestPath(ds, name)); err != nil {
		return storage.Snapshot{}, err
	}
	if err := os.Rename(rx.tree, b.snapTree(ds, name)); err != nil {
		return storage.Snapshot{}, err
	}
	if err := os.Chmod(b.snapTree(ds, name), storage.FileMode(w.rootMode&^0o222)); err != nil {
		return storage.Snapshot{}, err
	}
	// The walk recorded every entry's inode as it left it; only the root
	// changed since (its rename and mode).
	var root unix.Stat_t
	if err := unix.Lstat(b.snapTree(ds, name), &root); err != nil {
		return storage.Snapshot{}, &fs.PathError{Op: "lstat", Path: b.snapTree(ds, name), Err: err}
	}
	if len(inodes) == 0 || inodes[0].path != "." || inodes[0].ino != root.Ino {
		return storage.Snapshot{}, fmt.Errorf("the received tree's root %s was replaced while it was committed", b.snapTree(ds, name))
	}
	inodes[0].ctime = root.Ctim.Nano()
	if err := b.writeInodeRecs(ds, name, inodes); err != nil {
		return storage.Snapshot{}, err
	}
	rec, err := b.nextSeq(ds)
	if err != nil {
		return storage.Snapshot{}, err
	}
	m := &meta{
		Version: 1, Dataset: ds, Name: name, GUID: uuid.NewString(), ReceivedGUID: rx.info.GUID,
		ParentGUID: rx.info.ParentGUID, CreatedAt: time.Now().UTC(), Digest: digest, Entries: mw.n,
		Seq: rec.Seq, DatasetGUID: rx.req.SourceDatasetGUID,
	}
	if err := b.commitMeta(m); err != nil {
		return storage.Snapshot{}, err
	}
	removeTree(rx.dir)
	os.Remove(b.stagingDir(ds))
	return m.snapshot(), nil
}
