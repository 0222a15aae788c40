package transfer

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/ferry-nas/ferry/metrics"
	"github.com/ferry-nas/ferry/resume"
)

// outcome is how a stream ended when it did not end well.
type outcome struct {
	code      Code   // refusal to send
	msg       string // refusal message
	sourceErr string // source failure to send in an error frame
	// sourceCode classes sourceErr (CodeSourceFailed unless the source said).
	sourceCode Code
}

func (s *Server) handle(c *serverConn) {
	defer func() {
		c.abort()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.connWG.Done()
	}()
	c.raw.SetDeadline(time.Now().Add(s.idle))
	if err := c.tc.HandshakeContext(c.ctx); err != nil {
		s.log.Info("data-plane handshake failed", zap.String("remote", c.remote), zap.Error(err))
		return
	}
	var buf [requestSize]byte
	if _, err := io.ReadFull(c.tc, buf[:]); err != nil {
		s.log.Info("data-plane client sent no request", zap.String("remote", c.remote), zap.Error(err))
		return
	}
	c.raw.SetDeadline(time.Time{})
	st := c.tc.ConnectionState()
	req, ok := unmarshalRequest(buf[:])
	if !ok || st.NegotiatedProtocol != alpn {
		c.refuse(nil, "", CodeBadVersion, "not a ferry data-plane request")
		return
	}
	presented, code, msg := s.verifyClient(st)
	if code != 0 {
		c.refuse(nil, presented, code, msg)
		return
	}
	if req.version != ProtocolVersion {
		c.refuse(nil, presented, CodeBadVersion, fmt.Sprintf("this source speaks data-plane protocol %d, the client %d: run the same ferry version on both hosts", ProtocolVersion, req.version))
		return
	}
	if _, err := digestOf(req.flags); err != nil {
		c.refuse(nil, presented, CodeBadVersion, err.Error())
		return
	}
	if req.offset < 0 {
		c.refuse(nil, presented, CodeResumeMismatch, fmt.Sprintf("resume offset %d is negative", req.offset))
		return
	}
	sess, code, msg := s.acquire(req.token, presented, c)
	if code != 0 {
		c.refuse(sess, presented, code, msg)
		return
	}
	out := c.stream(sess, req)
	// Release before answering, so that a client that restarts at once
	// (after a resume mismatch, say) does not find the session in use.
	s.release(sess, c)
	switch {
	case out.code != 0:
		c.refuse(sess, presented, out.code, out.msg)
	case out.sourceErr != "":
		s.log.Warn("source stream failed", zap.String("job", sess.spec.Job), zap.String("peer", sess.spec.Peer),
			zap.String("session", sess.id), zap.String("remote", c.remote), zap.String("error", out.sourceErr))
		c.writeControl(frameError, refusalPayload(out.sourceCode, out.sourceErr))
	}
}

// verifyClient checks the client certificate against the CA, as
// tls.RequireAndVerifyClientCert would, and returns its name.
func (s *Server) verifyClient(st tls.ConnectionState) (name string, code Code, msg string) {
	if len(st.PeerCertificates) == 0 {
		return "", CodeNoCertificate, "the client presented no certificate: give its worker the host certificate made by `ferry certs issue HOST`"
	}
	leaf := st.PeerCertificates[0]
	name = leaf.Subject.CommonName
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         s.tls.ClientCAs,
		Intermediates: inter,
		CurrentTime:   s.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return name, CodeUntrustedCertificate, fmt.Sprintf("client certificate %q is not accepted by this source's CA (%v): issue it with the same CA (`ferry certs issue %s`)", name, err, name)
	}
	return name, 0, ""
}

