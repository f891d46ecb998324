package pg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/pgsink"
	"github.com/loadcap/loadcap/profiles"
)

// inNetns runs f on an OS thread moved into a new network namespace of its
// own, with lo up. Sockets made on that thread (listeners, and the
// connections pgx dials from it) belong to the namespace, and so does
// /proc/sys/net as that thread opens it. The thread is never unlocked: it
// exits with f, and the namespace goes with it and its sockets. Without
// root it skips, or fails with LOADCAP_REQUIRE_SERVERS=1.
func inNetns(t *testing.T, f func() error) {
	t.Helper()
	if os.Geteuid() != 0 {
		testservers.Unavailable(t, "needs root for a network namespace")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		if err := loUp(); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// loUp sets the loopback interface of the current thread's namespace up.
func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// setPortRange sets net.ipv4.ip_local_port_range in the current thread's
// namespace.
func setPortRange(lo, hi int) error {
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", fmt.Appendf(nil, "%d %d", lo, hi), 0o644); err != nil {
		return fmt.Errorf("set ip_local_port_range: %w", err)
	}
	return nil
}

// tcpSocket is one line of /proc/net/tcp.
type tcpSocket struct {
	localPort, remotePort int
	state                 string // hex, as the kernel writes it: 06 TIME_WAIT, 0A LISTEN
}

// tcpSockets lists the IPv4 TCP sockets of the current thread's namespace.
func tcpSockets() ([]tcpSocket, error) {
	b, err := os.ReadFile("/proc/thread-self/net/tcp")
	if err != nil {
		return nil, fmt.Errorf("read tcp sockets: %w", err)
	}
	var out []tcpSocket
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		port := func(a string) int {
			_, p, _ := strings.Cut(a, ":")
			n, _ := strconv.ParseUint(p, 16, 16)
			return int(n)
		}
		out = append(out, tcpSocket{localPort: port(f[1]), remotePort: port(f[2]), state: f[3]})
	}
	return out, nil
}

// settledSockets waits (bounded) until every socket of the namespace is
// listening or in TIME_WAIT, and returns them.
func settledSockets() ([]tcpSocket, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		socks, err := tcpSockets()
		if err != nil {
			return nil, err
		}
		busy := 0
		for _, s := range socks {
			if s.state != "06" && s.state != "0A" {
				busy++
			}
		}
		if busy == 0 {
			return socks, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d sockets still open or closing after 5 s: %v", busy, socks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sockInfo is what the kernel says of a connection's socket.
type sockInfo struct {
	local, remote int
	noPort        int         // IP_BIND_ADDRESS_NO_PORT
	linger        unix.Linger // SO_LINGER
}

func inspect(nc net.Conn) (sockInfo, error) {
	tc, ok := tcpConn(nc)
	if !ok {
		return sockInfo{}, fmt.Errorf("connection is %T, want *net.TCPConn", nc)
	}
	si := sockInfo{local: tc.LocalAddr().(*net.TCPAddr).Port, remote: tc.RemoteAddr().(*net.TCPAddr).Port}
	rc, err := tc.SyscallConn()
	if err != nil {
		return si, err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if si.noPort, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT); serr != nil {
			serr = fmt.Errorf("getsockopt IP_BIND_ADDRESS_NO_PORT: %w", serr)
			return
		}
		l, err := unix.GetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER)
		if err != nil {
			serr = fmt.Errorf("getsockopt SO_LINGER: %w", err)
			return
		}
		si.linger = *l
	})
	return si, errors.Join(err, serr)
}

func driverFor(url string, p *profiles.Client) (*Driver, error) {
	spec, err := loadgen.ParseTarget(url)
	if err != nil {
		return nil, err
	}
	g, err := loadgen.NewGenerator(loadgen.DefaultGenConfig())
	if err != nil {
		return nil, err
	}
	return NewDriver(context.Background(), spec, p, g, Options{Batch: 5, Timeout: 5 * time.Second, Create: true})
}

