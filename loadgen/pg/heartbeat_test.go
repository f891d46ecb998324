package pg

import (
	"context"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/profiles"
)

// The heartbeat's promise, on a clock the test steps: sweeping every
// maintainEvery, no idle connection is ever silent longer than the
// heartbeat, wherever in a sweep interval it was released. Silence is the
// time from a connection's last activity (its release, or its last ping) to
// its next ping. The pings are real ("select 1" to the embedded sink).
func TestHeartbeatSilenceBound(t *testing.T) {
	s, err := StartSink("127.0.0.1:0", SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg, err := pgconn.ParseConfig(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	connect := func(ctx context.Context) (*pgconn.PgConn, error) { return pgconn.ConnectConfig(ctx, cfg) }
	for _, h := range []time.Duration{30 * time.Second, time.Second, 70 * time.Millisecond, 30 * time.Millisecond} {
		every := maintainEvery(0, h)
		if every <= 0 || every > h {
			t.Fatalf("heartbeat %s: sweeps every %s", h, every)
		}
		now := time.Unix(1_000_000, 0)
		p := newPoolClock(connect, poolConfig{pooled: true, maxConns: 4, maxIdle: 4, heartbeat: h,
			closer: closer{timeout: 5 * time.Second}}, func() time.Time { return now })
		var conns []*conn
		for i := 0; i < 4; i++ {
			c, err := p.get(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		// Released at 0, 1/4, 1/2 and 3/4 of a sweep interval after a
		// sweep (the worst case is just after one).
		tick := now
		last := map[*conn]time.Time{}
		for i, c := range conns {
			now = tick.Add(time.Duration(i) * every / 4)
			if i == 0 {
				now = now.Add(time.Millisecond)
			}
			p.put(c, true)
			last[c] = now
		}
		var worst time.Duration
		pings := map[*conn]int{}
		for k := 1; k <= 40; k++ {
			now = tick.Add(time.Duration(k) * every)
			p.sweep()
			p.wg.Wait() // its pings
			for _, c := range conns {
				if a := c.lastActive(); a.After(last[c]) {
					worst = max(worst, a.Sub(last[c]))
					last[c] = a
					pings[c]++
				}
				// Silent since last[c]: by now, at most h.
				if gap := now.Sub(last[c]); gap > h {
					t.Fatalf("heartbeat %s, sweeps every %s: a connection silent %s at a sweep", h, every, gap)
				}
			}
		}
		if p.pingsFailed.Load() != 0 || len(p.idle) != 4 {
			t.Fatalf("heartbeat %s: %d pings failed, %d idle of 4", h, p.pingsFailed.Load(), len(p.idle))
		}
		// Sweeping every h/2, the bound is kept with one ping per
		// connection per heartbeat, not one per sweep: 40 sweeps, 20.
		if every == h/2 {
			for _, c := range conns {
				if n := pings[c]; n > 21 {
					t.Errorf("heartbeat %s: %d pings of one connection in 40 sweeps of %s, want 20", h, n, every)
				}
			}
		}
		t.Logf("heartbeat %s: sweeps every %s, ping after %s silent; longest silence %s, pings %d", h, every, p.pingAfter, worst, p.pings.Load())
		if worst > h {
			t.Fatalf("heartbeat %s: a connection was silent %s", h, worst)
		}
		p.close()
	}
}

// activityConn records when anything was sent or received.
type activityConn struct {
	net.Conn
	mu *sync.Mutex
	at *[]time.Time
}

func (c activityConn) mark() {
	c.mu.Lock()
	*c.at = append(*c.at, time.Now())
	c.mu.Unlock()
}

func (c activityConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.mark()
	}
	return n, err
}

func (c activityConn) Write(b []byte) (int, error) {
	c.mark()
	return c.Conn.Write(b)
}

// The same bound on the wire, in real time, through the driver: the
// longest silence between bytes sent or received on an idle pooled
// connection, until the end of the observation, stays within the
// heartbeat plus a scheduling allowance of a third of it (the old
// schedule, pinging only after a full heartbeat of silence on a
// half-heartbeat tick, kept it near 1.5 heartbeats).
func TestHeartbeatWireSilence(t *testing.T) {
	s, err := StartSink("127.0.0.1:0", SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const h = 400 * time.Millisecond
	p := &profiles.Client{Name: "hb", Conn: profiles.ConnPool, PoolSize: 3, IdleSize: 3, DialMode: profiles.DialConnect,
		Heartbeat: profiles.Duration(h)}
	d := testDriver(t, p, s)
	var wire wireLog
	d.cfg.DialFunc = wire.dialFunc(d.dialer.DialContext)
	var held []*conn
	for i := 0; i < 3; i++ {
		c, err := d.pool.get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	for i, c := range held {
		if i > 0 {
			time.Sleep(h / 7) // released at different points of a sweep interval
		}
		// Released right after an exchange, as a write releases it.
		if _, err := c.pc.Exec(context.Background(), "select 1").ReadAll(); err != nil {
			t.Fatal(err)
		}
		d.pool.put(c, true)
	}
	time.Sleep(5 * h)
	conns, worst := wire.longestSilence(time.Now())
	sent, failed := d.Heartbeats()
	t.Logf("heartbeat %s: %d connections, %d pings (%d failed), longest silence %s", h, conns, sent, failed, worst)
	if conns != 3 || failed != 0 || sent < 3*3 {
		t.Fatalf("%d connections, %d pings, %d failed: want 3 connections pinged about every %s", conns, sent, failed, h)
	}
	if worst > h+h/3 {
		t.Fatalf("an idle connection was silent %s with a heartbeat of %s", worst, h)
	}
}

// stallListener hands the sink connections that answer the start-up and
// then never another message: the sink's writes block until Close.
type stallListener struct {
	net.Listener
	closed chan struct{}
}

func (l *stallListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &testservers.StallConn{Conn: c, Closed: l.closed}, nil
}

func (l *stallListener) Close() error {
	select {
	case <-l.closed:
	default:
		close(l.closed)
	}
	return l.Listener.Close()
}

// A heartbeat that hangs (a server that stopped answering, or a connection
// a firewall dropped) holds only its own connection: the other idle
// connections are still pinged on time, their silence within the heartbeat
// (plus a third of it for scheduling), while the hanging ping fails at the
// timeout and its connection is dropped.
func TestHeartbeatHangingPingDelaysNoOther(t *testing.T) {
	s, err := StartSink("127.0.0.1:0", SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl := &stallListener{Listener: ln, closed: make(chan struct{})}
	stalled := NewSink(SinkOptions{})
	go stalled.Serve(sl)
	defer func() { sl.Close(); stalled.Close() }()

	good, err := pgconn.ParseConfig(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	var wire wireLog
	good.DialFunc = wire.dialFunc((&net.Dialer{}).DialContext)
	bad, err := pgconn.ParseConfig("postgres://loadcap@" + ln.Addr().String() + "/loadcap?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	connect := func(ctx context.Context) (*pgconn.PgConn, error) {
		n++
		if n == 1 {
			return pgconn.ConnectConfig(ctx, bad)
		}
		return pgconn.ConnectConfig(ctx, good)
	}
	const h, timeout = 400 * time.Millisecond, 1500 * time.Millisecond
	p := newPool(connect, poolConfig{pooled: true, maxConns: 3, maxIdle: 3, heartbeat: h, closer: closer{timeout: timeout}})
	var held []*conn
	for i := 0; i < 3; i++ {
		c, err := p.get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	p.put(held[0], true) // its first heartbeat hangs
	for _, c := range held[1:] {
		time.Sleep(h / 7)
		if _, err := c.pc.Exec(context.Background(), "select 1").ReadAll(); err != nil {
			t.Fatal(err)
		}
		p.put(c, true)
	}
	time.Sleep(5 * h)
	conns, worst := wire.longestSilence(time.Now())
	p.close() // waits for the hanging ping's timeout
	t.Logf("heartbeat %s: %d pings, %d failed; longest silence of the answering connections %s", h, p.pings.Load(), p.pingsFailed.Load(), worst)
	if conns != 2 || p.pingsFailed.Load() != 1 {
		t.Fatalf("%d answering connections, %d pings failed: want 2 and the hanging one", conns, p.pingsFailed.Load())
	}
	if worst > h+h/3 {
		t.Fatalf("an answering connection was silent %s beside a hanging ping, heartbeat %s", worst, h)
	}
}

// wireLog records when each connection it dials is heard on the wire.
type wireLog struct {
	mu    sync.Mutex
	times []*[]time.Time
}

// dialFunc dials with dial and logs the connection's traffic.
func (w *wireLog) dialFunc(dial func(ctx context.Context, network, addr string) (net.Conn, error)) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		at := &[]time.Time{}
		w.mu.Lock()
		w.times = append(w.times, at)
		w.mu.Unlock()
		return activityConn{Conn: nc, mu: &w.mu, at: at}, nil
	}
}

// longestSilence returns the number of connections dialled and the
// longest gap between consecutive times one of them was heard, up to end.
func (w *wireLog) longestSilence(end time.Time) (conns int, worst time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, at := range w.times {
		ts := append(append([]time.Time(nil), *at...), end)
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		for i := 1; i < len(ts); i++ {
			worst = max(worst, ts[i].Sub(ts[i-1]))
		}
	}
	return len(w.times), worst
}
