// Extended attributes and ACLs of snapshot and staged entries.

package dir

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ferry-nas/ferry/storage"
)

// setXattrs gives p exactly the carried attributes xs. An attribute only
// root may set, on a ferry that is not root, and a filesystem without
// xattrs are Unsupported, naming the entry, the attribute and the fix.
func (b *Backend) setXattrs(op, ds, name, rel, p string, xs []storage.Xattr) error {
	err := storage.SetXattrs(p, xs)
	if err == nil {
		return nil
	}
	attr := storage.XattrName(err)
	// The cause without its path: p may be a staging file's name (tmp/t12),
	// the entry is named by rel.
	var cause error = err
	var errno unix.Errno
	if errors.As(err, &errno) {
		cause = errno
	}
	switch {
	case attr == "":
		return err
	case storage.PrivilegedXattr(attr) && !b.isRoot && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)):
		return storage.Errorf(storage.KindUnsupported, op, ds, name,
			"run this host's ferry worker as root to keep security.* and trusted.* attributes, or remove the attribute on the source",
			"%q has the extended attribute %s, which only root can set: %w", rel, attr, cause)
	case errors.Is(err, unix.ENOTSUP):
		return storage.Errorf(storage.KindUnsupported, op, ds, name,
			"put the root on a filesystem with extended attributes (ext4, xfs, btrfs, tmpfs)",
			"%q has the extended attribute %s, which the filesystem under %s cannot store: %w", rel, attr, b.root, cause)
	}
	return fmt.Errorf("%q: %w", rel, err)
}
