package pg

import (
	"context"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/loadcap/loadcap/internal/connpool"
)

// conn is one pooled server connection.
type conn struct {
	connpool.Entry
	pc *pgconn.PgConn
	// prepared has bit i set when statement stmtNames[i] is prepared on
	// this connection.
	prepared uint8
}

// closer says how a session ends: which side closes first, and whether the
// socket has SO_LINGER 0 (set by the dialer), so that the close is a reset.
type closer struct {
	// timeout bounds the close (and a heartbeat ping).
	timeout time.Duration
	// server: the client sends Terminate and waits for the server to
	// close first (TIME_WAIT on the server), like an HTTP
	// "Connection: close" exchange.
	server bool
	// linger0: the socket has SO_LINGER {1, 0}; the client sends
	// Terminate and closes with a reset, no FIN (no TIME_WAIT anywhere).
	linger0 bool
}

// poolConfig is the shape of a pool, from a client profile.
type poolConfig struct {
	// pooled keeps connections for reuse; false: one per write.
	pooled bool
	// maxConns bounds open connections (0: unlimited); maxIdle bounds
	// idle ones (0: 2, Go's DefaultMaxIdleConnsPerHost).
	maxConns, maxIdle int
	// idleTimeout closes connections idle longer; heartbeat pings idle
	// connections so that none stays silent longer (0: neither).
	idleTimeout, heartbeat time.Duration
	closer
}

// pool is the driver's connection pool, the one the HTTP driver uses too
// (internal/connpool): its heartbeat runs "select 1" on idle connections,
// and a connection ends as the pool's closer says.
type pool = connpool.Pool[*conn]

// newPool returns a pool of connections made by connect.
func newPool(connect func(context.Context) (*pgconn.PgConn, error), cfg poolConfig) *pool {
	return connpool.New(connpool.Config{Pooled: cfg.pooled, MaxConns: cfg.maxConns, MaxIdle: cfg.maxIdle, IdleTimeout: cfg.idleTimeout, Heartbeat: cfg.heartbeat},
		connpool.Hooks[*conn]{
			Dial: func(ctx context.Context) (*conn, error) {
				pc, err := connect(ctx)
				if err != nil {
					return nil, err
				}
				return &conn{pc: pc}, nil
			},
			Close: func(c *conn) { cfg.closer.close(c.pc) },
			Alive: func(c *conn) bool { return !c.pc.IsClosed() },
			Ping: func(c *conn) error {
				ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
				defer cancel()
				_, err := c.pc.Exec(ctx, "select 1").ReadAll()
				return err
			},
		})
}

// close ends the session on pc. The client closes first (Terminate and
// FIN in one segment: TIME_WAIT on the client, see closeFirst), or with
// linger0 sends Terminate and resets the connection (no TIME_WAIT, see
// closeReset), unless server is set: then the client sends Terminate and
// waits for the server to close (TIME_WAIT on the server), like an HTTP
// "Connection: close" exchange.
func (cl closer) close(pc *pgconn.PgConn) {
	if pc.IsClosed() {
		pc.Close(context.Background()) // already closing: only releases
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cl.timeout)
	defer cancel()
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return
	}
	nc := hc.Conn
	nc.SetDeadline(time.Now().Add(cl.timeout))
	switch {
	case cl.server:
		if _, err := nc.Write(terminate); err == nil {
			var buf [64]byte
			for {
				if _, err := nc.Read(buf[:]); err != nil {
					break
				}
			}
		}
		nc.Close()
	case cl.linger0:
		closeReset(nc)
	default:
		closeFirst(nc)
	}
}

// closeReset sends Terminate and closes nc, whose SO_LINGER {1, 0} the
// dialer set: the close sends RST instead of FIN, and neither side keeps
// TIME_WAIT. There is no shutdown(SHUT_WR) before it: a FIN sent first puts
// the client in FIN_WAIT, and when the backend woken by Terminate sends its
// own FIN before the close, the client enters TIME_WAIT and the reset comes
// too late (about one close in seven did, against the embedded sink).
// Terminate is not corked either: a reset discards unsent data.
func closeReset(nc net.Conn) {
	nc.Write(terminate)
	nc.Close()
}

// terminate is the frontend's Terminate message.
var terminate = []byte{'X', 0, 0, 0, 4}

// closeFirst sends Terminate and the client's FIN together and closes nc,
// so the client is the side that closes first and holds TIME_WAIT. Sent
// apart, the backend woken by Terminate can exit and send its own FIN
// before the client gets to close (on a busy 2-core host about one close
// in five did), moving that TIME_WAIT to the server. TCP_CORK holds
// Terminate back until shutdown(SHUT_WR) appends the FIN to it. When nc is
// not plain TCP (TLS), Terminate goes first and the race stays.
func closeFirst(nc net.Conn) {
	tc, ok := tcpConn(nc)
	if !ok {
		nc.Write(terminate)
		nc.Close()
		return
	}
	if rc, err := tc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, 1)
		})
	}
	if _, err := tc.Write(terminate); err == nil {
		tc.CloseWrite()
	}
	tc.Close()
}
