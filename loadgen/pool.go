package loadgen

import (
	"bufio"
	"context"
	"net"
	"sync"
	"time"
)

// pconn is one client connection with its read buffer.
type pconn struct {
	c        net.Conn
	br       *bufio.Reader
	lastUsed time.Time
	reused   bool
}

// connPool is a per-target connection pool shaped by a client profile:
// at most maxConns open (0: unlimited), at most maxIdle kept idle. A
// connection released while maxIdle are already idle is closed by the client,
// which is how Go's default transport (2 idle per host) churns connections.
type connPool struct {
	dial        func(ctx context.Context) (net.Conn, error)
	idle        chan *pconn   // nil when connections are never reused
	slots       chan struct{} // nil when unlimited
	idleTimeout time.Duration
	bufSize     int

	mu     sync.Mutex
	closed bool
	stop   chan struct{}
}

// startHeartbeat pings every idle connection each interval (a pool
// heartbeat, like HikariCP's keepalive or pgbouncer's server_check): a ping
// that fails discards the connection. It stops when the pool is closed.
func (p *connPool) startHeartbeat(every time.Duration, ping func(*pconn) error, failed func()) {
	if p.idle == nil || every <= 0 {
		return
	}
	p.stop = make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
			for n := len(p.idle); n > 0; n-- {
				var pc *pconn
				select {
				case pc = <-p.idle:
				default:
				}
				if pc == nil {
					break
				}
				if err := ping(pc); err != nil {
					failed()
					p.discard(pc)
					continue
				}
				p.put(pc, true)
			}
		}
	}()
}

func newConnPool(dial func(context.Context) (net.Conn, error), pooled bool, maxConns, maxIdle int, idleTimeout time.Duration) *connPool {
	p := &connPool{dial: dial, idleTimeout: idleTimeout, bufSize: 4096}
	if pooled {
		if maxIdle <= 0 {
			maxIdle = 2 // Go's DefaultMaxIdleConnsPerHost
		}
		if maxConns > 0 && maxIdle > maxConns {
			maxIdle = maxConns
		}
		p.idle = make(chan *pconn, maxIdle)
	}
	if maxConns > 0 {
		p.slots = make(chan struct{}, maxConns)
	}
	return p
}

// takeIdle returns a usable idle connection, closing expired ones.
func (p *connPool) takeIdle() *pconn {
	for {
		select {
		case pc := <-p.idle:
			if !p.usable(pc) {
				continue
			}
			return pc
		default:
			return nil
		}
	}
}

// usable checks a connection taken from the idle pool: an expired one is
// closed, a good one is marked reused.
func (p *connPool) usable(pc *pconn) bool {
	if p.expired(pc) {
		p.discard(pc)
		return false
	}
	pc.reused = true
	return true
}

func (p *connPool) expired(pc *pconn) bool {
	return p.idleTimeout > 0 && time.Since(pc.lastUsed) > p.idleTimeout
}

// get returns an idle connection or dials a new one, waiting for a slot when
// maxConns are open.
func (p *connPool) get(ctx context.Context) (*pconn, error) {
	if p.idle != nil {
		if pc := p.takeIdle(); pc != nil {
			return pc, nil
		}
	}
	if p.slots != nil {
		for acquired := false; !acquired; {
			select {
			case p.slots <- struct{}{}:
				acquired = true
			case pc := <-p.idle: // nil channel never ready
				if !p.usable(pc) {
					continue
				}
				return pc, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return p.dialNew(ctx)
}

// dialNew dials a fresh connection; the caller holds a slot if slots != nil.
func (p *connPool) dialNew(ctx context.Context) (*pconn, error) {
	c, err := p.dial(ctx)
	if err != nil {
		if p.slots != nil {
			<-p.slots
		}
		return nil, err
	}
	return &pconn{c: c, br: bufio.NewReaderSize(c, p.bufSize)}, nil
}

// put releases pc: kept idle when reusable and there is room, else closed.
func (p *connPool) put(pc *pconn, reusable bool) {
	if reusable && p.idle != nil {
		pc.lastUsed = time.Now()
		pc.reused = false
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if !closed {
			select {
			case p.idle <- pc:
				return
			default:
			}
		}
	}
	p.discard(pc)
}

// discard closes pc and frees its slot.
func (p *connPool) discard(pc *pconn) {
	pc.c.Close()
	if p.slots != nil {
		<-p.slots
	}
}

// close closes every idle connection; connections in use are closed when
// they are put back.
func (p *connPool) close() {
	p.mu.Lock()
	if !p.closed && p.stop != nil {
		close(p.stop)
	}
	p.closed = true
	p.mu.Unlock()
	if p.idle == nil {
		return
	}
	for {
		select {
		case pc := <-p.idle:
			p.discard(pc)
		default:
			return
		}
	}
}