// The dial modes on the SQL path, in a network namespace of the test's own
// with a local port range of two ports and two embedded sinks: a plain
// connect() and IP_BIND_ADDRESS_NO_PORT draw a port pool per destination
// (two connections to each sink, the same two ports; a third to one sink
// fails EADDRNOTAVAIL); bind-before-connect shares one pool across
// destinations (two connections to the first sink leave none for the
// second: EADDRINUSE). Read back from each socket: IP_BIND_ADDRESS_NO_PORT
// is set only in bind-no-port, SO_LINGER {1, 0} only with linger0. After
// the connections close, the namespace holds one TIME_WAIT per connection
// on the client side and none on the sinks', or none at all with linger0.
func TestDialModesSharedPortPoolNetns(t *testing.T) {
	for _, c := range []struct {
		profile string
		shared  bool
		noPort  int
		linger0 bool
	}{
		{"close-client", false, 0, false},
		{"close-client-bind", true, 0, false},
		{"close-client-bind-no-port", false, 1, false},
		{"close-client-linger0", false, 0, true},
	} {
		t.Run(c.profile, func(t *testing.T) {
			p, err := profiles.LoadClient(c.profile)
			if err != nil {
				t.Fatal(err)
			}
			inNetns(t, func() error {
				// The start-up checks draw from ports the test does
				// not use after.
				if err := setPortRange(40100, 40199); err != nil {
					return err
				}
				var drivers [2]*Driver
				for i, port := range []int{5001, 5002} {
					s, err := pgsink.Start(fmt.Sprintf("127.0.0.1:%d", port), pgsink.Options{})
					if err != nil {
						return err
					}
					defer s.Close()
					if drivers[i], err = driverFor(s.URL()+"&table=dm", p); err != nil {
						return err
					}
					defer drivers[i].Close()
				}
				if err := setPortRange(40000, 40001); err != nil {
					return err
				}
				type heldConn struct {
					d *Driver
					c *conn
				}
				var held []heldConn
				release := func() {
					for _, h := range held {
						h.d.pool.Put(h.c, false)
					}
					held = nil
				}
				defer release()
				hold := func(d *Driver) (sockInfo, error) {
					cn, err := d.pool.Get(context.Background())
					if err != nil {
						return sockInfo{}, err
					}
					held = append(held, heldConn{d, cn})
					return inspect(cn.pc.Conn())
				}
				ports := map[int][]int{}
				for i, d := range drivers {
					n := 2
					if c.shared && i == 1 {
						n = 0
					}
					for k := 0; k < n; k++ {
						si, err := hold(d)
						if err != nil {
							return fmt.Errorf("connection %d to sink %d: %w", k+1, i+1, err)
						}
						if si.noPort != c.noPort {
							return fmt.Errorf("IP_BIND_ADDRESS_NO_PORT = %d, want %d", si.noPort, c.noPort)
						}
						if want := (unix.Linger{}); c.linger0 {
							if si.linger != (unix.Linger{Onoff: 1, Linger: 0}) {
								return fmt.Errorf("SO_LINGER = %+v, want {1, 0}", si.linger)
							}
						} else if si.linger != want {
							return fmt.Errorf("SO_LINGER = %+v without linger0", si.linger)
						}
						ports[si.remote] = append(ports[si.remote], si.local)
					}
				}
				for dst, ps := range ports {
					if len(ps) != 2 || ps[0] == ps[1] || min(ps[0], ps[1]) != 40000 || max(ps[0], ps[1]) != 40001 {
						return fmt.Errorf("local ports toward %d: %v, want 40000 and 40001", dst, ps)
					}
				}
				// One more connection: which pool is out of ports?
				failing, want := drivers[0], loadgen.ClassEADDRNOTAVAIL
				if c.shared {
					failing, want = drivers[1], loadgen.ClassEADDRINUSE
				}
				res := failing.NewSession().Write(context.Background(), 0, time.Now())
				if res.Class != want {
					return fmt.Errorf("connection beyond the port pool: class %q (%v), want %s", res.Class, res.Err, want)
				}
				opened := len(held)
				release()
				socks, err := settledSockets()
				if err != nil {
					return err
				}
				cli, srv := 0, 0
				for _, s := range socks {
					if s.state != "06" {
						continue
					}
					if s.localPort == 5001 || s.localPort == 5002 {
						srv++
					} else {
						cli++
					}
				}
				wantCli := opened + 2 // + the two start-up checks
				if c.linger0 {
					wantCli = 0
				}
				if cli != wantCli || srv != 0 {
					return fmt.Errorf("TIME_WAIT: %d on the client side, %d on the sinks'; want %d and 0", cli, srv, wantCli)
				}
				t.Logf("%s: %d connections held with 2 local ports; the next one: %s; TIME_WAIT %d (client) %d (sinks)", c.profile, opened, res.Class, cli, srv)
				return nil
			})
		})
	}
}

// timeWaitTuples returns the TIME_WAIT sockets to or from port as
// "local peer" pairs, from ss.
func timeWaitTuples(t *testing.T, port int) map[string]bool {
	t.Helper()
	out, err := exec.Command("ss", "-Htan", "state", "time-wait", fmt.Sprintf("( dport = :%d or sport = :%d )", port, port)).Output()
	if err != nil {
		testservers.Unavailable(t, fmt.Sprintf("ss unavailable: %v", err))
	}
	m := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) >= 4 {
			m[f[2]+" "+f[3]] = true
		}
	}
	return m
}

