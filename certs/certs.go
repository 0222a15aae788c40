// Package certs makes and loads the certificates of ferry's data plane: one
// private CA per installation (ECDSA P-256) and one certificate per NAS host,
// valid for both server and client authentication, named after the host
// (CN and DNS SAN = the host name used in the ferry configuration).
//
// Layout of a certificate directory (default "certs"):
//
//	ca.pem          the CA certificate, copied to every host
//	ca-key.pem      the CA key (0600); keep it on the machine that issues certificates
//	HOST.pem        HOST's certificate
//	HOST-key.pem    HOST's key (0600); only HOST needs it
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	// CAFile and CAKeyFile are the CA's file names inside a certificate directory.
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"

	// CAValidity and HostValidity are how long new certificates are valid.
	CAValidity   = 10 * 365 * 24 * time.Hour
	HostValidity = 5 * 365 * 24 * time.Hour

	// clockSkew backdates NotBefore so that hosts whose clocks lag a little
	// accept a certificate issued a moment ago.
	clockSkew = time.Hour
)

// ErrExists is returned (wrapped) when a file would be overwritten without force.
var ErrExists = errors.New("already exists")

// Files names the PEM files one host needs to talk on the data plane.
type Files struct {
	CA   string // CA certificate
	Cert string // this host's certificate
	Key  string // this host's private key
	// Host is this host's name. When set, the certificate must be issued
	// for it (CN and DNS name): a host that presented another host's
	// certificate would act under that host's identity. When empty it is
	// derived from the certificate's file name, only to word the fix.
	Host string
}

// HostFiles returns the standard file names for host inside dir.
func HostFiles(dir, host string) Files {
	return Files{
		CA:   filepath.Join(dir, CAFile),
		Cert: filepath.Join(dir, host+".pem"),
		Key:  filepath.Join(dir, host+"-key.pem"),
		Host: host,
	}
}

// CheckHostName reports whether name can be used as a host certificate name:
// a DNS-style label sequence (letters, digits, '-', '_', '.'), because it
// becomes both a file name and a DNS SAN.
func CheckHostName(name string) error {
	if name == "" {
		return errors.New("host name is empty")
	}
	if len(name) > 253 {
		return fmt.Errorf("host name %q is longer than 253 characters", name)
	}
	if name == "ca" || name == "ca-key" {
		return fmt.Errorf("host name %q would clash with the CA's files", name)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("host name %q contains %q: use letters, digits, '-', '_' and '.' only", name, r)
		}
	}
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") || strings.HasPrefix(name, "-") {
		return fmt.Errorf("host name %q is not a valid DNS name", name)
	}
	return nil
}

// Init creates a new CA in dir (created if missing). It refuses to replace an
// existing CA unless force is set, because every host certificate issued by
// the old CA stops being trusted when the CA changes.
func Init(dir string, force bool) (certPath, keyPath string, err error) {
	certPath = filepath.Join(dir, CAFile)
	keyPath = filepath.Join(dir, CAKeyFile)
	if !force {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Stat(p); err == nil {
				return "", "", fmt.Errorf("%s %w: a new CA would invalidate every host certificate it signed; use --force to replace it", p, ErrExists)
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "ferry CA", Organization: []string{"ferry"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("create CA certificate: %w", err)
	}
	if err := writePair(dir, certPath, der, keyPath, key); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// IssueOptions are the extra names of a host certificate.
type IssueOptions struct {
	IPs      []net.IP // extra IP SANs
	DNSNames []string // extra DNS SANs
	Force    bool     // replace an existing certificate for the host
}

// Issue writes HOST.pem and HOST-key.pem in dir, signed by the CA in dir.
// The certificate's CN and first DNS SAN are host; it is valid for server
// and client authentication.
func Issue(dir, host string, opt IssueOptions) (certPath, keyPath string, err error) {
	if err := CheckHostName(host); err != nil {
		return "", "", err
	}
	for _, n := range opt.DNSNames {
		if err := CheckHostName(n); err != nil {
			return "", "", fmt.Errorf("--dns: %w", err)
		}
	}
	files := HostFiles(dir, host)
	if !opt.Force {
		for _, p := range []string{files.Cert, files.Key} {
			if _, err := os.Stat(p); err == nil {
				return "", "", fmt.Errorf("%s %w: use --force to issue a new certificate for %s", p, ErrExists, host)
			}
		}
	}
	caCert, caKey, err := loadCAForSigning(dir)
	if err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate key for %s: %w", host, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return "", "", err
	}
	dns := []string{host}
	for _, n := range opt.DNSNames {
		if n != host {
			dns = append(dns, n)
		}
	}
	now := time.Now()
	notAfter := now.Add(HostValidity)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: host, Organization: []string{"ferry"}},
		NotBefore:      now.Add(-clockSkew),
		NotAfter:       notAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:       dns,
		IPAddresses:    opt.IPs,
		SubjectKeyId:   keyID(&key.PublicKey),
		AuthorityKeyId: caCert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", "", fmt.Errorf("sign certificate for %s: %w", host, err)
	}
	if err := writePair(dir, files.Cert, der, files.Key, key); err != nil {
		return "", "", err
	}
	return files.Cert, files.Key, nil
}

