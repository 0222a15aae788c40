package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Xattr is one extended attribute of a file, directory or symlink.
type Xattr struct {
	Name  string
	Value []byte
}

// The POSIX ACLs, stored as extended attributes.
const (
	ACLAccess  = "system.posix_acl_access"
	ACLDefault = "system.posix_acl_default"
)

// CarriedXattr reports whether ferry keeps the extended attribute name:
// user.*, trusted.* and security.* (Samba's DOS attributes and NT ACLs live
// there) and the POSIX ACLs. security.selinux is not kept: the receiving
// host's policy labels its files itself. Other system.* names are
// filesystem-specific and not kept either.
func CarriedXattr(name string) bool {
	switch {
	case name == ACLAccess, name == ACLDefault:
		return true
	case name == "security.selinux":
		return false
	}
	return strings.HasPrefix(name, "user.") || strings.HasPrefix(name, "trusted.") || strings.HasPrefix(name, "security.")
}

// PrivilegedXattr reports whether only root (CAP_SYS_ADMIN, CAP_SETFCAP and
// the like) may set name: trusted.* and security.*.
func PrivilegedXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.") || strings.HasPrefix(name, "security.")
}

// ReadXattrs returns the carried extended attributes of p (a final symlink
// is not followed), sorted by name. A filesystem without xattr support has
// none. Attributes the caller may not read (trusted.* when not root) are
// not listed by the kernel and so not returned.
func ReadXattrs(p string) ([]Xattr, error) {
	names, err := listXattrs(p)
	if err != nil {
		return nil, err
	}
	var out []Xattr
	for _, n := range names {
		if !CarriedXattr(n) {
			continue
		}
		v, err := getXattr(p, n)
		if errors.Is(err, unix.ENODATA) {
			continue // removed while we looked
		}
		if err != nil {
			return nil, &xattrError{op: "read", path: p, name: n, err: err}
		}
		out = append(out, Xattr{Name: n, Value: v})
	}
	return out, nil
}

type xattrError struct {
	op, path, name string
	err            error
}

func (e *xattrError) Error() string {
	return "cannot " + e.op + " extended attribute " + e.name + " of " + e.path + ": " + e.err.Error()
}
func (e *xattrError) Unwrap() error { return e.err }

func listXattrs(p string) ([]string, error) {
	for size := 1024; ; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Llistxattr(p, buf)
		switch {
		case errors.Is(err, unix.ERANGE) && size < 1<<24:
			continue
		case errors.Is(err, unix.ENOTSUP):
			return nil, nil
		case err != nil:
			return nil, &xattrError{op: "list", path: p, name: "names", err: err}
		}
		var names []string
		for _, n := range bytes.Split(buf[:n], []byte{0}) {
			if len(n) > 0 {
				names = append(names, string(n))
			}
		}
		slices.Sort(names)
		return names, nil
	}
}

func getXattr(p, name string) ([]byte, error) {
	for size := 256; ; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) && size < 1<<24 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// SetXattrs makes the carried extended attributes of p exactly want: it
// removes the others (a directory inherits its parent's default ACL) and
// sets want in order. It does not follow a final symlink.
func SetXattrs(p string, want []Xattr) error {
	have, err := listXattrs(p)
	if err != nil {
		return err
	}
	for _, n := range have {
		if !CarriedXattr(n) || slices.ContainsFunc(want, func(x Xattr) bool { return x.Name == n }) {
			continue
		}
		if err := unix.Lremovexattr(p, n); err != nil && !errors.Is(err, unix.ENODATA) {
			return &xattrError{op: "remove", path: p, name: n, err: err}
		}
	}
	for _, x := range want {
		if err := unix.Lsetxattr(p, x.Name, x.Value, 0); err != nil {
			return &xattrError{op: "set", path: p, name: x.Name, err: err}
		}
	}
	return nil
}

// XattrName is the attribute an error from ReadXattrs or SetXattrs is
// about, "" for other errors.
func XattrName(err error) string {
	var xe *xattrError
	if errors.As(err, &xe) {
		return xe.name
	}
	return ""
}

// CanonicalXattr is the value of an extended attribute as digests cover
// it. For system.posix_acl_access that is the ACL without the entries the
// file's mode already holds (owner, mask or group, other), so that a chmod,
// which rewrites exactly those, does not change it (dir snapshots strip
// write bits); nil when nothing is left. Other values are returned as they are.
func CanonicalXattr(name string, v []byte) []byte {
	if name != ACLAccess || len(v) < 4 || (len(v)-4)%8 != 0 {
		return v
	}
	const (
		tagUserObj  = 0x01
		tagGroupObj = 0x04
		tagMask     = 0x10
		tagOther    = 0x20
	)
	hasMask := false
	for i := 4; i < len(v); i += 8 {
		if binary.LittleEndian.Uint16(v[i:]) == tagMask {
			hasMask = true
		}
	}
	out := slices.Clone(v[:4])
	for i := 4; i < len(v); i += 8 {
		switch binary.LittleEndian.Uint16(v[i:]) {
		case tagUserObj, tagMask, tagOther:
			continue
		case tagGroupObj:
			if !hasMask { // then the group bits of the mode are its permissions
				continue
			}
		}
		out = append(out, v[i:i+8]...)
	}
	if len(out) == 4 {
		return nil
	}
	return out
}

// XattrsDigest is the hex SHA-256 of the attributes' names and canonical
// values in name order, "" when there are none (or none with a canonical
// value).
func XattrsDigest(xs []Xattr) string {
	h := sha256.New()
	n := 0
	for _, x := range xs {
		v := CanonicalXattr(x.Name, x.Value)
		if v == nil && x.Name == ACLAccess {
			continue
		}
		n++
		var l [8]byte
		binary.BigEndian.PutUint64(l[:], uint64(len(x.Name)))
		h.Write(l[:])
		h.Write([]byte(x.Name))
		binary.BigEndian.PutUint64(l[:], uint64(len(v)))
		h.Write(l[:])
		h.Write(v)
	}
	if n == 0 {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}
