package pg

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// conn is one pooled server connection.
type conn struct {
	pc       *pgconn.PgConn
	lastUsed time.Time
	lastPing time.Time
	// prepared has bit i set when statement stmtNames[i] is prepared on
	// this connection.
	prepared uint8
	// reused is true when get took the connection from the idle pool.
	reused bool
}

// pool is the SQL twin of the HTTP driver's pool, shaped by a client
// profile: at most maxConns open (0: unlimited) and at most maxIdle kept
// idle; a connection released while maxIdle are idle is closed by the
// client, which is how a small idle pool churns. Without pooling every
// write gets a new connection, closed after the write. A maintenance loop
// closes connections idle longer than idleTimeout and, with a heartbeat,
// runs "select 1" on connections idle for a heartbeat interval.
type pool struct {
	connect     func(ctx context.Context) (*pgconn.PgConn, error)
	idle        chan *conn    // nil when connections are never reused
	slots       chan struct{} // nil when unlimited
	idleTimeout time.Duration
	heartbeat   time.Duration
	closeServer bool
	timeout     time.Duration

	mu     sync.Mutex
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup

	pings, pingsFailed, expired atomic.Int64
}

func newPool(connect func(context.Context) (*pgconn.PgConn, error), pooled bool, maxConns, maxIdle int, idleTimeout, heartbeat, timeout time.Duration, closeServer bool) *pool {
	p := &pool{connect: connect, idleTimeout: idleTimeout, heartbeat: heartbeat, timeout: timeout, closeServer: closeServer, done: make(chan struct{})}
	if pooled {
		if maxIdle <= 0 {
			maxIdle = 2 // as the HTTP path: Go's DefaultMaxIdleConnsPerHost
		}
		if maxConns > 0 && maxIdle > maxConns {
			maxIdle = maxConns
		}
		p.idle = make(chan *conn, maxIdle)
		if every := maintainEvery(idleTimeout, heartbeat); every > 0 {
			p.wg.Add(1)
			go p.maintain(every)
		}
	}
	if maxConns > 0 {
		p.slots = make(chan struct{}, maxConns)
	}
	return p
}

func maintainEvery(idleTimeout, heartbeat time.Duration) time.Duration {
	every := time.Duration(0)
	for _, d := range []time.Duration{idleTimeout / 2, heartbeat / 2} {
		if d > 0 && (every == 0 || d < every) {
			every = d
		}
	}
	if every > 0 && every < 50*time.Millisecond {
		every = 50 * time.Millisecond
	}
	return every
}

func (p *pool) isExpired(c *conn, now time.Time) bool {
	return p.idleTimeout > 0 && now.Sub(c.lastUsed) > p.idleTimeout
}

// usable checks a connection taken from the idle pool: an expired or
// closed one is discarded, a good one is marked reused.
func (p *pool) usable(c *conn) bool {
	if p.isExpired(c, time.Now()) || c.pc.IsClosed() {
		p.expired.Add(1)
		p.discard(c)
		return false
	}
	c.reused = true
	return true
}

// takeIdle returns a usable idle connection, closing expired ones; nil
// when none is idle (or the pool keeps none).
func (p *pool) takeIdle() *conn {
	for {
		select {
		case c := <-p.idle: // a nil channel is never ready
			if !p.usable(c) {
				continue
			}
			return c
		default:
			return nil
		}
	}
}

// get returns an idle connection or a new one, waiting for a slot when
// maxConns are open.
func (p *pool) get(ctx context.Context) (*conn, error) {
	if c := p.takeIdle(); c != nil {
		return c, nil
	}
	if p.slots != nil {
		for acquired := false; !acquired; {
			select {
			case p.slots <- struct{}{}:
				acquired = true
			case c := <-p.idle: // a nil channel is never ready
				if !p.usable(c) {
					continue
				}
				return c, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	pc, err := p.connect(ctx)
	if err != nil {
		if p.slots != nil {
			<-p.slots
		}
		return nil, err
	}
	return &conn{pc: pc}, nil
}

// put releases c: kept idle when reusable and there is room, else closed.
func (p *pool) put(c *conn, reusable bool) {
	if reusable && p.idle != nil && !c.pc.IsClosed() {
		c.lastUsed = time.Now()
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if !closed {
			select {
			case p.idle <- c:
				return
			default:
			}
		}
	}
	p.discard(c)
}

// discard closes c and frees its slot.
func (p *pool) discard(c *conn) {
	p.closeConn(c)
	if p.slots != nil {
		<-p.slots
	}
}

// closeConn ends the session. The client closes first (Terminate and FIN
// in one segment: TIME_WAIT on the client, see closeFirst) unless
// closeServer is set: then the client sends Terminate and waits for the
// server to close (TIME_WAIT on the server), like an HTTP
// "Connection: close" exchange.
func (p *pool) closeConn(c *conn) {
	if c.pc.IsClosed() {
		c.pc.Close(context.Background()) // already closing: only releases
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	hc, err := c.pc.Hijack()
	if err != nil {
		c.pc.Close(ctx)
		return
	}
	nc := hc.Conn
	nc.SetDeadline(time.Now().Add(p.timeout))
	if !p.closeServer {
		closeFirst(nc)
		return
	}
	if _, err := nc.Write(terminate); err == nil {
		var buf [64]byte
		for {
			if _, err := nc.Read(buf[:]); err != nil {
				break
			}
		}
	}
	nc.Close()
}

// maintain closes expired idle connections and pings idle ones.
func (p *pool) maintain(every time.Duration) {
	defer p.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		n := len(p.idle)
		for i := 0; i < n; i++ {
			var c *conn
			select {
			case c = <-p.idle:
			default:
			}
			if c == nil {
				break
			}
			now := time.Now()
			if p.isExpired(c, now) || c.pc.IsClosed() {
				p.expired.Add(1)
				p.discard(c)
				continue
			}
			last := c.lastUsed
			if c.lastPing.After(last) {
				last = c.lastPing
			}
			if p.heartbeat > 0 && now.Sub(last) >= p.heartbeat {
				ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
				_, err := c.pc.Exec(ctx, "select 1").ReadAll()
				cancel()
				p.pings.Add(1)
				if err != nil {
					p.pingsFailed.Add(1)
					p.discard(c)
					continue
				}
				c.lastPing = time.Now()
			}
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				p.discard(c)
				continue
			}
			select {
			case p.idle <- c:
			default:
				p.discard(c)
			}
		}
	}
}

// close stops maintenance and closes every idle connection; connections in
// use are closed when they are put back.
func (p *pool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	close(p.done)
	p.wg.Wait()
	if p.idle == nil {
		return
	}
	for {
		select {
		case c := <-p.idle:
			p.discard(c)
		default:
			return
		}
	}
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
	tc, ok := nc.(*net.TCPConn)
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
