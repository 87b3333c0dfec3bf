// Package tlscert keeps a TLS certificate loaded from files and replaces
// it on demand, so that a renewed certificate (Let's Encrypt and the like)
// takes effect on SIGHUP without a restart and without dropping a
// connection: connections already open keep the certificate they were
// made with, new handshakes get the new one.
package tlscert

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// Loader holds the key pair read from CertFile and KeyFile.
type Loader struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// Load reads the key pair: a PEM certificate chain and its PEM private key.
func Load(certFile, keyFile string) (*Loader, error) {
	l := &Loader{certFile: certFile, keyFile: keyFile}
	if err := l.Reload(); err != nil {
		return nil, err
	}
	return l, nil
}

// Reload reads the files again. When they cannot be read or do not make a
// key pair, the error says why and the certificate in use stays.
func (l *Loader) Reload() error {
	c, err := tls.LoadX509KeyPair(l.certFile, l.keyFile)
	if err != nil {
		return fmt.Errorf("tls certificate %s, key %s: %w", l.certFile, l.keyFile, err)
	}
	l.cur.Store(&c)
	return nil
}

// GetCertificate returns the certificate in use, for tls.Config.
func (l *Loader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return l.cur.Load(), nil
}

// Config returns a server tls.Config that always uses the certificate in
// use, with TLS 1.2 at least.
func (l *Loader) Config() *tls.Config {
	return &tls.Config{GetCertificate: l.GetCertificate, MinVersion: tls.VersionTLS12}
}
