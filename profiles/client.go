package profiles

import (
	"fmt"
	"time"
)

// Connection reuse modes of a client profile.
const (
	// ConnPool keeps connections in a pool and reuses them (keep-alive).
	ConnPool = "pool"
	// ConnPerWrite opens one connection per write and closes it afterwards.
	ConnPerWrite = "per-write"
)

// Who closes a per-write connection first, and therefore holds TIME_WAIT.
const (
	CloserClient = "client"
	CloserServer = "server"
)

// Dial modes: how the client obtains its local port.
const (
	// DialConnect is a plain connect(): the kernel picks a port unique per
	// 4-tuple, so every destination ip:port has its own pool.
	DialConnect = "connect"
	// DialBind binds to 0.0.0.0:0 (or [::]:0) before connect, as Go does when
	// Dialer.LocalAddr is set: one port pool shared by all destinations.
	DialBind = "bind"
	// DialBindNoPort binds with IP_BIND_ADDRESS_NO_PORT, deferring the port
	// choice to connect(): per-destination pools again.
	DialBindNoPort = "bind-no-port"
)

// Duration is a time.Duration that decodes from TOML strings such as "30s".
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("bad duration %q", string(b))
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", string(b))
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Client is a client connection profile: how a writer opens, reuses and closes
// its connections. The same profile drives the HTTP and the SQL paths.
type Client struct {
	// Name is the profile's name (the file name without extension for files).
	Name        string `toml:"name" json:"name"`
	Description string `toml:"description" json:"description,omitempty"`

	// Conn is ConnPool or ConnPerWrite.
	Conn string `toml:"conn" json:"conn"`
	// PoolSize is the most connections open to one target (0: unlimited).
	PoolSize int `toml:"pool_size" json:"pool_size"`
	// IdleSize is the most idle connections kept per target; a connection
	// released when IdleSize are already idle is closed by the client.
	IdleSize int `toml:"idle_size" json:"idle_size"`
	// IdleTimeout closes connections idle for longer (0: never).
	IdleTimeout Duration `toml:"idle_timeout" json:"idle_timeout,omitempty"`
	// Closer says who closes a per-write connection first: CloserClient
	// (TIME_WAIT on the client) or CloserServer (Connection: close; TIME_WAIT
	// on the server).
	Closer string `toml:"closer" json:"closer,omitempty"`

	// DialMode is DialConnect, DialBind or DialBindNoPort.
	DialMode string `toml:"dial_mode" json:"dial_mode"`
	// Linger0 sets SO_LINGER to 0 so close sends RST and skips TIME_WAIT.
	Linger0 bool `toml:"linger0" json:"linger0,omitempty"`

	// KeepAlive enables SO_KEEPALIVE with the idle/interval/count below
	// (zero values leave the kernel's tcp_keepalive_* sysctls in force).
	KeepAlive         bool     `toml:"keepalive" json:"keepalive,omitempty"`
	KeepAliveIdle     Duration `toml:"keepalive_idle" json:"keepalive_idle,omitempty"`
	KeepAliveInterval Duration `toml:"keepalive_interval" json:"keepalive_interval,omitempty"`
	KeepAliveCount    int      `toml:"keepalive_count" json:"keepalive_count,omitempty"`
	// UserTimeout sets TCP_USER_TIMEOUT (0: kernel default).
	UserTimeout Duration `toml:"user_timeout" json:"user_timeout,omitempty"`
	// Heartbeat pings idle pooled connections at this interval (HTTP /ping,
	// SQL "select 1"); 0 disables it.
	Heartbeat Duration `toml:"heartbeat" json:"heartbeat,omitempty"`
}

// Pooled reports whether connections are reused between writes.
func (c *Client) Pooled() bool { return c.Conn != ConnPerWrite }

// SharesPorts reports whether all the client's targets draw from one pool
// of local ports: bind before connect picks a port unique on the host, where
// connect() (and bind with IP_BIND_ADDRESS_NO_PORT) keeps one pool per
// destination.
func (c *Client) SharesPorts() bool { return c.DialModeOrDefault() == DialBind }
