// Package connpool is the client connection pool behind the HTTP and SQL
// drivers, shaped by a client profile: at most MaxConns open (0: unlimited)
// and at most MaxIdle kept idle; a connection released while MaxIdle are
// idle is closed by the client, which is how a small idle pool (Go's
// default transport keeps 2 per host) churns connections. Without pooling
// every write gets a new connection, closed after the write.
//
// A maintenance loop closes connections idle longer than IdleTimeout and,
// with a Heartbeat, pings idle connections so that no idle connection is
// silent longer than the heartbeat (see Pool.Sweep). Each ping runs on its
// own goroutine, so that one connection hung behind a firewall until the
// ping's timeout delays no other connection's ping.
//
// The pool knows its connections through hooks (dial, close, alive, ping,
// and a clock), and a connection type C through the Entry it embeds.
package connpool

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Entry is the pool's bookkeeping of one connection; a connection type
// embeds it (see Conn).
type Entry struct {
	// Reused is true when the connection was taken from the idle pool
	// (false for a new connection), until it is put back.
	Reused bool

	lastUsed time.Time // when it was last put back
	lastPing time.Time // when its last heartbeat ping answered
}

// PoolEntry returns e: a type embedding Entry satisfies Conn.
func (e *Entry) PoolEntry() *Entry { return e }

// LastActive is when the connection last exchanged anything: its last
// release by a write, or its last heartbeat ping.
func (e *Entry) LastActive() time.Time {
	if e.lastPing.After(e.lastUsed) {
		return e.lastPing
	}
	return e.lastUsed
}

// Conn is a pooled connection type: a pointer to a struct embedding Entry.
type Conn interface {
	PoolEntry() *Entry
}

// Config is the shape of a pool, from a client profile.
type Config struct {
	// Pooled keeps connections for reuse; false: one per write.
	Pooled bool
	// MaxConns bounds open connections (0: unlimited); MaxIdle bounds idle
	// ones (0: 2, Go's DefaultMaxIdleConnsPerHost).
	MaxConns, MaxIdle int
	// IdleTimeout closes connections idle longer (0: never); Heartbeat
	// pings idle connections so that none stays silent longer (0: never).
	IdleTimeout, Heartbeat time.Duration
	// Manual starts no maintenance goroutine: the owner calls Sweep (a
	// test stepping the clock).
	Manual bool
}

// Hooks are what the pool does with a connection.
type Hooks[C Conn] struct {
	// Dial opens a new connection.
	Dial func(ctx context.Context) (C, error)
	// Close ends a connection's session and closes it.
	Close func(C)
	// Alive reports whether a connection is still open as far as the
	// client knows (nil: always); a dead one is never reused.
	Alive func(C) bool
	// Ping sends a heartbeat on an idle connection and reads its answer,
	// bounded by its own timeout; an error drops the connection. nil: no
	// heartbeat.
	Ping func(C) error
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Pool is a connection pool of connections of type C.
type Pool[C Conn] struct {
	h           Hooks[C]
	idle        chan C        // nil when connections are never reused
	slots       chan struct{} // nil when unlimited
	idleTimeout time.Duration
	heartbeat   time.Duration
	every       time.Duration // maintenance interval (0: none)
	// pingAfter is the silence after which a sweep pings an idle
	// connection: heartbeat minus the sweep interval, so that the next
	// sweep never comes after a full heartbeat of silence.
	pingAfter time.Duration

	mu     sync.Mutex
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup // the maintenance goroutine and pings in flight

	pings, pingsFailed, expired atomic.Int64
}

// New returns a pool; with an idle timeout or a heartbeat (and a Ping
// hook), a maintenance goroutine sweeps the idle connections every
// SweepEvery until Close, unless cfg.Manual.
func New[C Conn](cfg Config, h Hooks[C]) *Pool[C] {
	if h.Now == nil {
		h.Now = time.Now
	}
	if h.Ping == nil {
		cfg.Heartbeat = 0
	}
	p := &Pool[C]{h: h, idleTimeout: cfg.IdleTimeout, heartbeat: cfg.Heartbeat, done: make(chan struct{})}
	if cfg.Pooled {
		maxIdle := cfg.MaxIdle
		if maxIdle <= 0 {
			maxIdle = 2 // Go's DefaultMaxIdleConnsPerHost
		}
		if cfg.MaxConns > 0 && maxIdle > cfg.MaxConns {
			maxIdle = cfg.MaxConns
		}
		p.idle = make(chan C, maxIdle)
		p.every = MaintainEvery(cfg.IdleTimeout, cfg.Heartbeat)
	}
	if cfg.Heartbeat > 0 {
		p.pingAfter = max(cfg.Heartbeat-p.every, 0)
	}
	if cfg.MaxConns > 0 {
		p.slots = make(chan struct{}, cfg.MaxConns)
	}
	if p.every > 0 && !cfg.Manual {
		p.wg.Add(1)
		go p.maintain()
	}
	return p
}

// MaintainEvery is the interval of the maintenance sweeps: half the idle
// timeout or half the heartbeat, whichever is shorter, at least 50 ms, and
// never longer than the heartbeat. With a heartbeat of h and sweeps every
// e <= h, a sweep pings what has been silent longer than h-e
// (Pool.PingAfter): the first sweep that sees a connection silent longer
// than h-e comes at most e later than the one that did not, so the silence
// never exceeds h, and with e = h/2 a connection is pinged once per h.
// (Pinging only what was silent a full h let the silence reach h+e: 1.5 h.)
func MaintainEvery(idleTimeout, heartbeat time.Duration) time.Duration {
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

// Pooled reports whether the pool keeps connections for reuse.
func (p *Pool[C]) Pooled() bool { return p.idle != nil }

// SweepEvery is the interval of the maintenance sweeps (0: none).
func (p *Pool[C]) SweepEvery() time.Duration { return p.every }

// PingAfter is the silence after which a sweep pings an idle connection.
func (p *Pool[C]) PingAfter() time.Duration { return p.pingAfter }

// Idle returns how many connections are idle now.
func (p *Pool[C]) Idle() int { return len(p.idle) }

// Pings returns how many heartbeat pings ran, and how many failed (their
// connection was dropped).
func (p *Pool[C]) Pings() (sent, failed int64) { return p.pings.Load(), p.pingsFailed.Load() }

// Expired returns how many idle connections were closed for their idle
// timeout or found closed.
func (p *Pool[C]) Expired() int64 { return p.expired.Load() }

func (p *Pool[C]) alive(c C) bool { return p.h.Alive == nil || p.h.Alive(c) }

func (p *Pool[C]) isExpired(c C, now time.Time) bool {
	return p.idleTimeout > 0 && now.Sub(c.PoolEntry().lastUsed) > p.idleTimeout
}

// usable checks a connection taken from the idle pool: an expired or dead
// one is discarded, a good one is marked reused.
func (p *Pool[C]) usable(c C) bool {
	if p.isExpired(c, p.h.Now()) || !p.alive(c) {
		p.expired.Add(1)
		p.Discard(c)
		return false
	}
	c.PoolEntry().Reused = true
	return true
}

// TakeIdle returns a usable idle connection, closing expired ones; ok is
// false when none is idle (or the pool keeps none). It allocates nothing.
func (p *Pool[C]) TakeIdle() (c C, ok bool) {
	for {
		select {
		case c := <-p.idle: // a nil channel is never ready
			if !p.usable(c) {
				continue
			}
			return c, true
		default:
			return c, false
		}
	}
}

// Get returns an idle connection or dials a new one, waiting for a slot
// when MaxConns are open.
func (p *Pool[C]) Get(ctx context.Context) (C, error) {
	if c, ok := p.TakeIdle(); ok {
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
				var zero C
				return zero, ctx.Err()
			}
		}
	}
	c, err := p.h.Dial(ctx)
	if err != nil {
		if p.slots != nil {
			<-p.slots
		}
		return c, err
	}
	return c, nil
}

