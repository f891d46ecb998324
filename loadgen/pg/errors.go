package pg

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/loadcap/loadcap/loadgen"
)

// classify turns a write error into a result class and SQLSTATE: a server
// error is loadgen.ClassSQL with its code; anything else keeps the errno
// class of the HTTP path (EADDRNOTAVAIL, ECONNREFUSED, timeout, EOF, ...).
func classify(err error) (class, code string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return loadgen.ClassSQL, pe.Code
	}
	c := loadgen.Classify(err)
	if c == loadgen.ClassOther && errors.Is(err, pgconn.ErrConnClosed) {
		// A pipelined batch on a connection the server has closed: pgconn
		// drops the read error (EOF) in MultiResultReader.NextResult,
		// closes the connection and then reports only "conn closed".
		c = loadgen.ClassEOF
	}
	return c, ""
}

// fatal reports whether err leaves the connection unusable.
func fatal(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Severity == "FATAL" || pe.Severity == "PANIC"
	}
	return true
}

// pgMessage is the one-line text of a server error, or of err.
func pgMessage(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s (SQLSTATE %s)", pe.Message, pe.Code)
	}
	return oneLine(err.Error())
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// connectProblem describes why connecting failed, in one line without the
// password: the server's own message (wrong password, missing database,
// too many connections), or what the network said.
func connectProblem(err error, cfg *pgconn.Config) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s (SQLSTATE %s)", pe.Message, pe.Code)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Sprintf("cannot resolve host %q: %s", dnsErr.Name, dnsErr.Err)
	}
	switch c := loadgen.Classify(err); c {
	case loadgen.ClassECONNREFUSED:
		return fmt.Sprintf("connection refused by %s (is PostgreSQL listening there?)", hostPort(cfg))
	case loadgen.ClassTimeout, loadgen.ClassETIMEDOUT:
		return fmt.Sprintf("no answer from %s (timed out)", hostPort(cfg))
	case loadgen.ClassEHOSTUNREACH, loadgen.ClassENETUNREACH:
		return fmt.Sprintf("%s is unreachable (%s)", hostPort(cfg), c)
	case loadgen.ClassEOF, loadgen.ClassECONNRESET:
		return fmt.Sprintf("%s closed the connection during start-up (%s): is it PostgreSQL?", hostPort(cfg), c)
	}
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	switch {
	case errors.As(err, &ua):
		return fmt.Sprintf("TLS with %s: %s (give the CA's certificate with sslrootcert=FILE in the URL, or sslmode=require to skip verification)", hostPort(cfg), ua.Error())
	case errors.As(err, &hn):
		return fmt.Sprintf("TLS with %s: %s (sslmode=verify-ca does not check the name)", hostPort(cfg), hn.Error())
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oneLine(oe.Error())
	}
	// pgconn's own messages (auth method, TLS) name user and database,
	// never the password; keep the innermost part.
	msg := oneLine(err.Error())
	if i := strings.LastIndex(msg, "): "); i >= 0 && i+3 < len(msg) {
		msg = msg[i+3:]
	}
	return msg
}

func hostPort(cfg *pgconn.Config) string {
	return net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
}

// scrub removes secret from msg (belt and braces: no message should hold it).
func scrub(msg, secret string) string {
	if secret == "" {
		return msg
	}
	return strings.ReplaceAll(msg, secret, "xxxxx")
}
