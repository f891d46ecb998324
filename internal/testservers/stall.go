package testservers

import "net"

// StallConn passes its first Write (a server's start-up answer) and blocks
// every later one until Closed is closed, then fails it with net.ErrClosed:
// a server that accepts a session and then never answers a query. Only one
// goroutine may write (a sink's session goroutine does).
type StallConn struct {
	net.Conn
	Closed <-chan struct{}
	wrote  bool
}

// Write writes b the first time and stalls every later call.
func (c *StallConn) Write(b []byte) (int, error) {
	if !c.wrote {
		c.wrote = true
		return c.Conn.Write(b)
	}
	<-c.Closed
	return 0, net.ErrClosed
}