// The dial modes against real PostgreSQL, through the driver's own
// DialFunc: every connection of bind-no-port has IP_BIND_ADDRESS_NO_PORT
// set, every connection of close-client-linger0 has SO_LINGER {1, 0}, and
// no other has either. TIME_WAIT, matched to the run's own connections by
// their 4-tuple (other tests may use the same server, and on loopback
// tcp_tw_reuse=2 lets a new connection take the 4-tuple of an old TIME_WAIT,
// so a before/after difference of the TIME_WAIT set undercounts): none on
// either side with linger0; one per write on the server's side with
// close-server (the server closes first); one per write on the client side
// and none on the server's otherwise (the client closes first, see
// closeFirst).
func TestDialModesRealPostgres(t *testing.T) {
	dsn := testservers.Postgres(t)
	for _, c := range []struct {
		profile          string
		noPort           int
		linger0          bool
		wantCli, wantSrv int // TIME_WAIT per write on each side
	}{
		{"close-client", 0, false, 1, 0},
		{"close-client-bind", 0, false, 1, 0},
		{"close-client-bind-no-port", 1, false, 1, 0},
		{"close-client-linger0", 0, true, 0, 0},
		{"close-server", 0, false, 0, 1},
	} {
		t.Run(c.profile, func(t *testing.T) {
			p, err := profiles.LoadClient(c.profile)
			if err != nil {
				t.Fatal(err)
			}
			table := fmt.Sprintf("dialmode_%d_%s", os.Getpid(), strings.ReplaceAll(c.profile, "-", "_"))
			t.Cleanup(func() { testservers.PgExec(t, dsn, `DROP TABLE IF EXISTS "`+table+`"`) })
			sep := "?"
			if strings.Contains(dsn, "?") {
				sep = "&"
			}
			d, err := driverFor(dsn+sep+"table="+table, p)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			var seen []sockInfo
			var inspectErr error
			dial := d.cfg.DialFunc
			d.cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
				nc, err := dial(ctx, network, addr)
				if err == nil {
					si, err := inspect(nc)
					inspectErr = errors.Join(inspectErr, err)
					seen = append(seen, si)
				}
				return nc, err
			}
			const writes = 20
			s := d.NewSession()
			for i := 0; i < writes; i++ {
				if res := s.Write(context.Background(), uint64(i), time.Now()); res.Class != "" {
					t.Fatalf("write %d: %s %v", i, res.Class, res.Err)
				}
			}
			if inspectErr != nil {
				t.Fatal(inspectErr)
			}
			if len(seen) != writes {
				t.Fatalf("%d connections for %d writes", len(seen), writes)
			}
			pgPort := seen[0].remote
			ours := map[string]int{} // 4-tuple: 1 client side, 2 server side
			for _, si := range seen {
				if si.noPort != c.noPort {
					t.Errorf("port %d: IP_BIND_ADDRESS_NO_PORT = %d, want %d", si.local, si.noPort, c.noPort)
				}
				want := unix.Linger{}
				if c.linger0 {
					want = unix.Linger{Onoff: 1, Linger: 0}
				}
				if si.linger != want {
					t.Errorf("port %d: SO_LINGER = %+v, want %+v", si.local, si.linger, want)
				}
				cli, srv := fmt.Sprintf("127.0.0.1:%d", si.local), fmt.Sprintf("127.0.0.1:%d", si.remote)
				ours[cli+" "+srv], ours[srv+" "+cli] = 1, 2
			}
			// Closes are done when Write returns; the server's FIN (or
			// nothing, after a reset) follows within milliseconds.
			var cliTW, srvTW int
			for deadline := time.Now().Add(3 * time.Second); ; {
				cliTW, srvTW = 0, 0
				for k := range timeWaitTuples(t, pgPort) {
					switch ours[k] {
					case 1:
						cliTW++
					case 2:
						srvTW++
					}
				}
				if c.linger0 || cliTW+srvTW >= writes || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if c.linger0 {
				time.Sleep(200 * time.Millisecond) // a late FIN would show now
				cliTW, srvTW = 0, 0
				for k := range timeWaitTuples(t, pgPort) {
					if ours[k] == 1 {
						cliTW++
					} else if ours[k] == 2 {
						srvTW++
					}
				}
			}
			t.Logf("%s: %d writes, %d connections; TIME_WAIT of these: %d on the client side, %d on the server's", c.profile, writes, len(seen), cliTW, srvTW)
			if cliTW != c.wantCli*writes || srvTW != c.wantSrv*writes {
				t.Fatalf("TIME_WAIT %d on the client side, %d on the server's; want %d and %d", cliTW, srvTW, c.wantCli*writes, c.wantSrv*writes)
			}
			if got := testservers.PgCount(t, dsn, table); got != writes*5 {
				t.Fatalf("count(*) %d, want %d", got, writes*5)
			}
		})
	}
}
