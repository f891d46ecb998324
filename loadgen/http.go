package loadgen

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

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
	pool        *connPool
	prefix      []byte // request line and fixed headers
	closeServer bool   // send Connection: close and let the server close first
	perWrite    bool
	ping        []byte // GET /ping request for the heartbeat

	dead          atomic.Int64 // pooled connections found dead when reused
	heartbeatFail atomic.Int64 // idle connections whose heartbeat ping failed
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
	d.pool = newConnPool(dial, !d.perWrite, p.PoolSize, p.IdleSize, p.IdleTimeout.D())
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
	d.pool.startHeartbeat(p.Heartbeat.D(), d.pingConn, func() { d.heartbeatFail.Add(1) })
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
	return d.dead.Load(), d.heartbeatFail.Load()
}

// NewConnections returns how many connections the driver has opened.
func (d *HTTPDriver) NewConnections() int64 { return d.dialer.Opened.Load() }

// ConnTimes returns the connect and TLS handshake times of the driver's
// new connections.
func (d *HTTPDriver) ConnTimes() *ConnTimes { return &d.dialer.Times }

// Close closes idle connections.
func (d *HTTPDriver) Close() error { d.pool.close(); return nil }

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
	for attempt := 0; ; attempt++ {
		// Service time includes connecting for a new connection per write,
		// but not waiting for a pooled connection to be free (queueing).
		getStart := time.Now()
		var pc *pconn
		if d.pool.idle != nil {
			pc = d.pool.takeIdle() // fast path: no context, no allocation
		}
		if pc == nil {
			dctx, cancel := context.WithDeadline(ctx, deadline)
			var err error
			pc, err = d.pool.get(dctx)
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
		if res.Class != "" && res.Status == 0 && pc.reused {
			// A pooled connection that fails before any response came back
			// was dead while it sat in the pool.
			d.dead.Add(1)
		}
		if stale && pc.reused && attempt == 0 {
			d.pool.discard(pc)
			continue
		}
		d.pool.put(pc, reusable)
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

var errNoResponse = fmt.Errorf("connection closed before a response: %w", io.EOF)

type response struct {
	status     int
	close      bool
	retryAfter string
}

// readResponse parses an HTTP/1.x response and consumes its body, keeping
// up to 512 bytes of an error body in *snip. It allocates nothing for a
// normal 204 response.
func readResponse(br *bufio.Reader, snip *[]byte) (response, error) {
	var r response
	*snip = (*snip)[:0]
	line, err := br.ReadSlice('\n')
	if err != nil {
		if len(line) == 0 && (err == io.EOF || isReset(err)) {
			return r, errNoResponse
		}
		return r, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return r, fmt.Errorf("malformed status line %q", bytes.TrimSpace(line))
	}
	if line[7] == '0' {
		r.close = true
	}
	code, ok := atoi3(line[9:12])
	if !ok {
		return r, fmt.Errorf("malformed status line %q", bytes.TrimSpace(line))
	}
	r.status = code
	clen := int64(-1)
	chunked := false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return r, fmt.Errorf("read headers: %w", err)
		}
		if len(line) <= 2 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		key, val := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case bytes.EqualFold(key, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(val), 10, 64)
			if err != nil || n < 0 {
				return r, fmt.Errorf("bad Content-Length %q", val)
			}
			clen = n
		case bytes.EqualFold(key, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(bytes.ToLower(val), []byte("chunked"))
		case bytes.EqualFold(key, []byte("Connection")):
			if bytes.EqualFold(val, []byte("close")) {
				r.close = true
			}
		case bytes.EqualFold(key, []byte("Retry-After")):
			r.retryAfter = string(val)
		}
	}
	if code == 204 || code == 304 || code < 200 {
		return r, nil
	}
	keep := code < 200 || code > 299
	switch {
	case chunked:
		return r, readChunked(br, snip, keep)
	case clen >= 0:
		return r, discardN(br, clen, snip, keep)
	default:
		r.close = true
		return r, discardN(br, 1<<40, snip, keep)
	}
}

func atoi3(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// discardN consumes n bytes (or until EOF when n is huge), keeping a prefix.
func discardN(br *bufio.Reader, n int64, snip *[]byte, keep bool) error {
	for n > 0 {
		b, err := br.Peek(1)
		if len(b) == 0 {
			if err == io.EOF && n >= 1<<40 {
				return nil
			}
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read body: %w", err)
		}
		avail := int64(br.Buffered())
		if avail > n {
			avail = n
		}
		chunk, _ := br.Peek(int(avail))
		if keep && len(*snip) < 512 {
			room := 512 - len(*snip)
			if room > len(chunk) {
				room = len(chunk)
			}
			*snip = append(*snip, chunk[:room]...)
		}
		br.Discard(int(avail))
		n -= avail
	}
	return nil
}

func readChunked(br *bufio.Reader, snip *[]byte, keep bool) error {
	for i := 0; i < 1<<20; i++ {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("read chunk size: %w", err)
		}
		line = bytes.TrimSpace(line)
		if k := bytes.IndexByte(line, ';'); k >= 0 {
			line = line[:k]
		}
		size, err := strconv.ParseInt(string(line), 16, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if size == 0 {
			// trailers until an empty line
			for {
				t, err := br.ReadSlice('\n')
				if err != nil {
					return fmt.Errorf("read trailer: %w", err)
				}
				if len(t) <= 2 {
					return nil
				}
			}
		}
		if err := discardN(br, size+2, snip, keep); err != nil {
			return err
		}
	}
	return fmt.Errorf("read body: too many chunks")
}

func isReset(err error) bool { return Classify(err) == ClassECONNRESET }