// Put releases c: kept idle when reusable, alive and there is room, else
// closed.
func (p *Pool[C]) Put(c C, reusable bool) {
	e := c.PoolEntry()
	e.Reused = false
	if reusable && p.idle != nil && p.alive(c) {
		e.lastUsed = p.h.Now()
		if !p.isClosed() {
			select {
			case p.idle <- c:
				return
			default:
			}
		}
	}
	p.Discard(c)
}

// Discard closes c and frees its slot.
func (p *Pool[C]) Discard(c C) {
	p.h.Close(c)
	if p.slots != nil {
		<-p.slots
	}
}

func (p *Pool[C]) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// maintain sweeps the idle connections every interval until Close.
func (p *Pool[C]) maintain() {
	defer p.wg.Done()
	t := time.NewTicker(p.every)
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

// Sweep runs one maintenance pass now and waits for its pings: it closes
// expired idle connections and, with a heartbeat, pings each idle
// connection silent longer than PingAfter. The maintenance goroutine runs
// the same pass every SweepEvery, without waiting for the pings.
func (p *Pool[C]) Sweep() {
	p.sweep()
	p.wg.Wait()
}

// sweep is one maintenance pass. Each ping runs on its own goroutine
// (counted in wg), so that a ping that hangs (a connection a firewall
// dropped, until the timeout) delays neither the other connections' pings
// nor the next sweep.
func (p *Pool[C]) sweep() {
	n := len(p.idle)
	for i := 0; i < n; i++ {
		var c C
		select {
		case c = <-p.idle:
		default:
			return
		}
		now := p.h.Now()
		if p.isExpired(c, now) || !p.alive(c) {
			p.expired.Add(1)
			p.Discard(c)
			continue
		}
		if p.heartbeat > 0 && now.Sub(c.PoolEntry().LastActive()) > p.pingAfter {
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

// ping pings c, taken from the idle pool, and puts it back, or discards it
// when the ping fails.
func (p *Pool[C]) ping(c C) {
	err := p.h.Ping(c)
	p.pings.Add(1)
	if err != nil {
		p.pingsFailed.Add(1)
		p.Discard(c)
		return
	}
	c.PoolEntry().lastPing = p.h.Now()
	p.release(c)
}

// release puts c, taken from the idle pool for maintenance, back; it is
// closed instead when the pool is closed or its idle room filled meanwhile.
func (p *Pool[C]) release(c C) {
	if p.isClosed() {
		p.Discard(c)
		return
	}
	select {
	case p.idle <- c:
	default:
		p.Discard(c)
	}
}

// Close stops maintenance, waits for the pings in flight, and closes every
// idle connection; connections in use are closed when they are put back.
// It is safe to call more than once.
func (p *Pool[C]) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	close(p.done)
	p.wg.Wait()
	for {
		select {
		case c := <-p.idle: // a nil channel is never ready
			p.Discard(c)
		default:
			return
		}
	}
}
