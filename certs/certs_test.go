package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func readLeaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	block, _ := pem.Decode(data)
	require.NotNil(t, block)
	c, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return c
}

func TestInitWritesCAAndRefusesOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	certPath, keyPath, err := Init(dir, false)
	require.NoError(t, err)

	ca := readLeaf(t, certPath)
	assert.True(t, ca.IsCA)
	_, ok := ca.PublicKey.(*ecdsa.PublicKey)
	assert.True(t, ok, "CA key must be ECDSA")
	assert.Equal(t, elliptic.P256(), ca.PublicKey.(*ecdsa.PublicKey).Curve)

	st, err := os.Stat(keyPath)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	before, _ := os.ReadFile(certPath)
	_, _, err = Init(dir, false)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrExists)
	assert.Contains(t, err.Error(), "--force")
	after, _ := os.ReadFile(certPath)
	assert.Equal(t, before, after, "refused init must not touch the CA")

	_, _, err = Init(dir, true)
	require.NoError(t, err)
	after, _ = os.ReadFile(certPath)
	assert.NotEqual(t, before, after, "forced init replaces the CA")
}

func TestIssueHostCertificate(t *testing.T) {
	dir := t.TempDir()
	_, _, err := Init(dir, false)
	require.NoError(t, err)

	certPath, keyPath, err := Issue(dir, "nas-a", IssueOptions{
		IPs:      []net.IP{net.ParseIP("10.0.0.1")},
		DNSNames: []string{"nas-a.lan"},
	})
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "nas-a.pem"), certPath)
	assert.Equal(t, filepath.Join(dir, "nas-a-key.pem"), keyPath)

	leaf := readLeaf(t, certPath)
	assert.Equal(t, "nas-a", leaf.Subject.CommonName)
	assert.Equal(t, []string{"nas-a", "nas-a.lan"}, leaf.DNSNames)
	require.Len(t, leaf.IPAddresses, 1)
	assert.True(t, leaf.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")))
	assert.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage)
	assert.False(t, leaf.IsCA)

	pool, err := LoadCAPool(filepath.Join(dir, CAFile))
	require.NoError(t, err)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "nas-a", KeyUsages: []x509.ExtKeyUsage{usage}})
		assert.NoError(t, err, "usage %v", usage)
	}

	st, err := os.Stat(keyPath)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	_, _, err = Issue(dir, "nas-a", IssueOptions{})
	assert.ErrorIs(t, err, ErrExists)
	_, _, err = Issue(dir, "nas-a", IssueOptions{Force: true})
	assert.NoError(t, err)
}

func TestIssueErrorsNameTheFix(t *testing.T) {
	dir := t.TempDir()
	_, _, err := Issue(dir, "nas-a", IssueOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(dir, CAFile))
	assert.Contains(t, err.Error(), "ferry certs init")

	_, _, err = Init(dir, false)
	require.NoError(t, err)
	for _, bad := range []string{"", "../x", "a/b", "nas a", "ca", ".x"} {
		_, _, err := Issue(dir, bad, IssueOptions{})
		assert.Error(t, err, "host %q", bad)
	}
}

func TestLoadErrorsNameFileAndFix(t *testing.T) {
	dir := t.TempDir()
	_, err := ServerConfig(HostFiles(dir, "nas-b"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(dir, CAFile))
	assert.Contains(t, err.Error(), "ferry certs init")

	_, _, err = Init(dir, false)
	require.NoError(t, err)
	_, err = ClientConfig(HostFiles(dir, "nas-b"), "nas-a")
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(dir, "nas-b.pem"))
	assert.Contains(t, err.Error(), "run `ferry certs issue nas-b --dir "+dir+"`")

	// A certificate from another CA is caught at load time.
	_, _, err = Issue(dir, "nas-b", IssueOptions{})
	require.NoError(t, err)
	other := t.TempDir()
	_, _, err = Init(other, false)
	require.NoError(t, err)
	f := HostFiles(dir, "nas-b")
	f.CA = filepath.Join(other, CAFile)
	_, err = ServerConfig(f)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not signed by the CA")
	assert.Contains(t, err.Error(), "issue it from the CA in "+f.CA+", on the machine that holds its ca-key.pem: "+
		"`ferry certs issue nas-b --force --dir "+other+"`, and copy nas-b.pem and nas-b-key.pem to nas-b",
		"the fix re-issues from the CA the host trusts, not from the certificate's directory")

	// A key that does not match the certificate.
	_, _, err = Issue(dir, "nas-c", IssueOptions{})
	require.NoError(t, err)
	f = HostFiles(dir, "nas-b")
	f.Key = filepath.Join(dir, "nas-c-key.pem")
	_, err = ServerConfig(f)
	require.Error(t, err)
	assert.Contains(t, err.Error(), f.Cert)
	fix := "on the machine that holds ca-key.pem, run `ferry certs issue nas-b --force --dir " + dir + "` and copy nas-b.pem and nas-b-key.pem to nas-b"
	assert.Contains(t, err.Error(), fix)
	// The fix works: without --force the issue would refuse, the pair exists.
	args := strings.Fields(strings.TrimSuffix(strings.SplitN(fix, "`", 3)[1], "`"))
	require.Equal(t, []string{"ferry", "certs", "issue", "nas-b", "--force", "--dir", dir}, args)
	_, _, err = Issue(dir, "nas-b", IssueOptions{})
	require.ErrorIs(t, err, ErrExists)
	_, _, err = Issue(dir, "nas-b", IssueOptions{Force: true})
	require.NoError(t, err)
	_, err = ServerConfig(HostFiles(dir, "nas-b"))
	require.NoError(t, err)

	// A host certificate given as the CA.
	f = HostFiles(dir, "nas-b")
	f.CA = f.Cert
	_, err = ServerConfig(f)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a CA certificate")
}

