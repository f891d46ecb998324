package loadgen

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loadcap/loadcap/profiles"
)

// pingServer answers writes 204 (the first three only once three are
// waiting, so that the pool opens three connections) and /ping 204,
// counting the pings per connection, except on its first connection, whose
// pings it never answers (a connection hung behind a firewall) until
// release is closed.
type pingServer struct {
	ln      net.Listener
	release chan struct{}
	three   chan struct{}
	mu      sync.Mutex
	writes  int
	pings   map[int]int
	conns   atomic.Int64
}

func startPingServer(t *testing.T) *pingServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &pingServer{ln: ln, release: make(chan struct{}), three: make(chan struct{}), pings: map[int]int{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c, int(s.conns.Add(1))-1)
		}
	}()
	return s
}

func (s *pingServer) serve(c net.Conn, n int) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		line, err := readRequest(br)
		if err != nil {
			return
		}
		if strings.HasPrefix(line, "GET /ping") {
			if n == 0 {
				<-s.release // hangs, then drops the connection
				return
			}
			s.mu.Lock()
			s.pings[n]++
			s.mu.Unlock()
		} else {
			s.mu.Lock()
			s.writes++
			if s.writes == 3 {
				close(s.three)
			}
			s.mu.Unlock()
			select {
			case <-s.three:
			case <-time.After(10 * time.Second):
			}
		}
		if _, err := io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n"); err != nil {
			return
		}
	}
}

func (s *pingServer) minPings() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := -1
	for n := 1; n <= 2; n++ {
		if m < 0 || s.pings[n] < m {
			m = s.pings[n]
		}
	}
	return m
}

// An HTTP heartbeat that hangs (a connection a firewall dropped, until the
// write timeout) holds only its own connection: the other idle connections
// are pinged again and again meanwhile (the heartbeat used to ping one
// connection after another, so one hang stalled every ping), and Close
// waits for the hanging ping, which then counts as a failed heartbeat.
func TestHTTPHeartbeatHangingPingDelaysNoOther(t *testing.T) {
	s := startPingServer(t)
	spec, err := ParseTarget("http://" + s.ln.Addr().String() + "/write?db=x")
	if err != nil {
		t.Fatal(err)
	}
	g, _ := NewGenerator(DefaultGenConfig())
	p := &profiles.Client{Name: "hb", Conn: profiles.ConnPool, PoolSize: 3, IdleSize: 3, Heartbeat: profiles.Duration(200 * time.Millisecond)}
	d, err := NewHTTPDriver(spec, p, g, DriverOptions{Batch: 1, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := d.NewSession().Write(context.Background(), uint64(i), time.Now()); r.Class != "" {
				t.Errorf("write %d: %v", i, r.Err)
			}
		}()
	}
	wg.Wait()
	if n := d.NewConnections(); n != 3 {
		t.Fatalf("%d connections, want 3", n)
	}
	// Bounded wait: the two answering connections are pinged 5 times each
	// while the first connection's ping hangs (it hangs a minute).
	deadline := time.Now().Add(30 * time.Second)
	for s.minPings() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("the answering connections were pinged %d times in 30 s beside a hanging ping, want 5", s.minPings())
		}
		time.Sleep(10 * time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { d.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a heartbeat ping was in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(s.release) // the hanging connection drops: its ping fails
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the hanging ping failed")
	}
	if onReuse, onHeartbeat := d.DeadConnections(); onReuse != 0 || onHeartbeat != 1 {
		t.Fatalf("dead connections: %d on reuse, %d on heartbeat; want 0 and the hanging one", onReuse, onHeartbeat)
	}
}
