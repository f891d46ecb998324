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

// closer says how a session ends: which side closes first, and whether the
// socket has SO_LINGER 0 (set by the dialer), so that the close is a reset.
type closer struct {
	// timeout bounds the close.
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

// pool is the SQL twin of the HTTP driver's pool, shaped by a client
// profile: at most maxConns open (0: unlimited) and at most maxIdle kept
// idle; a connection released while maxIdle are idle is closed by the
// client, which is how a small idle pool churns. Without pooling every
// write gets a new connection, closed after the write. A maintenance loop
// closes connections idle longer than idleTimeout and, with a heartbeat,
// runs "select 1" on idle connections so that no idle connection is silent
// longer than the heartbeat interval (see sweep).
type pool struct {
	connect     func(ctx context.Context) (*pgconn.PgConn, error)
	idle        chan *conn    // nil when connections are never reused
	slots       chan struct{} // nil when unlimited
	idleTimeout time.Duration
	heartbeat   time.Duration
	// pingAfter is the silence after which a sweep pings an idle
	// connection: heartbeat minus the sweep interval, so that the next
	// sweep never comes after a full heartbeat of silence.
	pingAfter time.Duration
	closer    closer
	timeout   time.Duration
	// now is the clock (time.Now; tests step it by hand).
	now func() time.Time

	mu     sync.Mutex
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup

	pings, pingsFailed, expired atomic.Int64
}

// newPool returns a pool of connections made by connect. With an idle
// timeout or a heartbeat, a maintenance goroutine sweeps the idle
// connections until close.
func newPool(connect func(context.Context) (*pgconn.PgConn, error), cfg poolConfig) *pool {
	p := newPoolClock(connect, cfg, time.Now)
	if every := maintainEvery(cfg.idleTimeout, cfg.heartbeat); every > 0 && p.idle != nil {
		p.wg.Add(1)
		go p.maintain(every)
	}
	return p
}

// newPoolClock is newPool without the maintenance goroutine, on clock now.
func newPoolClock(connect func(context.Context) (*pgconn.PgConn, error), cfg poolConfig, now func() time.Time) *pool {
	p := &pool{connect: connect, idleTimeout: cfg.idleTimeout, heartbeat: cfg.heartbeat, timeout: cfg.timeout,
		closer: cfg.closer, now: now, done: make(chan struct{})}
	if every := maintainEvery(cfg.idleTimeout, cfg.heartbeat); cfg.heartbeat > 0 {
		p.pingAfter = max(cfg.heartbeat-every, 0)
	}
	if cfg.pooled {
		maxIdle := cfg.maxIdle
		if maxIdle <= 0 {
			maxIdle = 2 // as the HTTP path: Go's DefaultMaxIdleConnsPerHost
		}
		if cfg.maxConns > 0 && maxIdle > cfg.maxConns {
			maxIdle = cfg.maxConns
		}
		p.idle = make(chan *conn, maxIdle)
	}
	if cfg.maxConns > 0 {
		p.slots = make(chan struct{}, cfg.maxConns)
	}
	return p
}

// maintainEvery is the interval of the maintenance sweeps: half the idle
// timeout or half the heartbeat, whichever is shorter, at least 50 ms, and
// never longer than the heartbeat. With a heartbeat of h and sweeps every
// e <= h, a sweep pings what has been silent longer than h-e
// (pool.pingAfter): the first sweep that sees a connection silent longer
// than h-e comes at most e later than the one that did not, so the silence
// never exceeds h, and with e = h/2 a connection is pinged once per h.
// (Pinging only what was silent a full h let the silence reach h+e: 1.5 h.)
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
	if heartbeat > 0 && every > heartbeat {
		every = heartbeat
	}
	return every
}

func (p *pool) isExpired(c *conn, now time.Time) bool {
	return p.idleTimeout > 0 && now.Sub(c.lastUsed) > p.idleTimeout
}

// usable checks a connection taken from the idle pool: an expired or
// closed one is discarded, a good one is marked reused.
func (p *pool) usable(c *conn) bool {
	if p.isExpired(c, p.now()) || c.pc.IsClosed() {
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
		c.lastUsed = p.now()
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

// closeConn ends the session of c as the pool's closer says.
func (p *pool) closeConn(c *conn) { p.closer.close(c.pc) }

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

// maintain sweeps the idle connections every interval until close.
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
		p.sweep()
	}
}

// sweep closes expired idle connections and, with a heartbeat, runs
// "select 1" on each idle connection silent longer than pingAfter. Each
// ping runs on its own goroutine (counted in wg), so that a ping that hangs
// (a connection a firewall dropped, until the timeout) delays neither the
// other connections' pings nor the next sweep.
func (p *pool) sweep() {
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
		now := p.now()
		if p.isExpired(c, now) || c.pc.IsClosed() {
			p.expired.Add(1)
			p.discard(c)
			continue
		}
		if p.heartbeat > 0 && now.Sub(c.lastActive()) > p.pingAfter {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.ping(c)
			}()
			continue
		}
		p.release(c)
	}
}

// ping runs "select 1" on c, taken from the idle pool, and puts it back,
// or discards it when the ping fails.
func (p *pool) ping(c *conn) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	_, err := c.pc.Exec(ctx, "select 1").ReadAll()
	cancel()
	p.pings.Add(1)
	if err != nil {
		p.pingsFailed.Add(1)
		p.discard(c)
		return
	}
	c.lastPing = p.now()
	p.release(c)
}

// release puts c, taken from the idle pool for maintenance, back; it is
// closed instead when the pool is closed or its idle room filled meanwhile.
func (p *pool) release(c *conn) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		p.discard(c)
		return
	}
	select {
	case p.idle <- c:
	default:
		p.discard(c)
	}
}

// lastActive is when c last exchanged anything: its last write or ping.
func (c *conn) lastActive() time.Time {
	if c.lastPing.After(c.lastUsed) {
		return c.lastPing
	}
	return c.lastUsed
}

// close stops maintenance, waits for the pings in flight, and closes every
// idle connection; connections in use are closed when they are put back.
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
