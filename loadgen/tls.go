package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// TLSOptions are the TLS settings of the HTTPS targets of a run, as the
// user gives them (--tls-ca, --tls-cert, --tls-key, --tls-server-name,
// --tls-insecure). PostgreSQL targets take theirs from the URL (sslmode,
// sslrootcert, sslcert, sslkey), as libpq and pgx do.
type TLSOptions struct {
	// CAFile is a PEM bundle of CA certificates trusted in addition to the
	// system's roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and its key (PEM),
	// given together.
	CertFile, KeyFile string
	// ServerName is the name the server's certificate is checked against
	// (and sent in SNI) instead of the target's host.
	ServerName string
	// Insecure skips the verification of the server's certificate.
	Insecure bool
}

// IsZero reports whether no TLS setting was given.
func (o TLSOptions) IsZero() bool { return o == TLSOptions{} }

// Config builds the client TLS configuration: the system roots plus the
// CA bundle, the client certificate, the server name. Its errors name the
// flag and the file, in one line.
func (o TLSOptions) Config() (*tls.Config, error) {
	cfg := &tls.Config{ServerName: o.ServerName, InsecureSkipVerify: o.Insecure}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("bad --tls-ca %q: %w", o.CAFile, unwrapPath(err))
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("bad --tls-ca %q: no PEM certificate in it", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case o.CertFile != "" && o.KeyFile == "":
		return nil, fmt.Errorf("bad --tls-cert %q: needs --tls-key, the key of that certificate", o.CertFile)
	case o.KeyFile != "" && o.CertFile == "":
		return nil, fmt.Errorf("bad --tls-key %q: needs --tls-cert, the certificate of that key", o.KeyFile)
	case o.CertFile != "":
		for flag, f := range map[string]string{"--tls-cert": o.CertFile, "--tls-key": o.KeyFile} {
			if _, err := os.Stat(f); err != nil {
				return nil, fmt.Errorf("bad %s %q: %w", flag, f, unwrapPath(err))
			}
		}
		kp, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("bad --tls-cert %q / --tls-key %q: %v", o.CertFile, o.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return cfg, nil
}

// unwrapPath drops the *PathError's repetition of the operation and path:
// "no such file or directory" rather than "open x: no such file ...".
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// clientTLS returns cfg (or an empty configuration) for a connection to
// addr, its server name the host of addr unless cfg names one.
func clientTLS(cfg *tls.Config, addr string) *tls.Config {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	return cfg
}

// CheckTLS connects once to an https target and completes a TLS handshake
// with cfg, so that a certificate problem stops the run before any load
// is sent, in one line naming the target and the reason. A connection that
// cannot be made at all is not its concern (nil): the run measures that.
// The connection is closed at once; dl should not be the run's dialer,
// whose connections are counted.
func CheckTLS(ctx context.Context, spec TargetSpec, cfg *tls.Config, dl *Dialer, timeout time.Duration) error {
	if !spec.TLS {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := dl.DialContext(ctx, "tcp", spec.Addr)
	if err != nil {
		return nil
	}
	defer c.Close()
	tc := tls.Client(c, clientTLS(cfg, spec.Addr))
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake with %s failed: %s%s", spec.Addr, oneLineTLS(err), tlsHint(err))
	}
	return nil
}

// oneLineTLS is a TLS error on one line, without Go's "tls: " prefixes
// repeated.
func oneLineTLS(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// tlsHint says which flag fixes a TLS failure, when it is a known one.
func tlsHint(err error) string {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		return " (give the CA's certificate with --tls-ca FILE, or skip verification with --tls-insecure)"
	case errors.As(err, &hn):
		return " (give the name the certificate is for with --tls-server-name, or connect by that name)"
	case errors.As(err, &ci):
		return " (the certificate is expired or not valid for a server; --tls-insecure skips verification)"
	}
	return ""
}
