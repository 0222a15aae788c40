package zfs

// Encrypted datasets (OpenZFS native encryption): ferry sends them raw
// (`zfs send -w`), so that the stream and the replica hold only ciphertext
// and the target never needs the key. Sending one decrypted (what a plain
// `zfs send` of a dataset whose key is loaded does, and syncoid's default)
// only happens when the job says so (stream.zfs_send_decrypted).

import (
	"context"
	"errors"
	"strings"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/storage"
)

// encryption is the dataset's encryption property ("off" when the pool
// cannot encrypt: zfs-fuse and pools without feature@encryption have no
// such property, and are asked nothing).
func (b *Backend) encryption(ctx context.Context, op, ds, snap string) (string, error) {
	if !b.feat.Encryption {
		return "off", nil
	}
	out, err := run(ctx, b.zfs, nil, "get", "-H", "-o", "value", "encryption", b.full(ds))
	if err != nil {
		var ce *cmdError
		if errors.As(err, &ce) && ce.says("invalid property", "bad property list") {
			return "off", nil // a tool that does not know the property
		}
		return "", classify(err, storage.KindTemporary, op, ds, snap, "")
	}
	v := strings.TrimSpace(out)
	if v == "" || v == "-" {
		v = "off"
	}
	return v, nil
}

// rawFlags are the send flags the dataset's encryption asks for: none for
// an unencrypted one, -w (raw) for an encrypted one; an encrypted one is
// refused (Unsupported) where raw send is missing, unless the request
// allows sending it decrypted.
func (b *Backend) rawFlags(ctx context.Context, op string, req storage.SendRequest) ([]string, error) {
	enc, err := b.encryption(ctx, op, req.Dataset, req.To)
	if err != nil || enc == "off" {
		return nil, err
	}
	fds := b.full(req.Dataset)
	switch {
	case req.Decrypted:
		storage.Logger(ctx, b.log).Warn("zfs: sending an encrypted dataset decrypted, as the job's stream.zfs_send_decrypted asks: the stream and the replica hold plaintext",
			zap.String("dataset", req.Dataset), zap.String("snapshot", req.To), zap.String("encryption", enc))
		return nil, nil
	case !b.feat.RawSend:
		return nil, storage.Errorf(storage.KindUnsupported, op, req.Dataset, req.To,
			"upgrade the source's OpenZFS to one whose `zfs send` has -w (raw send, 0.8 or later), or set the job's stream.zfs_send_decrypted: true to send it decrypted (the target then stores plaintext)",
			"%s is encrypted (%s) and this host cannot send it raw; ferry does not send an encrypted dataset decrypted unless the job says so", fds, enc)
	}
	return []string{"-w"}, nil
}
