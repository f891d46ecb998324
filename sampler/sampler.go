package sampler

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/loadcap/loadcap/profiles"
)

// dumpBufferSize is the largest dump skb netlink builds (32 KiB).
const dumpBufferSize = 32 << 10

// Sources of a snapshot.
const (
	SourceNetlink = "netlink"
	SourceProc    = "proc"
)

// Options says where and how a Sampler reads.
type Options struct {
	// NetNS is the network namespace to sample: a name under
	// /var/run/netns, or a path such as /proc/PID/ns/net. Empty means the
	// namespace of the process.
	NetNS string
	// NetNSFD is an open network namespace file descriptor, used instead of
	// NetNS when positive. The Sampler keeps its own duplicate.
	NetNSFD int
	// Source forces SourceNetlink or SourceProc; empty tries netlink and
	// falls back to /proc.
	Source string
}

// Sampler reads socket snapshots and kernel counters of one network
// namespace. Its methods are safe for concurrent use (they serialize).
type Sampler struct {
	mu     sync.Mutex
	source string
	nsfd   int // -1 for the process's namespace
	conn   *netlink.Conn
	compat bool   // dump with one TCPDIAG_GETSOCK request
	rbuf   []byte // netlink receive buffer

	tcp, tcp6                   *os.File
	sockstat, snmp, netstat     *os.File
	sysctls                     map[string]*os.File
	buf                         []byte
	portRangeFile, reservedFile *os.File
	seen                        procSeen // sockets already counted in this /proc walk
}

// Open opens a Sampler in the namespace of opts. The /proc files and the
// netlink socket are opened once, inside the namespace, and read again on
// every snapshot: the process itself never changes namespace.
func Open(opts Options) (*Sampler, error) {
	s := &Sampler{nsfd: -1, sysctls: make(map[string]*os.File)}
	switch {
	case opts.NetNSFD > 0:
		if err := checkNetNS(opts.NetNSFD); err != nil {
			return nil, fmt.Errorf("open sampler: network namespace fd %d: %w", opts.NetNSFD, err)
		}
		fd, err := unix.FcntlInt(uintptr(opts.NetNSFD), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open sampler: dup network namespace fd: %w", err)
		}
		s.nsfd = fd
	case opts.NetNS != "":
		fd, err := openNetNS(opts.NetNS)
		if err != nil {
			return nil, fmt.Errorf("open sampler: %w", err)
		}
		s.nsfd = fd
	}
	procNet := "/proc/self/net/"
	open := func() error {
		var err error
		for _, f := range []struct {
			dst  **os.File
			name string
		}{{&s.tcp, "tcp"}, {&s.tcp6, "tcp6"}, {&s.sockstat, "sockstat"}, {&s.snmp, "snmp"}, {&s.netstat, "netstat"}} {
			*f.dst, err = os.Open(procNet + f.name)
			if err != nil && !(f.name == "tcp6" && errors.Is(err, os.ErrNotExist)) {
				return fmt.Errorf("open sampler: %w", err)
			}
		}
		for _, name := range profiles.RelevantKeys {
			f, err := os.Open("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue // e.g. tcp_tw_reuse_delay before 6.13
				}
				return fmt.Errorf("open sampler: %w", err)
			}
			s.sysctls[name] = f
		}
		return nil
	}
	var err error
	if s.nsfd >= 0 {
		procNet = "/proc/thread-self/net/"
		err = inNetNS(s.nsfd, open)
	} else {
		err = open()
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	s.portRangeFile = s.sysctls["net.ipv4.ip_local_port_range"]
	s.reservedFile = s.sysctls["net.ipv4.ip_local_reserved_ports"]
	if s.portRangeFile == nil {
		s.Close()
		return nil, fmt.Errorf("open sampler: ip_local_port_range is missing")
	}

	switch opts.Source {
	case "", SourceNetlink:
		nerr := s.dialNetlink()
		if nerr == nil {
			s.source = SourceNetlink
			break
		}
		if opts.Source == SourceNetlink {
			s.Close()
			return nil, fmt.Errorf("open sampler: %w", nerr)
		}
		s.source = SourceProc
	case SourceProc:
		s.source = SourceProc
	default:
		s.Close()
		return nil, fmt.Errorf("open sampler: unknown source %q (want %q or %q)", opts.Source, SourceNetlink, SourceProc)
	}
	return s, nil
}

// dialNetlink opens the sock_diag socket in the namespace and checks that
// TCP dumps work with a cheap listener-only dump.
func (s *Sampler) dialNetlink() error {
	if err := s.redial(); err != nil {
		return err
	}
	// One legacy request walks the socket hash once for both families;
	// use it when the kernel still has it, else one dump per family.
	s.compat = true
	if err := s.dump(reqCompat, StatesOf(Listen), func(*Socket) {}); err == nil {
		return nil
	}
	s.compat = false
	if s.conn == nil {
		if err := s.redial(); err != nil {
			return err
		}
	}
	if err := s.dump(reqV4, StatesOf(Listen), func(*Socket) {}); err != nil {
		if s.conn != nil {
			s.conn.Close()
			s.conn = nil
		}
		return err
	}
	return nil
}

