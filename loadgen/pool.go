package loadgen

import (
	"bufio"
	"context"
	"net"
	"time"

	"github.com/loadcap/loadcap/internal/connpool"
)

// pconn is one client connection with its read buffer.
type pconn struct {
	connpool.Entry
	c  net.Conn
	br *bufio.Reader
}

// newConnPool returns the HTTP driver's connection pool (see
// internal/connpool), shaped by the client profile: connections from dial,
// each with a 4 KiB read buffer, and ping as the heartbeat (when the profile
// sets one).
func newConnPool(dial func(context.Context) (net.Conn, error), pooled bool, maxConns, maxIdle int, idleTimeout, heartbeat time.Duration, ping func(*pconn) error) *connpool.Pool[*pconn] {
	return connpool.New(connpool.Config{Pooled: pooled, MaxConns: maxConns, MaxIdle: maxIdle, IdleTimeout: idleTimeout, Heartbeat: heartbeat},
		connpool.Hooks[*pconn]{
			Dial: func(ctx context.Context) (*pconn, error) {
				c, err := dial(ctx)
				if err != nil {
					return nil, err
				}
				return &pconn{c: c, br: bufio.NewReaderSize(c, 4096)}, nil
			},
			Close: func(pc *pconn) { pc.c.Close() },
			Ping:  ping,
		})
}