// TestLoadRefusesAnotherHostsCertificate: nas-a given nas-b's pair (a copy
// of the wrong files) is refused at load, naming both hosts and the fix; the
// file name does not matter, the certificate's names do.
func TestLoadRefusesAnotherHostsCertificate(t *testing.T) {
	dir := t.TempDir()
	_, _, err := Init(dir, false)
	require.NoError(t, err)
	_, _, err = Issue(dir, "nas-b", IssueOptions{})
	require.NoError(t, err)
	b := HostFiles(dir, "nas-b")

	f := b
	f.Host = "nas-a"
	for name, load := range map[string]func(Files) (*tls.Config, error){
		"server": ServerConfig,
		"client": func(f Files) (*tls.Config, error) { return ClientConfig(f, "") },
	} {
		_, err = load(f)
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), b.Cert, name)
		assert.Contains(t, err.Error(), `issued for host "nas-b", not for "nas-a"`, name)
		assert.Contains(t, err.Error(), "run `ferry certs issue nas-a --dir "+dir+"`", name)
	}

	// nas-b's files copied under nas-a's names are still nas-b's.
	a := HostFiles(dir, "nas-a")
	for src, dst := range map[string]string{b.Cert: a.Cert, b.Key: a.Key} {
		data, err := os.ReadFile(src)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(dst, data, 0o600))
	}
	_, err = ServerConfig(a)
	require.ErrorContains(t, err, `issued for host "nas-b", not for "nas-a"`)
	require.ErrorContains(t, err, "run `ferry certs issue nas-a --force --dir "+dir+"`")
	// With nas-a's own files beside it, the fix is to use them.
	_, err = ServerConfig(f)
	require.ErrorContains(t, err, "use nas-a's own certificate "+a.Cert+" and key "+a.Key)

	// The right common name without the DNS name clients check.
	caCert, caKey, err := loadCAForSigning(dir)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := randomSerial()
	require.NoError(t, err)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "nas-a"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{"nas-z"},
	}, caCert, &key.PublicKey, caKey)
	require.NoError(t, err)
	require.NoError(t, writePair(dir, a.Cert, der, a.Key, key))
	_, err = ServerConfig(a)
	require.ErrorContains(t, err, `names "nas-a" as its common name but not among its DNS names ["nas-z"]`)

	// Without a host name there is nothing to compare with.
	f.Host = ""
	_, err = ServerConfig(f)
	require.NoError(t, err)
	_, err = ServerConfig(b)
	require.NoError(t, err)
}

// TestMutualTLS runs a real handshake with the configs: the server requires a
// client certificate from the CA, the client checks the server's host name
// (not its address), and both speak TLS 1.3.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	_, _, err := Init(dir, false)
	require.NoError(t, err)
	for _, h := range []string{"nas-a", "nas-b"} {
		_, _, err := Issue(dir, h, IssueOptions{})
		require.NoError(t, err)
	}
	srvCfg, err := ServerConfig(HostFiles(dir, "nas-a"))
	require.NoError(t, err)
	assert.Equal(t, uint16(tls.VersionTLS13), srvCfg.MinVersion)
	assert.Equal(t, tls.RequireAndVerifyClientCert, srvCfg.ClientAuth)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	type result struct {
		peer    string
		version uint16
		err     error
	}
	results := make(chan result, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				tc.SetDeadline(time.Now().Add(5 * time.Second))
				err := tc.Handshake()
				st := tc.ConnectionState()
				var peer string
				if err == nil && len(st.PeerCertificates) > 0 {
					peer = st.PeerCertificates[0].Subject.CommonName
					tc.Write([]byte("ok"))
				}
				results <- result{peer, st.Version, err}
			}()
		}
	}()

	dial := func(cfg *tls.Config) error {
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadFull(c, make([]byte, 2))
		return err
	}

	cli, err := ClientConfig(HostFiles(dir, "nas-b"), "nas-a")
	require.NoError(t, err)
	require.NoError(t, dial(cli))
	r := <-results
	require.NoError(t, r.err)
	assert.Equal(t, "nas-b", r.peer)
	assert.Equal(t, uint16(tls.VersionTLS13), r.version)

	// Wrong server name: the client refuses the server.
	wrong, err := ClientConfig(HostFiles(dir, "nas-b"), "nas-x")
	require.NoError(t, err)
	err = dial(wrong)
	require.Error(t, err)
	var verr *tls.CertificateVerificationError
	assert.True(t, errors.As(err, &verr), "got %v", err)
	<-results

	// No client certificate: the server refuses the client.
	nocert := cli.Clone()
	nocert.Certificates = nil
	err = dial(nocert)
	require.Error(t, err)
	r = <-results
	assert.Error(t, r.err)
	assert.True(t, strings.Contains(r.err.Error(), "certificate"), "server error %v", r.err)
}