// newNetlinkSampler returns a Sampler that dumps over conn (a fake kernel in
// tests) and reads nothing from /proc; its port range is the Linux default.
func newNetlinkSampler(conn *netlink.Conn) *Sampler {
	return &Sampler{nsfd: -1, conn: conn, source: SourceNetlink, sysctls: map[string]*os.File{}}
}

// Source returns SourceNetlink or SourceProc.
func (s *Sampler) Source() string { return s.source }

// Close releases the netlink socket, the open /proc files and the namespace.
func (s *Sampler) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	for _, f := range []*os.File{s.tcp, s.tcp6, s.sockstat, s.snmp, s.netstat} {
		if f != nil {
			f.Close()
		}
	}
	for _, f := range s.sysctls {
		f.Close()
	}
	s.sysctls = nil
	if s.nsfd >= 0 {
		unix.Close(s.nsfd)
		s.nsfd = -1
	}
	return nil
}

// readChunk is the most read asks of the kernel at once.
const readChunk = 1 << 20

// readAll reads f from offset 0 into s.buf, growing it as needed.
func (s *Sampler) readAll(f *os.File) ([]byte, error) {
	if s.buf == nil {
		s.buf = make([]byte, 64<<10)
	}
	off := 0
	for {
		// Sysctl files refuse reads above KMALLOC_MAX_SIZE: read in chunks.
		n, err := f.ReadAt(s.buf[off:min(len(s.buf), off+readChunk)], int64(off))
		off += n
		if err == io.EOF {
			return s.buf[:off], nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f.Name(), err)
		}
		if off+readChunk > len(s.buf) {
			s.buf = append(s.buf, make([]byte, len(s.buf))...)
		}
	}
}

// Walk calls fn for every TCP socket (IPv4 and IPv6) in one of states (zero
// means AllStates). The Socket passed to fn is reused between calls. Over
// netlink the states are filtered in the kernel, over /proc here.
func (s *Sampler) Walk(states StateSet, fn func(*Socket)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.walk(states, fn)
}

func (s *Sampler) walk(states StateSet, fn func(*Socket)) error {
	if states == 0 {
		states = AllStates
	}
	if s.source == SourceNetlink {
		return s.dumpAll(states, fn)
	}
	if s.seen == nil {
		s.seen = make(procSeen)
	}
	clear(s.seen)
	filter := func(sk *Socket) {
		st := sk.State
		if st == NewSynRecv {
			st = SynRecv
		}
		if states.Has(st) && s.seen.first(sk) {
			fn(sk)
		}
	}
	for _, f := range []*os.File{s.tcp, s.tcp6} {
		if f == nil {
			continue
		}
		b, err := s.readAll(f)
		if err != nil {
			return fmt.Errorf("walk sockets: %w", err)
		}
		if err := ParseProcNetTCP(b, filter); err != nil {
			return fmt.Errorf("walk sockets: %w", err)
		}
	}
	return nil
}

// Snapshot counts the sockets selected by q.
func (s *Sampler) Snapshot(q Query) (*Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pr, err := s.portRange()
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	t := newTally(q, pr, s.source)
	if err := s.walk(t.states, t.add); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return t.finish(), nil
}

// portRange reads ip_local_port_range; a fake sampler has the Linux default.
func (s *Sampler) portRange() (PortRange, error) {
	if s.portRangeFile == nil {
		return PortRange{32768, 60999}, nil
	}
	b, err := s.readAll(s.portRangeFile)
	if err != nil {
		return PortRange{}, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return PortRange{}, fmt.Errorf("parse ip_local_port_range %q: want two numbers", b)
	}
	lo, err1 := strconv.ParseUint(f[0], 10, 16)
	hi, err2 := strconv.ParseUint(f[1], 10, 16)
	if err1 != nil || err2 != nil || lo > hi {
		return PortRange{}, fmt.Errorf("parse ip_local_port_range %q: bad range", b)
	}
	return PortRange{uint16(lo), uint16(hi)}, nil
}

// Counters reads the kernel TCP counters of the namespace.
func (s *Sampler) Counters() (Counters, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sockstat == nil {
		return Counters{}, fmt.Errorf("read counters: no /proc files (fake sampler)")
	}
	var parsed [3]map[string]map[string]int64
	for i, f := range []*os.File{s.sockstat, s.snmp, s.netstat} {
		b, err := s.readAll(f)
		if err != nil {
			return Counters{}, fmt.Errorf("read counters: %w", err)
		}
		if i == 0 {
			parsed[i], err = ParseSockstat(bytesReader(b))
		} else {
			parsed[i], err = ParseProtoStats(bytesReader(b))
		}
		if err != nil {
			return Counters{}, fmt.Errorf("read counters: %w", err)
		}
	}
	return CountersFrom(parsed[0], parsed[1], parsed[2]), nil
}

// Sysctls returns the namespace's sysctls that bound the port budget,
// keyed like "net.ipv4.ip_local_port_range" (the keys
// capacity.KernelFromSysctl reads). Sysctls the kernel lacks are left out.
func (s *Sampler) Sysctls() (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.sysctls))
	for name, f := range s.sysctls {
		b, err := s.readAll(f)
		if err != nil {
			return nil, fmt.Errorf("read sysctls: %w", err)
		}
		out[name] = strings.Join(strings.Fields(string(b)), " ")
	}
	return out, nil
}
