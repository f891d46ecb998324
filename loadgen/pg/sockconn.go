package pg

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/loadcap/loadcap/loadgen"
)

// sockConn is a server connection's socket as pgconn sees it. It changes
// one thing: the ETIMEDOUT of a connection the kernel aborted
// (TCP_USER_TIMEOUT expired, or the retransmissions ran out: a firewall
// dropped the flow) stops claiming to be a timeout.
//
// Go's syscall.ETIMEDOUT.Timeout() is true, so the *net.OpError of the
// abort is a net.Error timeout, which pgconn takes for an expired deadline:
// it keeps the connection open and reads again (a pipelined batch in
// MultiResultReader.NextResult, COPY after its background receive), and the
// dead socket answers end-of-file: "unexpected EOF", class EOF, where the
// HTTP path reports ETIMEDOUT. sockConn hands pgconn an *abortError
// instead, which pgconn treats as fatal (it closes the connection) and
// loadgen.Classify still names ETIMEDOUT.
//
// sockConn also remembers the error that ended the socket (see failure):
// pgconn then reports a pipelined batch only as "conn closed" (see
// withSocketFailure). Deadline timeouts, which pgconn sets itself to
// interrupt a read, pass unchanged and are not remembered. NetConn and
// SyscallConn reach the socket for the socket options (see tcpConn).
type sockConn struct {
	net.Conn
	failed atomic.Pointer[sockFailure]
	// connected is when the TCP connection was established.
	connected time.Time
}

// sockFailure holds the error that ended a socket.
type sockFailure struct{ err error }

// dialFunc is dl as pgx's DialFunc: every connection it opens is a
// sockConn.
func dialFunc(dl *loadgen.Dialer) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := dl.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &sockConn{Conn: nc, connected: time.Now()}, nil
	}
}

// afterConnect is pgx's AfterNetConnect hook: called once TLS is set up, it
// records on dl the time from the TCP connection to the end of the TLS
// handshake (SSLRequest and its answer included, as a client sees it).
func afterConnect(dl *loadgen.Dialer) func(context.Context, *pgconn.Config, net.Conn) (net.Conn, error) {
	return func(_ context.Context, _ *pgconn.Config, nc net.Conn) (net.Conn, error) {
		if tc, ok := nc.(*tls.Conn); ok {
			if sc, ok := tc.NetConn().(*sockConn); ok {
				dl.Times.RecordTLS(time.Since(sc.connected))
			}
		}
		return nc, nil
	}
}

// Read reads from the socket; see sockConn for its errors.
func (c *sockConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		err = c.fail(err)
	}
	return n, err
}

// Write writes to the socket; see sockConn for its errors.
func (c *sockConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil {
		err = c.fail(err)
	}
	return n, err
}

// fail translates a read or write error and remembers the first one that
// is not a deadline timeout: the error that ended the socket.
func (c *sockConn) fail(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) && errno == syscall.ETIMEDOUT {
		err = &abortError{err: err}
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return err
	}
	if c.failed.Load() == nil {
		c.failed.CompareAndSwap(nil, &sockFailure{err: err})
	}
	return err
}

// failure returns the error that ended the socket, nil while it works.
func (c *sockConn) failure() error {
	if f := c.failed.Load(); f != nil {
		return f.err
	}
	return nil
}

// NetConn returns the connection sockConn wraps (a *net.TCPConn from
// loadgen.Dialer), as tls.Conn.NetConn does.
func (c *sockConn) NetConn() net.Conn { return c.Conn }

// SyscallConn returns the raw socket, so that a sockConn is a syscall.Conn
// like the *net.TCPConn it wraps.
func (c *sockConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("raw socket of a %T: not a syscall.Conn", c.Conn)
	}
	return sc.SyscallConn()
}

// tcpConn returns the TCP socket under nc: nc itself, or the connection a
// sockConn wraps. ok is false when there is none (TLS).
func tcpConn(nc net.Conn) (tc *net.TCPConn, ok bool) {
	if sc, isSock := nc.(*sockConn); isSock {
		nc = sc.Conn
	}
	tc, ok = nc.(*net.TCPConn)
	return tc, ok
}

// socketFailure returns the error that ended the socket under nc (a
// sockConn, or a TLS connection over one), nil when it has none.
func socketFailure(nc net.Conn) error {
	for nc != nil {
		switch c := nc.(type) {
		case *sockConn:
			return c.failure()
		case interface{ NetConn() net.Conn }:
			nc = c.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// withSocketFailure returns err, from a write on a connection whose socket
// is nc (PgConn.Conn), with the error that ended the socket appended when err is an end-of-file (class EOF) and
// the socket's error names an errno: pgconn reports a pipelined batch
// whose read failed as "conn closed" (MultiResultReader.NextResult drops
// the read error, and the connection is closed by then), which alone is
// classified EOF. A real end-of-file is the socket's first error itself,
// and a deadline is not one, so neither is renamed by what the socket
// answers later (while pgconn drains it on close).
func withSocketFailure(err error, nc net.Conn) error {
	if class, _ := classify(err); class != loadgen.ClassEOF {
		return err
	}
	serr := socketFailure(nc)
	var errno syscall.Errno
	if serr == nil || !errors.As(serr, &errno) {
		return err
	}
	return fmt.Errorf("%w: %w", err, serr)
}

// abortError is a socket's ETIMEDOUT: the kernel aborted the connection.
// It is no net.Error and does not unwrap, so that pgconn finds no timeout
// in it, but errors.As finds syscall.ETIMEDOUT (loadgen.Classify) and
// errors.Is matches it.
type abortError struct {
	// err is the socket's error, a *net.OpError holding ETIMEDOUT.
	err error
}

func (e *abortError) Error() string { return e.err.Error() }

// Is reports whether target is syscall.ETIMEDOUT.
func (e *abortError) Is(target error) bool { return target == syscall.ETIMEDOUT }

// As sets a *syscall.Errno target to ETIMEDOUT.
func (e *abortError) As(target any) bool {
	if p, ok := target.(*syscall.Errno); ok {
		*p = syscall.ETIMEDOUT
		return true
	}
	return false
}
