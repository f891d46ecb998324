package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxBodyBytes is the largest write body (after gzip decompression)
// the sink accepts when Options.MaxBodyBytes is zero; InfluxDB 1.x uses the
// same default for its max-body-size.
const DefaultMaxBodyBytes = 25_000_000

// DefaultVersion is the X-Influxdb-Version header value when
// Options.Version is empty.
const DefaultVersion = "1.8.10-loadcap-sink"

// Options configures a Server. The zero value is a plain, fault-free sink.
// New behaviours for tests belong here as new fields whose zero value keeps
// the current behaviour.
type Options struct {
	// Latency is added to every write request before it is answered.
	Latency time.Duration
	// ErrorRate is the fraction (0..1) of write requests answered 500 without
	// being decoded. Which writes fail is a pure function of Seed and the
	// order in which writes arrive, so a run is reproducible.
	ErrorRate float64
	// Seed selects the error-injection sequence.
	Seed int64
	// MaxBodyBytes limits a write body after decompression (413 beyond it);
	// 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Version is the X-Influxdb-Version header; empty means DefaultVersion.
	Version string
	// Username and Password, when Username is set, are required on v1 writes
	// (u/p query parameters or basic auth); others get 401.
	Username, Password string
	// Token, when set, is required on v2 and v3 writes as
	// "Authorization: Token T" (or "Bearer T"); others get 401.
	Token string
	// IdleTimeout closes keep-alive connections idle for longer; 0 never
	// closes them (as InfluxDB does not).
	IdleTimeout time.Duration
	// Intercept, when set, is called first for every request. If it returns
	// true it has written the response and the sink does nothing more (the
	// request is still counted in Stats.Requests). Tests use it to add
	// behaviours such as 429 with Retry-After or a hanging server.
	Intercept func(w http.ResponseWriter, r *http.Request) bool
}

// Server is the embedded InfluxDB-compatible write sink. It is an
// http.Handler; Serve or Start run it on a listener. All methods are safe for
// concurrent use.
type Server struct {
	opts    Options
	maxBody int64
	version []string // shared header value, never mutated
	srv     *http.Server

	addr atomic.Pointer[net.TCPAddr]

	seq         atomic.Uint64 // write sequence number, for error injection
	requests    atomic.Int64
	connections atomic.Int64
	open        atomic.Int64
	paths       [numAPIs]pathCounters

	bufs sync.Pool // *body
}

// New returns a Server configured by opts; call Serve to run it, or use it as
// an http.Handler.
func New(opts Options) *Server {
	s := &Server{opts: opts, maxBody: opts.MaxBodyBytes}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	v := opts.Version
	if v == "" {
		v = DefaultVersion
	}
	s.version = []string{v}
	s.bufs.New = func() any { return new(body) }
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       opts.IdleTimeout, // 0 and no ReadTimeout: no idle limit
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnState:         s.connState,
	}
	return s
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves in the
// background until Close.
func Start(addr string, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start sink on %s: %w", addr, err)
	}
	s := New(opts)
	s.track(ln)
	go func() { _ = s.serve(ln) }()
	return s, nil
}

// Serve accepts connections on ln until Close or Shutdown, counting every
// accepted connection. It returns nil after Close or Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.track(ln)
	return s.serve(ln)
}

func (s *Server) track(ln net.Listener) {
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		s.addr.CompareAndSwap(nil, a)
	}
}

func (s *Server) serve(ln net.Listener) error {
	err := s.srv.Serve(&countingListener{Listener: ln, n: &s.connections})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("serve sink: %w", err)
	}
	return nil
}

// Addr returns the address of the first listener the sink serves on, or nil
// before Serve or Start.
func (s *Server) Addr() net.Addr {
	if a := s.addr.Load(); a != nil {
		return a
	}
	return nil
}

// URL returns the base URL of the sink, "http://127.0.0.1:PORT"; an
// unspecified listen address (0.0.0.0, ::) is reported as 127.0.0.1. It is
// empty before Serve or Start.
func (s *Server) URL() string {
	a := s.addr.Load()
	if a == nil {
		return ""
	}
	ip := a.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(a.Port))
}

// Close stops the sink at once: it closes the listeners and every
// connection, including those with a write in progress.
func (s *Server) Close() error {
	if err := s.srv.Close(); err != nil {
		return fmt.Errorf("close sink: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections and waits, until ctx is done, for
// writes in progress to be answered.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shut down sink: %w", err)
	}
	return nil
}

func (s *Server) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		s.open.Add(1)
	case http.StateClosed, http.StateHijacked:
		s.open.Add(-1)
	}
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

// Accept implements net.Listener.
func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// Validate reports the first option out of range, naming it and its value.
func (o Options) Validate() error {
	switch {
	case o.Latency < 0:
		return fmt.Errorf("validate sink options: latency %v is negative", o.Latency)
	case o.ErrorRate < 0 || o.ErrorRate > 1 || math.IsNaN(o.ErrorRate):
		return fmt.Errorf("validate sink options: error rate %v is not within 0..1", o.ErrorRate)
	case o.MaxBodyBytes < 0:
		return fmt.Errorf("validate sink options: max body bytes %d is negative", o.MaxBodyBytes)
	case o.IdleTimeout < 0:
		return fmt.Errorf("validate sink options: idle timeout %v is negative", o.IdleTimeout)
	}
	return nil
}
