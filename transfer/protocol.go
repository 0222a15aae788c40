// Package transfer is ferry's data plane: the source host's data server
// streams a send stream to the target host's client over TCP with TLS 1.3 and
// mutual certificates, in CRC-checked frames (optionally zstd-compressed),
// resumable at any byte offset whose prefix digest the source can reproduce.
// docs/data-plane.md describes the protocol, the session tokens and what to
// do about each refusal.
package transfer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-nas/ferry/resume"
)

// ProtocolVersion is the version this package speaks; a server refuses any
// other with CodeBadVersion. Version 2: error frames carry the class of the
// source's failure (code | message) instead of a bare message. Version 3: the
// request names the stream digest algorithm (flags bits 8-15), BLAKE3 for new
// streams.
const ProtocolVersion = 3

// DefaultIdleTimeout is how long either side waits for the other to read or
// write anything before it drops the connection.
const DefaultIdleTimeout = 30 * time.Second

// DefaultTTL is the life of a session when SessionSpec.TTL is zero.
const DefaultTTL = time.Hour

// alpn is the TLS application protocol both sides insist on, so that a ferry
// client never talks to some other TLS service by mistake and vice versa.
const alpn = "ferry-data/1"

var requestMagic = [4]byte{'F', 'R', 'R', 'Y'}

// Request layout (big-endian), sent by the client right after the handshake:
//
//	magic   4 bytes  "FRRY"
//	version 2 bytes
//	flags   2 bytes  bit 0: the client accepts zstd frames;
//	                 bits 8-15: stream digest algorithm (digestIDs)
//	token   32 bytes
//	offset  8 bytes  resume offset O
//	digest  32 bytes digest of stream bytes [0, O) in that algorithm
const requestSize = 4 + 2 + 2 + 32 + 8 + 32

const flagCompress = 1 << 0

// digestIDs number the stream digest algorithms in the request flags; the
// trailer's digest is of the algorithm the request named.
var digestIDs = [...]string{0: resume.SHA256, 1: resume.BLAKE3}

// digestID is the request flag bits of algorithm alg.
func digestID(alg string) (uint16, error) {
	for id, name := range digestIDs {
		if name == alg {
			return uint16(id) << 8, nil
		}
	}
	return 0, fmt.Errorf("stream digest %q has no data-plane id", alg)
}

// digestOf is the algorithm the request flags name, or an error naming the id.
func digestOf(flags uint16) (string, error) {
	id := int(flags >> 8)
	if id >= len(digestIDs) {
		return "", fmt.Errorf("the client hashes the stream with digest algorithm #%d, which this source does not know (it knows #0 %s, #1 %s): run the same ferry version on both hosts", id, resume.SHA256, resume.BLAKE3)
	}
	return digestIDs[id], nil
}

type request struct {
	version uint16
	flags   uint16
	token   [32]byte
	offset  int64
	digest  [resume.DigestSize]byte
}

func (r *request) marshal() []byte {
	b := make([]byte, requestSize)
	copy(b[0:4], requestMagic[:])
	binary.BigEndian.PutUint16(b[4:6], r.version)
	binary.BigEndian.PutUint16(b[6:8], r.flags)
	copy(b[8:40], r.token[:])
	binary.BigEndian.PutUint64(b[40:48], uint64(r.offset))
	copy(b[48:80], r.digest[:])
	return b
}

// unmarshalRequest decodes b; ok is false when the magic is wrong (not a
// ferry client at all).
func unmarshalRequest(b []byte) (r request, ok bool) {
	if len(b) != requestSize || [4]byte(b[0:4]) != requestMagic {
		return r, false
	}
	r.version = binary.BigEndian.Uint16(b[4:6])
	r.flags = binary.BigEndian.Uint16(b[6:8])
	copy(r.token[:], b[8:40])
	r.offset = int64(binary.BigEndian.Uint64(b[40:48]))
	copy(r.digest[:], b[48:80])
	return r, true
}

// Code says why a server refused a connection.
type Code uint16

const (
	CodeUnknownToken         Code = 1  // no such session (never registered, or forgotten long ago)
	CodeExpired              Code = 2  // the session's TTL has passed, or the source revoked it
	CodeReplayed             Code = 3  // the session's transfer was already completed and acknowledged
	CodeInUse                Code = 4  // another connection is streaming this session right now
	CodeWrongPeer            Code = 5  // the client certificate is not the host the session is for
	CodeResumeMismatch       Code = 6  // the regenerated stream's prefix differs from the client's
	CodeBadVersion           Code = 7  // protocol version or magic not understood
	CodeInternal             Code = 8  // the server failed (shutting down, ...)
	CodeNoCertificate        Code = 9  // the client presented no certificate
	CodeUntrustedCertificate Code = 10 // the client certificate is not from the ferry CA, or expired

	// Codes of error frames: the class of the source's own failure.
	CodeSourceFailed Code = 11 // the source could not produce the stream; a later attempt may succeed
	CodeNotFound     Code = 12 // what the session streams is gone on the source: no attempt of this session can succeed
)

