package loadgen

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"github.com/loadcap/loadcap/profiles"
)

// Dialer opens TCP connections the way a client profile says (dial mode,
// SO_LINGER 0, TCP keepalive, TCP_USER_TIMEOUT) and counts every connection
// it opens and every dial that failed. One Dialer serves one target.
type Dialer struct {
	d       net.Dialer
	linger0 bool
	// Opened counts connections established; Failed counts dial errors.
	Opened atomic.Int64
	Failed atomic.Int64
	// Times records how long each new connection took to connect and, for
	// TLS, to complete its handshake.
	Times ConnTimes
}

// ConnTimes records the set-up times of new connections: TCP connect and
// TLS handshake, in microseconds. Safe for concurrent use.
type ConnTimes struct {
	mu           sync.Mutex
	connect, tls *hdrhistogram.Histogram
}

func (t *ConnTimes) record(h **hdrhistogram.Histogram, d time.Duration) {
	t.mu.Lock()
	if *h == nil {
		*h = hdrhistogram.New(1, 60_000_000, 3)
	}
	(*h).RecordValue(max(d.Microseconds(), 1))
	t.mu.Unlock()
}

func (t *ConnTimes) recordConnect(d time.Duration) { t.record(&t.connect, d) }

// RecordTLS records the TLS handshake of one new connection.
func (t *ConnTimes) RecordTLS(d time.Duration) { t.record(&t.tls, d) }

// Histograms returns copies of the connect and TLS handshake histograms
// (µs); nil when no connection was made, or none with TLS.
func (t *ConnTimes) Histograms() (connect, tls *hdrhistogram.Histogram) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cp := func(h *hdrhistogram.Histogram) *hdrhistogram.Histogram {
		if h == nil {
			return nil
		}
		return hdrhistogram.Import(h.Export())
	}
	return cp(t.connect), cp(t.tls)
}

// NewDialer builds a Dialer for profile p. timeout bounds each connect.
func NewDialer(p *profiles.Client, timeout time.Duration) (*Dialer, error) {
	dl := &Dialer{linger0: p.Linger0}
	dl.d.Timeout = timeout
	if p.KeepAlive {
		dl.d.KeepAliveConfig = net.KeepAliveConfig{
			Enable:   true,
			Idle:     p.KeepAliveIdle.D(),
			Interval: p.KeepAliveInterval.D(),
			Count:    p.KeepAliveCount,
		}
		// Zero means "leave the kernel's tcp_keepalive_* sysctl in force";
		// Go treats 0 as its own 15 s default, and -1 as "do not set".
		if dl.d.KeepAliveConfig.Idle == 0 {
			dl.d.KeepAliveConfig.Idle = -1
		}
		if dl.d.KeepAliveConfig.Interval == 0 {
			dl.d.KeepAliveConfig.Interval = -1
		}
		if dl.d.KeepAliveConfig.Count == 0 {
			dl.d.KeepAliveConfig.Count = -1
		}
	} else {
		// Go turns keepalive on by default (15 s); a profile without it must
		// really have none, like many C and Java clients.
		dl.d.KeepAlive = -1
	}
	userTimeout := p.UserTimeout.D()
	noPort := false
	switch p.DialMode {
	case "", profiles.DialConnect:
	case profiles.DialBind:
		dl.d.LocalAddr = &net.TCPAddr{} // filled per family in Dial
	case profiles.DialBindNoPort:
		dl.d.LocalAddr = &net.TCPAddr{}
		noPort = true
	default:
		return nil, fmt.Errorf("bad dial mode %q: want connect, bind or bind-no-port", p.DialMode)
	}
	if noPort || userTimeout > 0 {
		dl.d.Control = func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				if noPort {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
					if serr != nil {
						serr = fmt.Errorf("set IP_BIND_ADDRESS_NO_PORT: %w", serr)
						return
					}
				}
				if userTimeout > 0 {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout/time.Millisecond))
					if serr != nil {
						serr = fmt.Errorf("set TCP_USER_TIMEOUT: %w", serr)
					}
				}
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	return dl, nil
}

// DialContext connects to addr ("host:port") over TCP.
func (dl *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d := dl.d
	if d.LocalAddr != nil {
		// bind before connect to the wildcard address of the destination's
		// family, with port 0: exactly what Go does for Dialer.LocalAddr and
		// vegeta does by default.
		ip := net.IPv4zero
		if host, _, err := net.SplitHostPort(addr); err == nil {
			if a := net.ParseIP(host); a != nil && a.To4() == nil {
				ip = net.IPv6zero
			}
		}
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	start := time.Now()
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		dl.Failed.Add(1)
		return nil, err
	}
	dl.Times.recordConnect(time.Since(start))
	dl.Opened.Add(1)
	if dl.linger0 {
		if tc, ok := c.(*net.TCPConn); ok {
			if err := tc.SetLinger(0); err != nil {
				c.Close()
				return nil, fmt.Errorf("set SO_LINGER 0: %w", err)
			}
		}
	}
	return c, nil
}
