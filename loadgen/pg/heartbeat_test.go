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
	"github.com/loadcap/loadcap/loadgen/pgsink"
	"github.com/loadcap/loadcap/profiles"
)

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

// The heartbeat's bound (no idle connection silent longer than the
// heartbeat; proven on a stepped clock in internal/connpool) on the wire,
// in real time, through the driver: the
// longest silence between bytes sent or received on an idle pooled
// connection, until the end of the observation, stays within the
// heartbeat plus a scheduling allowance of a third of it (the old
// schedule, pinging only after a full heartbeat of silence on a
// half-heartbeat tick, kept it near 1.5 heartbeats).
func TestHeartbeatWireSilence(t *testing.T) {
	s, err := pgsink.Start("127.0.0.1:0", pgsink.Options{})
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
		c, err := d.pool.Get(context.Background())
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
		d.pool.Put(c, true)
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
	s, err := pgsink.Start("127.0.0.1:0", pgsink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl := &stallListener{Listener: ln, closed: make(chan struct{})}
	stalled := pgsink.New(pgsink.Options{})
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
		c, err := p.Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	p.Put(held[0], true) // its first heartbeat hangs
	for _, c := range held[1:] {
		time.Sleep(h / 7)
		if _, err := c.pc.Exec(context.Background(), "select 1").ReadAll(); err != nil {
			t.Fatal(err)
		}
		p.Put(c, true)
	}
	time.Sleep(5 * h)
	conns, worst := wire.longestSilence(time.Now())
	p.Close() // waits for the hanging ping's timeout
	sent, failed := p.Pings()
	t.Logf("heartbeat %s: %d pings, %d failed; longest silence of the answering connections %s", h, sent, failed, worst)
	if conns != 2 || failed != 1 {
		t.Fatalf("%d answering connections, %d pings failed: want 2 and the hanging one", conns, failed)
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