var codeNames = map[Code]string{
	CodeUnknownToken:         "unknown token",
	CodeExpired:              "expired",
	CodeReplayed:             "replayed",
	CodeInUse:                "in use",
	CodeWrongPeer:            "wrong peer",
	CodeResumeMismatch:       "resume mismatch",
	CodeBadVersion:           "bad version",
	CodeInternal:             "internal",
	CodeNoCertificate:        "no client certificate",
	CodeUntrustedCertificate: "untrusted certificate",
	CodeSourceFailed:         "source failed",
	CodeNotFound:             "not found on the source",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code %d", uint16(c))
}

// Sentinel errors, one per Code: errors.Is(err, ErrResumeMismatch) is true
// for a *RefusedError with CodeResumeMismatch.
var (
	ErrUnknownToken         = &RefusedError{Code: CodeUnknownToken}
	ErrExpired              = &RefusedError{Code: CodeExpired}
	ErrReplayed             = &RefusedError{Code: CodeReplayed}
	ErrInUse                = &RefusedError{Code: CodeInUse}
	ErrWrongPeer            = &RefusedError{Code: CodeWrongPeer}
	ErrResumeMismatch       = &RefusedError{Code: CodeResumeMismatch}
	ErrBadVersion           = &RefusedError{Code: CodeBadVersion}
	ErrInternal             = &RefusedError{Code: CodeInternal}
	ErrNoCertificate        = &RefusedError{Code: CodeNoCertificate}
	ErrUntrustedCertificate = &RefusedError{Code: CodeUntrustedCertificate}
)

// RefusedError is a refusal sent by the server before any data.
type RefusedError struct {
	Code    Code
	Message string
}

func (e *RefusedError) Error() string {
	if e.Message == "" {
		return "refused: " + e.Code.String()
	}
	return "refused: " + e.Code.String() + ": " + e.Message
}

// Is matches any *RefusedError with the same Code.
func (e *RefusedError) Is(target error) bool {
	t, ok := target.(*RefusedError)
	return ok && t.Code == e.Code
}

// SourceError is the source's own failure (its stream could not be opened or
// read), reported by the server in an error frame with its class. The client
// does not retry it by itself: the caller decides from Code — CodeNotFound
// ends the transfer for good, CodeSourceFailed is worth another attempt
// (the activity fails and Temporal retries, resuming from the stream's
// Position).
type SourceError struct {
	Code    Code
	Message string
}

func (e *SourceError) Error() string { return "source failed: " + e.Message }

// Is matches a *SourceError with the same Code: errors.Is(err, ErrSourceNotFound).
func (e *SourceError) Is(target error) bool {
	t, ok := target.(*SourceError)
	return ok && t.Code == e.Code
}

// ErrSourceNotFound is a source failure because what the session streams
// (the snapshot, or its incremental base) no longer exists on the source.
var ErrSourceNotFound = &SourceError{Code: CodeNotFound}

// WithCode marks err, returned by a session's Open or read from its stream,
// as a source failure of class code, which the server sends in the error
// frame; an unmarked failure is sent as CodeSourceFailed.
func WithCode(code Code, err error) error {
	if err == nil {
		return nil
	}
	return &codedError{code: code, err: err}
}

type codedError struct {
	code Code
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// sourceCode is the class the server reports for a source failure.
func sourceCode(err error) Code {
	var c *codedError
	if errors.As(err, &c) {
		return c.code
	}
	return CodeSourceFailed
}

var (
	// ErrIdleTimeout: nothing arrived (not even a keepalive) within the idle
	// timeout, on the last of the allowed attempts.
	ErrIdleTimeout = errors.New("idle timeout")
	// ErrDigestMismatch: the trailer's length or digest differs from what
	// was delivered. The received data must be discarded.
	ErrDigestMismatch = errors.New("stream digest mismatch")
	// ErrServerClosed is returned by Serve after Close or Shutdown.
	ErrServerClosed = errors.New("transfer: server closed")
)

// refusalPayload is the payload of refusal and error frames: code | message.
func refusalPayload(code Code, msg string) []byte {
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	b := make([]byte, 2, 2+len(msg))
	binary.BigEndian.PutUint16(b, uint16(code))
	return append(b, msg...)
}

// parseSourceError decodes an error frame's payload (at least 2 bytes).
func parseSourceError(p []byte) *SourceError {
	return &SourceError{Code: Code(binary.BigEndian.Uint16(p[0:2])), Message: string(p[2:])}
}

func trailerPayload(total int64, sum [resume.DigestSize]byte) []byte {
	b := make([]byte, trailerSize)
	binary.BigEndian.PutUint64(b[0:8], uint64(total))
	copy(b[8:], sum[:])
	return b
}

func parseTrailer(p []byte) (total int64, sum [resume.DigestSize]byte) {
	total = int64(binary.BigEndian.Uint64(p[0:8]))
	copy(sum[:], p[8:40])
	return total, sum
}
