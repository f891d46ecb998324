package connpool_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/connpool"
)

// tconn is a pooled end of a net.Pipe; its peer answers "ping" with "pong"
// unless it hangs (a connection a firewall dropped: nothing comes back).
type tconn struct {
	connpool.Entry
	net.Conn
	peer   net.Conn
	closed atomic.Bool
}

// peerClosed reports whether the client closed the connection: the peer
// reads EOF (bounded wait).
func (c *tconn) peerClosed(t *testing.T) bool {
	t.Helper()
	c.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	_, err := c.peer.Read(b[:])
	return errors.Is(err, io.EOF)
}

// harness dials pipes, pings them with a real exchange, and runs on a
// clock the test steps (or the real one).
type harness struct {
	mu      sync.Mutex
	now     time.Time
	real    bool
	conns   []*tconn
	hang    func(n int) bool // the n-th dialled connection (from 0) hangs
	dialErr error
	// release unblocks the hanging peers: they answer nothing and close.
	release chan struct{}
	timeout time.Duration
}

func newHarness() *harness {
	return &harness{now: time.Unix(1_000_000, 0), release: make(chan struct{}), timeout: 5 * time.Second, hang: func(int) bool { return false }}
}

func (h *harness) clock() time.Time {
	if h.real {
		return time.Now()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now
}

func (h *harness) set(t time.Time) { h.mu.Lock(); h.now = t; h.mu.Unlock() }

func (h *harness) hooks() connpool.Hooks[*tconn] {
	return connpool.Hooks[*tconn]{
		Dial: func(ctx context.Context) (*tconn, error) {
			if h.dialErr != nil {
				return nil, h.dialErr
			}
			client, server := net.Pipe()
			c := &tconn{Conn: client, peer: server}
			h.mu.Lock()
			n := len(h.conns)
			h.conns = append(h.conns, c)
			h.mu.Unlock()
			if h.hang(n) {
				go func() { <-h.release; server.Close() }()
			} else {
				go echo(server)
			}
			return c, nil
		},
		Close: func(c *tconn) { c.closed.Store(true); c.Conn.Close() },
		Alive: func(c *tconn) bool { return !c.closed.Load() },
		Ping: func(c *tconn) error {
			c.SetDeadline(time.Now().Add(h.timeout))
			if _, err := c.Write([]byte("ping")); err != nil {
				return err
			}
			var b [4]byte
			if _, err := io.ReadFull(c, b[:]); err != nil {
				return err
			}
			if string(b[:]) != "pong" {
				return errors.New("bad answer " + string(b[:]))
			}
			return nil
		},
		Now: h.clock,
	}
}

// echo answers each 4-byte ping with "pong" until the pipe closes.
func echo(c net.Conn) {
	var b [4]byte
	for {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return
		}
		if _, err := c.Write([]byte("pong")); err != nil {
			return
		}
	}
}

