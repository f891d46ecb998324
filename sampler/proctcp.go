package sampler

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// UserHZ is the clock tick /proc/net/tcp reports timers in (USER_HZ, 100 on
// every Linux architecture loadcap runs on).
const UserHZ = 100

// ParseProcNetTCP parses the content of /proc/net/tcp or /proc/net/tcp6 and
// calls fn for every socket line. The Socket passed to fn is reused between
// calls. The timer column (tm->when) is in USER_HZ ticks; it becomes
// Socket.Expires.
func ParseProcNetTCP(b []byte, fn func(*Socket)) error {
	// Skip the header line.
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	} else {
		return nil
	}
	var s Socket
	for lineNo := 2; len(b) > 0; lineNo++ {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		if err := parseProcTCPLine(line, &s); err != nil {
			if err == errBlank {
				continue
			}
			return fmt.Errorf("parse /proc/net/tcp line %d: %w", lineNo, err)
		}
		fn(&s)
	}
	return nil
}

var errBlank = fmt.Errorf("blank line")

// procSeen is the set of sockets one walk of /proc/net/tcp{,6} has counted.
//
// The kernel writes these files a page (27 sockets) per read and, at the
// next read, finds its place in the socket hash again by position; a socket
// opened or closed in between shifts that position, so the kernel writes
// some sockets a second time (and skips others, which a reader cannot
// undo). Under connection churn a TIME_WAIT count over /proc would be too
// high without this set. A netlink dump resumes the same way, but once per
// 32 KiB of messages (about 370 sockets) instead of every 27: measured under
// the same churn, 1 repeated socket in 5,000 dumps, against up to 49 in 200
// /proc walks. It is not deduplicated, which would cost a map insert per
// socket on the fast path.
type procSeen map[procKey]struct{}

// procKey identifies a socket in one walk: its addresses (a 4-tuple is
// unique among connected, TIME_WAIT and request sockets), and for a
// listening socket also its inode, since SO_REUSEPORT listeners share an
// address.
type procKey struct {
	local, remote netip.AddrPort
	inode         uint32
}

// first reports whether sk has not been seen in this walk, and records it.
func (m procSeen) first(sk *Socket) bool {
	k := procKey{local: sk.Local, remote: sk.Remote}
	if sk.State == Listen {
		k.inode = sk.Inode
	}
	if _, dup := m[k]; dup {
		return false
	}
	m[k] = struct{}{}
	return true
}

// nextField returns the next whitespace-separated field of line and the rest.
func nextField(line []byte) (field, rest []byte) {
	i := 0
	for i < len(line) && line[i] == ' ' {
		i++
	}
	j := i
	for j < len(line) && line[j] != ' ' {
		j++
	}
	return line[i:j], line[j:]
}

func parseProcTCPLine(line []byte, s *Socket) error {
	var f [10][]byte
	rest := line
	n := 0
	for n < len(f) {
		f[n], rest = nextField(rest)
		if len(f[n]) == 0 {
			break
		}
		n++
	}
	if n == 0 {
		return errBlank
	}
	if n < len(f) {
		return fmt.Errorf("%d fields, want at least %d", n, len(f))
	}
	local, err := parseProcAddr(f[1])
	if err != nil {
		return fmt.Errorf("local address: %w", err)
	}
	remote, err := parseProcAddr(f[2])
	if err != nil {
		return fmt.Errorf("remote address: %w", err)
	}
	st, ok := parseHex(f[3])
	if !ok || st == 0 || st >= numStates {
		return fmt.Errorf("bad state %q", f[3])
	}
	// f[5] is "tr:tm->when": timer kind and ticks left.
	tr := f[5]
	colon := bytes.IndexByte(tr, ':')
	if colon < 0 {
		return fmt.Errorf("bad timer %q", tr)
	}
	timer, ok1 := parseHex(tr[:colon])
	when, ok2 := parseHex(tr[colon+1:])
	if !ok1 || !ok2 {
		return fmt.Errorf("bad timer %q", tr)
	}
	uid, ok1 := parseDec(f[7])
	inode, ok2 := parseDec(f[9])
	if !ok1 || !ok2 {
		return fmt.Errorf("bad uid %q or inode %q", f[7], f[9])
	}
	*s = Socket{
		State: State(st),
		Local: local, Remote: remote,
		UID: uint32(uid), Inode: uint32(inode),
		Timer: uint8(timer),
	}
	if timer != 0 {
		s.Expires = time.Duration(when) * (time.Second / UserHZ)
	}
	return nil
}

// parseProcAddr decodes "0100007F:1F90" (IPv4) or 32 hex digits and a port
// (IPv6). Each 32-bit word is printed in host byte order.
func parseProcAddr(b []byte) (netip.AddrPort, error) {
	colon := bytes.IndexByte(b, ':')
	if colon < 0 {
		return netip.AddrPort{}, fmt.Errorf("no port in %q", b)
	}
	port, ok := parseHex(b[colon+1:])
	if !ok || port > 0xffff {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", b)
	}
	hexAddr := b[:colon]
	var ip [16]byte
	switch len(hexAddr) {
	case 8, 32:
	default:
		return netip.AddrPort{}, fmt.Errorf("bad address %q", b)
	}
	for w := 0; w*8 < len(hexAddr); w++ {
		v, ok := parseHex(hexAddr[w*8 : w*8+8])
		if !ok {
			return netip.AddrPort{}, fmt.Errorf("bad address %q", b)
		}
		binary.NativeEndian.PutUint32(ip[w*4:], uint32(v))
	}
	var a netip.Addr
	if len(hexAddr) == 8 {
		a = netip.AddrFrom4([4]byte(ip[:4]))
	} else {
		a = netip.AddrFrom16(ip)
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}

func parseHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(c)
	}
	return v, true
}

func parseDec(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}