// LoadCAPool reads the CA certificate at path into a pool.
func LoadCAPool(path string) (*x509.CertPool, error) {
	cert, err := readCert(path, fixCA(filepath.Dir(path)))
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate (is it a host certificate?): point tls.ca at the ca.pem written by `ferry certs init`", path)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool, nil
}

// ServerConfig is the TLS configuration of a data server: it presents the
// host's certificate, requires a client certificate signed by the CA and
// speaks TLS 1.3 only.
func ServerConfig(f Files) (*tls.Config, error) {
	pool, pair, err := load(f)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// ClientConfig is the TLS configuration of a data-plane client: it presents
// the host's certificate, trusts only the CA, speaks TLS 1.3 only, and checks
// that the server's certificate is issued for serverName - the source host's
// ferry name, not its network address. serverName may be left empty when the
// caller sets it per connection (transfer.Client does, from FetchRequest).
func ClientConfig(f Files, serverName string) (*tls.Config, error) {
	pool, pair, err := load(f)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		ServerName:   serverName,
	}, nil
}

// load reads the CA pool and the host's key pair and checks that they belong
// together and are currently valid, so that a misconfiguration is reported at
// start-up with the file to fix rather than as a handshake failure later.
func load(f Files) (*x509.CertPool, tls.Certificate, error) {
	host := f.Host
	checkName := host != ""
	if host == "" {
		host = strings.TrimSuffix(filepath.Base(f.Cert), ".pem")
	}
	// A certificate is issued where the CA is: the fixes name the CA's directory.
	dir := filepath.Dir(f.CA)
	pool, err := LoadCAPool(f.CA)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	fixCert := fixIssue(dir, host)
	if _, err := os.Stat(f.Cert); err == nil {
		fixCert = fixReissue(dir, host) // there, but unreadable: replace it
	}
	leaf, err := readCert(f.Cert, fixCert)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	if _, err := os.Stat(f.Key); err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("key %s: %w: %s", f.Key, unwrapPath(err), fixReissue(dir, host)) // the certificate exists
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("load %s with key %s: %v: the key does not belong to the certificate or is damaged; %s", f.Cert, f.Key, err, fixReissue(dir, host))
	}
	now := time.Now()
	if now.After(leaf.NotAfter) {
		return nil, tls.Certificate{}, fmt.Errorf("%s expired on %s: %s", f.Cert, leaf.NotAfter.Format(time.DateOnly), fixReissue(dir, host))
	}
	if now.Before(leaf.NotBefore) {
		return nil, tls.Certificate{}, fmt.Errorf("%s is not valid before %s: check this host's clock", f.Cert, leaf.NotBefore.Format(time.RFC3339))
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: now}); err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("%s is not signed by the CA in %s (%v): %s", f.Cert, f.CA, err, fixOtherCA(f.CA, host))
	}
	if checkName {
		if err := issuedFor(leaf, host); err != nil {
			return nil, tls.Certificate{}, fmt.Errorf("%s %v, so this host would act as another one: %s", f.Cert, err, fixWrongHost(f.Cert, dir, host))
		}
	}
	pair.Leaf = leaf
	return pool, pair, nil
}

