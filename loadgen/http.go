package loadgen

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/loadcap/loadcap/internal/connpool"
	"github.com/loadcap/loadcap/profiles"
)

// DriverOptions are the per-run settings every driver needs.
type DriverOptions struct {
	// Batch is the number of lines (rows) per write.
	Batch int
	// Gzip compresses HTTP bodies.
	Gzip bool
	// Timeout bounds one write: connect, send and response.
	Timeout time.Duration
	// TLSConfig is used for https targets (nil: verify with system roots).
	TLSConfig *tls.Config
}

// HTTPDriver writes line protocol to one InfluxDB-compatible target over
// HTTP/1.1 with its own connection pool, so that connection reuse, who
// closes first and the dial mode are exactly those of the client profile.
type HTTPDriver struct {
	spec        TargetSpec
	gen         *Generator
	opts        DriverOptions
	dialer      *Dialer
	pool        *connpool.Pool[*pconn]
	prefix      []byte // request line and fixed headers
	closeServer bool   // send Connection: close and let the server close first
	perWrite    bool
	ping        []byte // GET /ping request for the heartbeat

	dead atomic.Int64 // pooled connections found dead when reused
}

// NewHTTPDriver builds the driver for an InfluxDB v1, v2 or v3 target (or the
// embedded sink, once its URL is known).
func NewHTTPDriver(spec TargetSpec, p *profiles.Client, gen *Generator, opts DriverOptions) (*HTTPDriver, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Batch < 1 {
		return nil, fmt.Errorf("bad batch %d: want at least 1", opts.Batch)
	}
	dl, err := NewDialer(p, opts.Timeout)
	if err != nil {
		return nil, err
	}
	d := &HTTPDriver{spec: spec, gen: gen, opts: opts, dialer: dl}
	d.perWrite = p.Conn == profiles.ConnPerWrite
	d.closeServer = d.perWrite && p.Closer == profiles.CloserServer
	tcfg := clientTLS(opts.TLSConfig, spec.Addr)
	dial := func(ctx context.Context) (net.Conn, error) {
		c, err := dl.DialContext(ctx, "tcp", spec.Addr)
		if err != nil || !spec.TLS {
			return c, err
		}
		start := time.Now()
		tc := tls.Client(c, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		dl.Times.RecordTLS(time.Since(start))
		return tc, nil
	}
	d.pool = newConnPool(dial, !d.perWrite, p.PoolSize, p.IdleSize, p.IdleTimeout.D(), p.Heartbeat.D(), d.pingConn)
	host := spec.Addr
	if h, port, err := net.SplitHostPort(spec.Addr); err == nil && ((port == "80" && !spec.TLS) || (port == "443" && spec.TLS)) {
		host = h
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: loadcap\r\nContent-Type: text/plain; charset=utf-8\r\n", spec.WithPrecision(gen.Config().Precision), host)
	if spec.Authorization != "" {
		fmt.Fprintf(&b, "Authorization: %s\r\n", spec.Authorization)
	}
	if opts.Gzip {
		b.WriteString("Content-Encoding: gzip\r\n")
	}
	if d.closeServer {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("Content-Length: ")
	d.prefix = b.Bytes()
	d.ping = []byte("GET " + spec.Prefix + "/ping HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: loadcap\r\n\r\n")
	return d, nil
}

// pingConn sends one heartbeat request on an idle connection.
func (d *HTTPDriver) pingConn(pc *pconn) error {
	pc.c.SetDeadline(time.Now().Add(d.opts.Timeout))
	if _, err := pc.c.Write(d.ping); err != nil {
		return err
	}
	var snip []byte
	r, err := readResponse(pc.br, &snip)
	if err != nil {
		return err
	}
	if r.close {
		return fmt.Errorf("ping: server closes the connection")
	}
	return nil
}

// DeadConnections returns how many pooled connections were found dead when
// a write reused them (the server or a firewall had dropped them while
// idle), and how many idle connections failed their heartbeat ping.
func (d *HTTPDriver) DeadConnections() (onReuse, onHeartbeat int64) {
	_, failed := d.pool.Pings()
	return d.dead.Load(), failed
}

// NewConnections returns how many connections the driver has opened.
func (d *HTTPDriver) NewConnections() int64 { return d.dialer.Opened.Load() }

// ConnTimes returns the connect and TLS handshake times of the driver's
// new connections.
func (d *HTTPDriver) ConnTimes() *ConnTimes { return &d.dialer.Times }

// Close stops the pool's maintenance, waits for heartbeat pings in flight
// and closes idle connections.
func (d *HTTPDriver) Close() error { d.pool.Close(); return nil }

// NewSession returns a worker's session with its own buffers.
func (d *HTTPDriver) NewSession() Session {
	return &httpSession{d: d}
}

type httpSession struct {
	d     *HTTPDriver
	enc   lineprotocol.Encoder
	pt    Point
	req   []byte
	gzbuf bytes.Buffer
	gz    *gzip.Writer
	snip  []byte
}

// Write encodes write seq and sends it. A pooled connection that turns out
// to be dead before any response byte arrived (the server closed it while
// idle) is retried once on a fresh connection, as HTTP clients do.
func (s *httpSession) Write(ctx context.Context, seq uint64, intended time.Time) Result {
	d := s.d
	s.enc.Reset()
	if err := d.gen.Encode(&s.enc, &s.pt, seq, intended, d.opts.Batch); err != nil {
		return Result{Class: ClassOther, Err: err}
	}
	body := s.enc.Bytes()
	if d.opts.Gzip {
		s.gzbuf.Reset()
		if s.gz == nil {
			s.gz = gzip.NewWriter(&s.gzbuf)
		} else {
			s.gz.Reset(&s.gzbuf)
		}
		s.gz.Write(body)
		s.gz.Close()
		body = s.gzbuf.Bytes()
	}
	s.req = append(s.req[:0], d.prefix...)
	s.req = strconv.AppendInt(s.req, int64(len(body)), 10)
	s.req = append(s.req, "\r\n\r\n"...)
	s.req = append(s.req, body...)

	deadline := time.Now().Add(d.opts.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	for {
		// Service time includes connecting for a new connection per write,
		// but not waiting for a pooled connection to be free (queueing).
		getStart := time.Now()
		pc, ok := d.pool.TakeIdle() // fast path: no context, no allocation
		if !ok {
			dctx, cancel := context.WithDeadline(ctx, deadline)
			var err error
			pc, err = d.pool.Get(dctx)
			cancel()
			if err != nil {
				return Result{Class: Classify(err), Err: err, Sent: getStart}
			}
		}
		sent := time.Now()
		if d.perWrite {
			sent = getStart
		}
		res, reusable, stale := s.exchange(pc, deadline)
		res.Sent = sent
		if res.Class != "" && res.Status == 0 && pc.Reused {
			// A pooled connection that fails before any response came back
			// was dead while it sat in the pool.
			d.dead.Add(1)
		}
		// A stale pooled connection is discarded and the write retried:
		// on the next idle connection (which may be stale too, when the
		// server closed them all while they sat idle) or a new one. Each
		// retry discards one idle connection, so this ends.
		if stale && pc.Reused {
			d.pool.Discard(pc)
			continue
		}
		d.pool.Put(pc, reusable)
		if res.Class == "" {
			res.Lines = d.opts.Batch
		}
		return res
	}
}

// exchange sends the request on pc and reads the response. stale is true
// when the connection failed before any response byte was read.
func (s *httpSession) exchange(pc *pconn, deadline time.Time) (res Result, reusable, stale bool) {
	pc.c.SetDeadline(deadline)
	if _, err := pc.c.Write(s.req); err != nil {
		return Result{Class: Classify(err), Err: fmt.Errorf("send: %w", err)}, false, true
	}
	r, err := readResponse(pc.br, &s.snip)
	if err != nil {
		stale = errors.Is(err, errNoResponse)
		return Result{Class: Classify(err), Err: fmt.Errorf("read response: %w", err)}, false, stale
	}
	res.Status = r.status
	if r.status < 200 || r.status > 299 {
		res.Class = StatusClass(r.status)
		res.Err = fmt.Errorf("http %d: %s", r.status, bytes.TrimSpace(s.snip))
		if r.retryAfter != "" {
			res.RetryAfter = r.retryAfter
		}
		res.Partial = (r.status == 400 || r.status == 422) && bytes.Contains(s.snip, []byte("partial write"))
	}
	if s.d.closeServer {
		// Wait for the server's FIN so that the server closes first and
		// holds TIME_WAIT, as with a real "Connection: close" exchange.
		pc.br.Discard(pc.br.Buffered())
		var one [1]byte
		for {
			if _, err := pc.c.Read(one[:]); err != nil {
				break
			}
		}
		return res, false, false
	}
	return res, !r.close && !s.d.perWrite, false
}