func get(t *testing.T, p *connpool.Pool[*tconn], n int) []*tconn {
	t.Helper()
	var out []*tconn
	for i := 0; i < n; i++ {
		c, err := p.Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// The heartbeat's promise, on a clock the test steps: sweeping every
// MaintainEvery, no idle connection is ever silent longer than the
// heartbeat, wherever in a sweep interval it was released. Silence is the
// time from a connection's last activity (its release, or its last ping) to
// its next ping. The pings are real exchanges on the connections.
func TestHeartbeatSilenceBound(t *testing.T) {
	for _, hb := range []time.Duration{30 * time.Second, time.Second, 70 * time.Millisecond, 30 * time.Millisecond} {
		every := connpool.MaintainEvery(0, hb)
		if every <= 0 || every > hb {
			t.Fatalf("heartbeat %s: sweeps every %s", hb, every)
		}
		h := newHarness()
		p := connpool.New(connpool.Config{Pooled: true, MaxConns: 4, MaxIdle: 4, Heartbeat: hb, Manual: true}, h.hooks())
		if p.SweepEvery() != every {
			t.Fatalf("heartbeat %s: pool sweeps every %s, MaintainEvery says %s", hb, p.SweepEvery(), every)
		}
		conns := get(t, p, 4)
		// Released at 0, 1/4, 1/2 and 3/4 of a sweep interval after a
		// sweep (the worst case is just after one).
		tick := h.clock()
		last := map[*tconn]time.Time{}
		for i, c := range conns {
			at := tick.Add(time.Duration(i) * every / 4)
			if i == 0 {
				at = at.Add(time.Millisecond)
			}
			h.set(at)
			p.Put(c, true)
			last[c] = at
		}
		var worst time.Duration
		pings := map[*tconn]int{}
		for k := 1; k <= 40; k++ {
			now := tick.Add(time.Duration(k) * every)
			h.set(now)
			p.Sweep() // and its pings
			for _, c := range conns {
				if a := c.LastActive(); a.After(last[c]) {
					worst = max(worst, a.Sub(last[c]))
					last[c] = a
					pings[c]++
				}
				// Silent since last[c]: by now, at most hb.
				if gap := now.Sub(last[c]); gap > hb {
					t.Fatalf("heartbeat %s, sweeps every %s: a connection silent %s at a sweep", hb, every, gap)
				}
			}
		}
		sent, failed := p.Pings()
		if failed != 0 || p.Idle() != 4 {
			t.Fatalf("heartbeat %s: %d pings failed, %d idle of 4", hb, failed, p.Idle())
		}
		// Sweeping every hb/2, the bound is kept with one ping per
		// connection per heartbeat, not one per sweep: 40 sweeps, 20.
		if every == hb/2 {
			for _, c := range conns {
				if n := pings[c]; n > 21 {
					t.Errorf("heartbeat %s: %d pings of one connection in 40 sweeps of %s, want 20", hb, n, every)
				}
			}
		}
		t.Logf("heartbeat %s: sweeps every %s, ping after %s silent; longest silence %s, pings %d", hb, every, p.PingAfter(), worst, sent)
		if worst > hb {
			t.Fatalf("heartbeat %s: a connection was silent %s", hb, worst)
		}
		p.Close()
		for _, c := range conns {
			if !c.peerClosed(t) {
				t.Fatalf("heartbeat %s: an idle connection left open by Close", hb)
			}
		}
	}
}

// A ping that hangs (a connection a firewall dropped, until the timeout)
// holds only its own connection: the other idle connections go on being
// pinged by the maintenance goroutine while it hangs; it then fails and
// its connection is dropped. Close waits for the ping in flight.
func TestHangingPingDelaysNoOther(t *testing.T) {
	h := newHarness()
	h.real = true
	h.hang = func(n int) bool { return n == 0 }
	h.timeout = time.Hour // the hang ends when the test releases it
	const hb = 100 * time.Millisecond
	p := connpool.New(connpool.Config{Pooled: true, MaxConns: 3, MaxIdle: 3, Heartbeat: hb}, h.hooks())
	conns := get(t, p, 3)
	for _, c := range conns {
		p.Put(c, true)
	}
	// Bounded wait: the answering connections are pinged again and again
	// while the first ping hangs (serial pings would stop at the hang).
	deadline := time.Now().Add(30 * time.Second)
	for {
		if sent, _ := p.Pings(); sent >= 10 {
			break
		}
		if time.Now().After(deadline) {
			sent, _ := p.Pings()
			t.Fatalf("%d pings answered in 30 s beside a hanging one, want 10", sent)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, failed := p.Pings(); failed != 0 || conns[0].closed.Load() {
		t.Fatalf("the hanging ping ended before its timeout")
	}
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a ping was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	conns[0].SetDeadline(time.Now()) // the ping's timeout expires
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the hanging ping failed")
	}
	close(h.release)
	if _, failed := p.Pings(); failed != 1 {
		t.Fatalf("%d pings failed, want the hanging one", failed)
	}
	for i, c := range conns {
		if !c.closed.Load() {
			t.Fatalf("connection %d not closed by Close", i)
		}
	}
	if p.Idle() != 0 {
		t.Fatalf("%d idle after Close", p.Idle())
	}
}

// Idle connections older than the idle timeout are closed by a sweep (a
// pool that is not used any more still closes them) and never reused.
func TestIdleTimeout(t *testing.T) {
	h := newHarness()
	const idle = 10 * time.Second
	p := connpool.New(connpool.Config{Pooled: true, MaxIdle: 3, IdleTimeout: idle, Manual: true}, h.hooks())
	if p.SweepEvery() != idle/2 {
		t.Fatalf("sweeps every %s, want %s", p.SweepEvery(), idle/2)
	}
	conns := get(t, p, 3)
	t0 := h.clock()
	p.Put(conns[0], true)
	h.set(t0.Add(idle / 2))
	p.Put(conns[1], true)
	p.Put(conns[2], true)
	h.set(t0.Add(idle + time.Millisecond))
	p.Sweep()
	if p.Expired() != 1 || p.Idle() != 2 || !conns[0].peerClosed(t) {
		t.Fatalf("after one idle timeout: %d expired, %d idle; want the first closed, 2 idle", p.Expired(), p.Idle())
	}
	// Taken after its timeout: closed, not reused.
	h.set(t0.Add(idle + idle/2 + time.Millisecond))
	if c, ok := p.TakeIdle(); ok {
		t.Fatalf("took an expired connection (reused %v)", c.Reused)
	}
	if p.Expired() != 3 || !conns[1].peerClosed(t) || !conns[2].peerClosed(t) {
		t.Fatalf("%d expired, want 3", p.Expired())
	}
	if sent, _ := p.Pings(); sent != 0 {
		t.Fatalf("%d pings without a heartbeat", sent)
	}
	p.Close()
}

// The pool's shape: MaxConns open at most (a Get waits for a slot, until
// its context ends), MaxIdle kept (the one beyond is closed by the
// client), reuse marked, dead connections never reused, and one connection
// per write without pooling.
func TestShape(t *testing.T) {
	h := newHarness()
	p := connpool.New(connpool.Config{Pooled: true, MaxConns: 2, MaxIdle: 1}, h.hooks())
	defer p.Close()
	a := get(t, p, 2)
	if a[0].Reused || a[1].Reused {
		t.Fatal("a new connection marked reused")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	if _, err := p.Get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third Get with 2 open: %v, want the context's deadline", err)
	}
	cancel()
	got := make(chan *tconn)
	go func() {
		c, err := p.Get(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	p.Put(a[0], true)
	var c *tconn
	select {
	case c = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("a waiting Get did not get the released connection")
	}
	if c != a[0] || !c.Reused {
		t.Fatalf("the waiting Get: %p reused %v, want the released connection, reused", c, c.Reused)
	}
	p.Put(c, true)
	p.Put(a[1], true) // beyond MaxIdle 1: closed
	if p.Idle() != 1 || !a[1].peerClosed(t) {
		t.Fatalf("%d idle, want 1 and the second closed", p.Idle())
	}
	c, ok := p.TakeIdle()
	if !ok || c != a[0] || !c.Reused {
		t.Fatal("TakeIdle did not return the idle connection")
	}
	c.closed.Store(true) // found closed: not kept
	p.Put(c, true)
	if p.Idle() != 0 {
		t.Fatal("a dead connection was kept idle")
	}
	if n := len(h.conns); n != 2 {
		t.Fatalf("%d dialled, want 2", n)
	}
	// A refused dial frees its slot.
	h.dialErr = errors.New("refused")
	for i := 0; i < 3; i++ {
		if _, err := p.Get(context.Background()); err == nil {
			t.Fatal("dial error lost")
		}
	}

	q := connpool.New(connpool.Config{Pooled: false}, newHarness().hooks())
	defer q.Close()
	c1 := get(t, q, 1)[0]
	q.Put(c1, true)
	if q.Pooled() || q.Idle() != 0 || !c1.peerClosed(t) {
		t.Fatal("without pooling a released connection is not closed")
	}
	if _, ok := q.TakeIdle(); ok {
		t.Fatal("TakeIdle without pooling returned a connection")
	}

	d := connpool.New(connpool.Config{Pooled: true}, newHarness().hooks()) // MaxIdle 0: 2
	defer d.Close()
	for _, c := range get(t, d, 3) {
		d.Put(c, true)
	}
	if d.Idle() != 2 {
		t.Fatalf("default idle room %d, want 2", d.Idle())
	}
}

func TestMaintainEvery(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct{ idle, hb, want time.Duration }{
		{0, 0, 0},
		{10 * time.Second, 0, 5 * time.Second},
		{0, time.Second, 500 * ms},
		{time.Second, 10 * time.Second, 500 * ms},
		{0, 60 * ms, 50 * ms}, // at least 50 ms
		{0, 30 * ms, 30 * ms}, // never longer than the heartbeat
		{40 * ms, 0, 50 * ms},
	} {
		if got := connpool.MaintainEvery(c.idle, c.hb); got != c.want {
			t.Errorf("MaintainEvery(%s, %s) = %s, want %s", c.idle, c.hb, got, c.want)
		}
	}
}

// Taking an idle connection and putting it back allocates nothing: the
// HTTP driver's keep-alive write is allocation-free.
func TestTakePutZeroAllocs(t *testing.T) {
	p := connpool.New(connpool.Config{Pooled: true, MaxConns: 1}, newHarness().hooks())
	defer p.Close()
	p.Put(get(t, p, 1)[0], true)
	if a := testing.AllocsPerRun(1000, func() {
		c, ok := p.TakeIdle()
		if !ok {
			t.Fatal("no idle connection")
		}
		p.Put(c, true)
	}); a != 0 {
		t.Fatalf("TakeIdle and Put allocate %.1f times, want 0", a)
	}
}