// issuedFor checks that leaf names host as `ferry certs issue host` does:
// as its common name (what data servers check) and as a DNS name (what
// clients check).
func issuedFor(leaf *x509.Certificate, host string) error {
	if cn := leaf.Subject.CommonName; cn != host {
		return fmt.Errorf("is issued for host %q, not for %q", cn, host)
	}
	if err := leaf.VerifyHostname(host); err != nil {
		return fmt.Errorf("names %q as its common name but not among its DNS names %q", host, leaf.DNSNames)
	}
	return nil
}

func readCert(path, fix string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w: %s", path, unwrapPath(err), fix)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM CERTIFICATE block: %s", path, fix)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: parse certificate: %v: %s", path, err, fix)
	}
	return cert, nil
}

func loadCAForSigning(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath := filepath.Join(dir, CAFile)
	keyPath := filepath.Join(dir, CAKeyFile)
	cert, err := readCert(certPath, fixCA(dir))
	if err != nil {
		return nil, nil, err
	}
	data, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key %s: %w: certificates are issued on the machine that holds the CA key (or %s)", keyPath, unwrapPath(err), fixCA(dir))
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, nil, fmt.Errorf("%s holds no PEM PRIVATE KEY block: %s", keyPath, fixCA(dir))
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: parse key: %v: %s", keyPath, err, fixCA(dir))
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s does not belong to %s: restore the matching pair, or %s", keyPath, certPath, fixCA(dir))
	}
	if time.Now().After(cert.NotAfter) {
		return nil, nil, fmt.Errorf("CA %s expired on %s: run `ferry certs init --force%s` and issue every host again", certPath, cert.NotAfter.Format(time.DateOnly), dirFlag(dir))
	}
	return cert, key, nil
}

func writePair(dir, certPath string, der []byte, keyPath string, key *ecdsa.PrivateKey) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create certificate directory: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	// Key first: a certificate without its key is useless, a stray key is harmless.
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeFile writes atomically (temporary file + rename) with the given mode.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	defer os.Remove(name)
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

// keyID is the RFC 5280 method 1 key identifier (SHA-1 of the public key bits).
func keyID(pub *ecdsa.PublicKey) []byte {
	b, err := pub.Bytes()
	if err != nil {
		return nil
	}
	sum := sha1.Sum(b)
	return sum[:]
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func dirFlag(dir string) string {
	if filepath.Clean(dir) == "certs" {
		return ""
	}
	return " --dir " + dir
}

func fixCA(dir string) string {
	return fmt.Sprintf("run `ferry certs init%s` to create the CA, or copy ca.pem from the host that has it", dirFlag(dir))
}

// fixIssue, fixReissue and fixOtherCA are run where the CA key is, which
// is seldom the host whose certificate is wrong: they say so.
func fixIssue(caDir, host string) string {
	return fmt.Sprintf("on the machine that holds %s, run `ferry certs issue %s%s` and copy %s.pem and %s-key.pem to %s",
		CAKeyFile, host, dirFlag(caDir), host, host, host)
}

// fixWrongHost is the fix for a certificate of another host found at cert:
// use the host's own pair when it is beside it, else issue one.
func fixWrongHost(cert, caDir, host string) string {
	own := HostFiles(filepath.Dir(cert), host)
	if own.Cert == cert {
		return fixReissue(caDir, host) // the host's own file holds another host's certificate
	}
	if _, err := os.Stat(own.Cert); err == nil {
		return fmt.Sprintf("use %s's own certificate %s and key %s", host, own.Cert, own.Key)
	}
	return fixIssue(caDir, host)
}

// fixReissue replaces the host's certificate and key (--force: they exist).
func fixReissue(caDir, host string) string {
	return fmt.Sprintf("on the machine that holds %s, run `ferry certs issue %s --force%s` and copy %s.pem and %s-key.pem to %s",
		CAKeyFile, host, dirFlag(caDir), host, host, host)
}

// fixOtherCA is for a certificate signed by another CA than the one the
// host trusts: re-issuing from the certificate's directory would use the
// wrong CA again.
func fixOtherCA(caPath, host string) string {
	return fmt.Sprintf("issue it from the CA in %s, on the machine that holds its %s: `ferry certs issue %s --force --dir %s`, and copy %s.pem and %s-key.pem to %s",
		caPath, CAKeyFile, host, filepath.Dir(caPath), host, host, host)
}
