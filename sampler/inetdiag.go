package sampler

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// sock_diag constants (linux/sock_diag.h, linux/inet_diag.h).
const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	inetDiagReqLen   = 56 // sizeof(struct inet_diag_req_v2)
	inetDiagMsgLen   = 72 // sizeof(struct inet_diag_msg)
)

// MarshalInetDiagReq returns an inet_diag_req_v2 that dumps the TCP sockets
// of family (unix.AF_INET or unix.AF_INET6) in the given states.
func MarshalInetDiagReq(family uint8, states StateSet) []byte {
	b := make([]byte, inetDiagReqLen)
	b[0] = family
	b[1] = unix.IPPROTO_TCP
	// b[2] idiag_ext = 0: no extensions, the bare inet_diag_msg is enough.
	binary.NativeEndian.PutUint32(b[4:8], states.kernelMask())
	// The inet_diag_sockid stays zero: a dump ignores it.
	return b
}

// ParseInetDiagMsg decodes the inet_diag_msg at the start of b (the payload
// of one SOCK_DIAG_BY_FAMILY reply; trailing attributes are ignored) into s.
func ParseInetDiagMsg(b []byte, s *Socket) error {
	if len(b) < inetDiagMsgLen {
		return fmt.Errorf("parse inet_diag_msg: %d bytes, want at least %d", len(b), inetDiagMsgLen)
	}
	family := b[0]
	sport := binary.BigEndian.Uint16(b[4:6])
	dport := binary.BigEndian.Uint16(b[6:8])
	var src, dst netip.Addr
	switch family {
	case unix.AF_INET:
		src = netip.AddrFrom4([4]byte(b[8:12]))
		dst = netip.AddrFrom4([4]byte(b[24:28]))
	case unix.AF_INET6:
		src = netip.AddrFrom16([16]byte(b[8:24]))
		dst = netip.AddrFrom16([16]byte(b[24:40]))
	default:
		return fmt.Errorf("parse inet_diag_msg: unknown family %d", family)
	}
	*s = Socket{
		State:   State(b[1]),
		Timer:   b[2],
		Local:   netip.AddrPortFrom(src, sport),
		Remote:  netip.AddrPortFrom(dst, dport),
		Expires: time.Duration(binary.NativeEndian.Uint32(b[52:56])) * time.Millisecond,
		UID:     binary.NativeEndian.Uint32(b[64:68]),
		Inode:   binary.NativeEndian.Uint32(b[68:72]),
	}
	return nil
}

// MarshalInetDiagMsg encodes s as an inet_diag_msg, the inverse of
// ParseInetDiagMsg; it builds synthetic kernel replies for tests.
func MarshalInetDiagMsg(s *Socket) []byte {
	b := make([]byte, inetDiagMsgLen)
	la, ra := s.Local.Addr(), s.Remote.Addr()
	if la.Is4() {
		b[0] = unix.AF_INET
		l4, r4 := la.As4(), ra.Unmap().As4()
		copy(b[8:12], l4[:])
		copy(b[24:28], r4[:])
	} else {
		b[0] = unix.AF_INET6
		l16, r16 := la.As16(), ra.As16()
		copy(b[8:24], l16[:])
		copy(b[24:40], r16[:])
	}
	b[1] = byte(s.State)
	b[2] = s.Timer
	binary.BigEndian.PutUint16(b[4:6], s.Local.Port())
	binary.BigEndian.PutUint16(b[6:8], s.Remote.Port())
	binary.NativeEndian.PutUint32(b[52:56], uint32(s.Expires/time.Millisecond))
	binary.NativeEndian.PutUint32(b[64:68], s.UID)
	binary.NativeEndian.PutUint32(b[68:72], s.Inode)
	return b
}