// stream serves one accepted connection: regenerate, check the prefix,
// stream the rest in frames, send the trailer and wait for the client's
// acknowledgement, which burns the token.
func (c *serverConn) stream(sess *session, req request) outcome {
	s := c.s
	log := s.log.With(zap.String("job", sess.spec.Job), zap.String("peer", sess.spec.Peer),
		zap.String("session", sess.id), zap.String("remote", c.remote))
	start := time.Now()
	compress := sess.spec.Compress && req.flags&flagCompress != 0
	flow := s.mtr.Flow(metrics.Sent, sess.spec.Job, sess.spec.Peer)
	c.wmu.Lock()
	c.flow = flow // from here on every frame written counts as the session's
	c.wmu.Unlock()
	stopKeepalive := c.startKeepalive()
	defer stopKeepalive()

	src, err := sess.spec.Open(c.ctx)
	if err != nil {
		if c.ctx.Err() != nil {
			return outcome{}
		}
		return outcome{sourceErr: "open the source stream: " + err.Error(), sourceCode: sourceCode(err)}
	}
	defer src.Close()
	framer, err := newDataFramer(compress)
	if err != nil {
		return outcome{code: CodeInternal, msg: err.Error()}
	}
	defer framer.close()
	buf := framer.Payload()
	alg, _ := digestOf(req.flags) // checked before the session was acquired
	h, err := resume.NewHash(alg)
	if err != nil {
		return outcome{code: CodeInternal, msg: err.Error()}
	}

	// Regenerate and hash the prefix the client already has.
	var off int64
	for off < req.offset {
		n, err := io.ReadFull(src, buf[:min(req.offset-off, MaxPayload)])
		h.Write(buf[:n])
		off += int64(n)
		sess.offset.Store(off)
		if c.ctx.Err() != nil {
			log.Info("connection lost while skipping to the resume offset", zap.Int64("offset", off))
			return outcome{}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return outcome{code: CodeResumeMismatch, msg: fmt.Sprintf("the regenerated stream ends at byte %d, before the resume offset %d: discard the partial receive and start over from byte 0", off, req.offset)}
		}
		if err != nil {
			if c.ctx.Err() != nil {
				return outcome{}
			}
			return outcome{sourceErr: fmt.Sprintf("read the source stream at byte %d (skipping to the resume offset): %v", off, err), sourceCode: sourceCode(err)}
		}
	}
	if !bytes.Equal(h.Sum(nil), req.digest[:]) {
		return outcome{code: CodeResumeMismatch, msg: fmt.Sprintf("bytes [0, %d) of the regenerated stream differ from the client's (%s): discard the partial receive and start over from byte 0", req.offset, alg)}
	}
	var ok [9]byte
	binary.BigEndian.PutUint64(ok[0:8], uint64(req.offset))
	if compress {
		ok[8] = 1
	}
	if err := c.writeControl(frameOK, ok[:]); err != nil {
		log.Info("connection lost before streaming", zap.Error(err))
		return outcome{}
	}
	if req.offset > 0 {
		log.Info("resuming", zap.Int64("offset", req.offset), zap.Bool("compress", compress))
	} else {
		log.Info("streaming", zap.Bool("compress", compress))
	}

	// Two framers in turn: frame k+1 is read and sealed while frame k's
	// digest is still being computed by the hash pipe.
	framers := [2]*dataFramer{framer, framer.newTwin()}
	hp := newHashPipe(h)
	defer hp.stop()
	var seq int64
	for {
		framer := framers[seq%2]
		hp.wait(1) // this framer's previous payload is hashed
		buf := framer.Payload()
		n, rerr := io.ReadFull(src, buf[:sess.lim.chunk()])
		if n > 0 {
			hp.write(buf[:n])
			frame := framer.Seal(n)
			if s.corrupt != nil {
				hp.wait(0) // hash what the source read, not the damage
				s.corrupt(sess.spec.Job, seq, frame[headerSize:])
			}
			if err := sess.lim.wait(c.ctx, len(frame)); err != nil {
				log.Info("connection lost", zap.Int64("offset", off), zap.Error(err))
				return outcome{}
			}
			if err := c.write(frame); err != nil {
				log.Info("connection lost", zap.Int64("offset", off), zap.Error(err))
				return outcome{}
			}
			off += int64(n)
			seq++
			sess.offset.Store(off)
			flow.AddStream(int64(n))
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			if c.ctx.Err() != nil {
				log.Info("connection lost", zap.Int64("offset", off), zap.Error(c.ctx.Err()))
				return outcome{}
			}
			return outcome{sourceErr: fmt.Sprintf("read the source stream at byte %d: %v", off, rerr), sourceCode: sourceCode(rerr)}
		}
	}

	var sum [resume.DigestSize]byte
	hp.sum(sum[:0])
	trailer := trailerPayload(off, sum)
	if err := c.writeControl(frameTrailer, trailer); err != nil {
		log.Info("connection lost before the trailer", zap.Int64("offset", off), zap.Error(err))
		return outcome{}
	}
	c.raw.SetReadDeadline(time.Now().Add(s.idle))
	rd := newFrameReader(c.tc, maxControl)
	t, p, err := rd.next()
	if err != nil {
		log.Info("no acknowledgement from the client; the session stays open for a resume", zap.Int64("offset", off), zap.Error(err))
		return outcome{}
	}
	if t != frameAck || !bytes.Equal(p, trailer) {
		log.Warn("bad acknowledgement from the client", zap.Stringer("frame", t))
		return outcome{}
	}
	if !s.complete(sess, c, alg, sum) {
		return outcome{}
	}
	c.writeControl(frameBye, nil)
	c.wmu.Lock()
	wire := c.wire
	c.wmu.Unlock()
	log.Info("transfer complete", zap.Int64("bytes", off), zap.Int64("resumed_from", req.offset),
		zap.Int64("wire_bytes", wire), zap.Duration("duration", time.Since(start)),
		zap.String("digest", alg+":"+hex.EncodeToString(sum[:])))
	return outcome{}
}
