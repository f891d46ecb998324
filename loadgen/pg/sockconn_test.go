package pg

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"

	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/profiles"
)

// failingConn is a net.Conn whose reads and writes fail with the next of
// errs.
type failingConn struct {
	net.Conn
	errs []error
}

func (c *failingConn) next() error {
	err := c.errs[0]
	c.errs = c.errs[1:]
	return err
}

func (c *failingConn) Read([]byte) (int, error)  { return 0, c.next() }
func (c *failingConn) Write([]byte) (int, error) { return 0, c.next() }

// opError is a socket error as the net package returns it.
func opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, err)}
}

// A socket's ETIMEDOUT (the kernel aborted the connection) reaches pgconn
// as an error that is no timeout, so that pgconn closes the connection
// instead of reading the dead socket again, while loadgen.Classify still
// names it ETIMEDOUT and its message is the socket's. A deadline timeout
// (pgconn interrupting a read) passes unchanged. The first error that is
// no deadline is the socket's failure; later ones do not replace it.
func TestSockConnErrors(t *testing.T) {
	timedOut := opError("read", syscall.ETIMEDOUT)
	deadline := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	reset := opError("write", syscall.ECONNRESET)
	c := &sockConn{Conn: &failingConn{errs: []error{deadline, timedOut, io.EOF, reset}}}

	var buf [8]byte
	if _, err := c.Read(buf[:]); err != deadline {
		t.Fatalf("deadline: read returned %v, want the deadline error itself", err)
	}
	if f := c.failure(); f != nil {
		t.Fatalf("a deadline is the socket's failure: %v", f)
	}

	_, err := c.Read(buf[:])
	var ne net.Error
	if errors.As(err, &ne) {
		t.Errorf("ETIMEDOUT: %v is a net.Error (Timeout %v): pgconn takes it for a deadline", err, ne.Timeout())
	}
	if got := loadgen.Classify(err); got != loadgen.ClassETIMEDOUT {
		t.Errorf("ETIMEDOUT: classified %q, want %q", got, loadgen.ClassETIMEDOUT)
	}
	if class, _ := classify(fmt.Errorf("receive message failed: %w", err)); class != loadgen.ClassETIMEDOUT {
		t.Errorf("ETIMEDOUT wrapped: classified %q", class)
	}
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Errorf("ETIMEDOUT: errors.Is(%v, ETIMEDOUT) false", err)
	}
	if err.Error() != timedOut.Error() {
		t.Errorf("ETIMEDOUT: message %q, want the socket's %q", err, timedOut)
	}
	if f := c.failure(); f != err {
		t.Errorf("ETIMEDOUT: failure %v, want %v", f, err)
	}

	if _, err := c.Read(buf[:]); err != io.EOF {
		t.Errorf("EOF after: %v", err)
	}
	if _, err := c.Write(buf[:]); err != reset {
		t.Errorf("ECONNRESET: write returned %v, want the socket's error itself", err)
	}
	if f := c.failure(); loadgen.Classify(f) != loadgen.ClassETIMEDOUT {
		t.Errorf("failure %v after later errors, want the first, ETIMEDOUT", f)
	}

	w := &sockConn{Conn: &failingConn{errs: []error{opError("write", syscall.ETIMEDOUT)}}}
	if _, err := w.Write(buf[:]); errors.As(err, &ne) || loadgen.Classify(err) != loadgen.ClassETIMEDOUT {
		t.Errorf("ETIMEDOUT on write: %v (%T), classified %q", err, err, loadgen.Classify(err))
	}
}

// A write that pgconn reports as an end-of-file ("conn closed" after a
// failed pipelined read, "unexpected EOF") takes the class of the socket
// error that ended the connection, when there was one; a deadline, a
// server error or an error with its own errno keep theirs, whatever the
// socket answered later.
func TestWithSocketFailure(t *testing.T) {
	failed := func(errs ...error) net.Conn {
		c := &sockConn{Conn: &failingConn{errs: errs}}
		for range errs {
			c.Read(nil)
		}
		return c
	}
	timedOut := opError("read", syscall.ETIMEDOUT)
	reset := opError("read", syscall.ECONNRESET)
	for _, c := range []struct {
		name string
		err  error
		nc   net.Conn
		want string
	}{
		{"conn closed after ETIMEDOUT", pgconn.ErrConnClosed, failed(timedOut), loadgen.ClassETIMEDOUT},
		{"unexpected EOF after ETIMEDOUT", fmt.Errorf("copy: %w", io.ErrUnexpectedEOF), failed(timedOut), loadgen.ClassETIMEDOUT},
		{"conn closed after ECONNRESET", pgconn.ErrConnClosed, failed(reset), loadgen.ClassECONNRESET},
		{"conn closed after EOF then ECONNRESET", pgconn.ErrConnClosed, failed(io.EOF, reset), loadgen.ClassEOF},
		{"conn closed, socket fine", pgconn.ErrConnClosed, failed(), loadgen.ClassEOF},
		{"conn closed, plain socket", pgconn.ErrConnClosed, &failingConn{}, loadgen.ClassEOF},
		{"conn closed over TLS after ETIMEDOUT", pgconn.ErrConnClosed, tls.Client(failed(timedOut), &tls.Config{}), loadgen.ClassETIMEDOUT},
		{"deadline then ECONNRESET while draining", context.DeadlineExceeded, failed(reset), loadgen.ClassTimeout},
		{"own errno", opError("write", syscall.EPIPE), failed(timedOut), loadgen.ClassEPIPE},
		{"server error", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, failed(timedOut), loadgen.ClassSQL},
	} {
		err := withSocketFailure(c.err, c.nc)
		if got, _ := classify(err); got != c.want {
			t.Errorf("%s: %v classified %q, want %q", c.name, err, got, c.want)
		}
		if !errors.Is(err, c.err) {
			t.Errorf("%s: %v does not wrap the write's error %v", c.name, err, c.err)
		}
	}
}

// The driver's connections are sockConns that still expose their socket
// (syscall.Conn, the *net.TCPConn for SO_LINGER and TCP_CORK), and reading
// and writing through one allocates nothing.
func TestSockConnSocketZeroAllocs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo
	}()
	dl, err := loadgen.NewDialer(&profiles.Client{Name: "t", Conn: profiles.ConnPool, Linger0: true,
		UserTimeout: profiles.Duration(3 * time.Second)}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := dialFunc(dl)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, ok := nc.(*sockConn); !ok {
		t.Fatalf("dialFunc returned %T, want *sockConn", nc)
	}
	tc, ok := tcpConn(nc)
	if !ok {
		t.Fatalf("no *net.TCPConn under %T", nc)
	}
	rc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ut int
	rc.Control(func(fd uintptr) {
		ut, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	})
	if ut != 3000 {
		t.Errorf("TCP_USER_TIMEOUT read through the sockConn = %d, want 3000", ut)
	}
	if tc.LocalAddr().String() != nc.LocalAddr().String() {
		t.Errorf("socket under the sockConn is %v, the sockConn %v", tc.LocalAddr(), nc.LocalAddr())
	}

	buf := make([]byte, 64)
	roundTrip := func() {
		if _, err := nc.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(nc, buf); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip()
	if a := testing.AllocsPerRun(500, roundTrip); a != 0 {
		t.Fatalf("a write and a read through a sockConn allocate %.1f times, want 0", a)
	}
}
