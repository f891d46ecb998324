package pg

import (
	"context"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/pgsink"
	"github.com/loadcap/loadcap/profiles"
)

func testDriver(t *testing.T, p *profiles.Client, s *pgsink.Server) *Driver {
	t.Helper()
	spec, err := loadgen.ParseTarget(s.URL() + "&table=opts")
	if err != nil {
		t.Fatal(err)
	}
	g, err := loadgen.NewGenerator(loadgen.DefaultGenConfig())
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDriver(context.Background(), spec, p, g, Options{Batch: 5, Timeout: 5 * time.Second, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// A profile's keepalive and TCP_USER_TIMEOUT settings are on the SQL
// connections, read back from the kernel with getsockopt (this exercises
// loadgen.Dialer as pgx's DialFunc).
func TestProfileSocketOptions(t *testing.T) {
	s, err := pgsink.Start("127.0.0.1:0", pgsink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := &profiles.Client{Name: "opts", Conn: profiles.ConnPool, PoolSize: 2, IdleSize: 2, DialMode: profiles.DialConnect,
		KeepAlive: true, KeepAliveIdle: profiles.Duration(7 * time.Second), KeepAliveInterval: profiles.Duration(3 * time.Second),
		KeepAliveCount: 4, UserTimeout: profiles.Duration(9 * time.Second)}
	d := testDriver(t, p, s)
	c, err := d.pool.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer d.pool.Put(c, true)
	tc, ok := tcpConn(c.pc.Conn())
	if !ok {
		t.Fatalf("connection is %T, want *net.TCPConn", c.pc.Conn())
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	rc.Control(func(fd uintptr) {
		for name, o := range map[string][2]int{
			"SO_KEEPALIVE":     {unix.SOL_SOCKET, unix.SO_KEEPALIVE},
			"TCP_KEEPIDLE":     {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
			"TCP_KEEPINTVL":    {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
			"TCP_KEEPCNT":      {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
			"TCP_USER_TIMEOUT": {unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT},
		} {
			v, err := unix.GetsockoptInt(int(fd), o[0], o[1])
			if err != nil {
				t.Errorf("getsockopt %s: %v", name, err)
			}
			got[name] = v
		}
	})
	want := map[string]int{"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 7, "TCP_KEEPINTVL": 3, "TCP_KEEPCNT": 4, "TCP_USER_TIMEOUT": 9000}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
	// A profile without keepalive really has none (Go would enable 15 s).
	p2 := *p
	p2.KeepAlive, p2.UserTimeout = false, 0
	d2 := testDriver(t, &p2, s)
	c2, err := d2.pool.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer d2.pool.Put(c2, true)
	rc2, _ := c2.pc.Conn().(syscall.Conn).SyscallConn()
	rc2.Control(func(fd uintptr) {
		if v, _ := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE); v != 0 {
			t.Errorf("SO_KEEPALIVE = %d without keepalive in the profile", v)
		}
	})
}

// The pool heartbeat runs "select 1" on idle connections and keeps them.
func TestPoolHeartbeat(t *testing.T) {
	s, err := pgsink.Start("127.0.0.1:0", pgsink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := &profiles.Client{Name: "hb", Conn: profiles.ConnPool, PoolSize: 4, IdleSize: 4, DialMode: profiles.DialConnect,
		Heartbeat: profiles.Duration(100 * time.Millisecond)}
	d := testDriver(t, p, s)
	res := d.NewSession().Write(context.Background(), 0, time.Now())
	if res.Class != "" {
		t.Fatalf("write: %s %v", res.Class, res.Err)
	}
	before := s.Stats().Statements
	time.Sleep(450 * time.Millisecond)
	sent, failed := d.Heartbeats()
	if sent < 2 || failed != 0 {
		t.Fatalf("heartbeats sent=%d failed=%d over 450 ms idle at 100 ms", sent, failed)
	}
	if got := s.Stats().Statements - before; got < sent {
		t.Fatalf("sink saw %d statements, %d heartbeats sent", got, sent)
	}
	if d.NewConnections() != 1 || s.Stats().Active != 1 {
		t.Fatalf("heartbeat churned connections: opened %d, open %d", d.NewConnections(), s.Stats().Active)
	}
}
