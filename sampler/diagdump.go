package sampler

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Netlink message types and sizes (linux/netlink.h, linux/inet_diag.h).
const (
	nlmsgHdrLen  = 16
	nlmsgNoop    = 1
	nlmsgError   = 2
	nlmsgDone    = 3
	nlmFDumpIntr = 0x10

	// tcpDiagGetSock is TCPDIAG_GETSOCK, the legacy inet_diag request. The
	// kernel turns it into an AF_UNSPEC dump: both families in one walk of
	// the socket hash, where SOCK_DIAG_BY_FAMILY needs one walk each.
	tcpDiagGetSock       = 18
	inetDiagReqCompatLen = 60 // sizeof(struct inet_diag_req)
)

// diagReq names the requests a Sampler sends.
type diagReq int

const (
	reqV4     diagReq = iota // SOCK_DIAG_BY_FAMILY, AF_INET
	reqV6                    // SOCK_DIAG_BY_FAMILY, AF_INET6
	reqCompat                // TCPDIAG_GETSOCK, both families
)

func (r diagReq) String() string {
	return [...]string{"AF_INET", "AF_INET6", "TCPDIAG_GETSOCK"}[r]
}

// MarshalInetDiagReqCompat returns a legacy struct inet_diag_req asking for
// the TCP sockets of both families in the given states (send it as type
// TCPDIAG_GETSOCK with NLM_F_DUMP).
func MarshalInetDiagReqCompat(states StateSet) []byte {
	b := make([]byte, inetDiagReqCompatLen)
	// idiag_family, src_len, dst_len, ext and the sockid stay zero.
	binary.NativeEndian.PutUint32(b[52:56], states.kernelMask())
	return b
}

// ParseDumpDatagram decodes one datagram of a sock_diag dump reply: it calls
// fn for every socket message with sequence number seq and reports whether
// the dump is done. A kernel error in the datagram is returned as a
// syscall.Errno.
func ParseDumpDatagram(b []byte, seq uint32, fn func(*Socket)) (done bool, err error) {
	var s Socket
	for len(b) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		typ := binary.NativeEndian.Uint16(b[4:6])
		mseq := binary.NativeEndian.Uint32(b[8:12])
		if l < nlmsgHdrLen || l > len(b) {
			return false, fmt.Errorf("parse dump: message length %d of %d bytes", l, len(b))
		}
		data := b[nlmsgHdrLen:l]
		if al := (l + 3) &^ 3; al < len(b) {
			b = b[al:]
		} else {
			b = nil
		}
		if mseq != seq {
			continue // left over from an earlier, abandoned dump
		}
		switch typ {
		case nlmsgNoop:
		case nlmsgDone, nlmsgError:
			if len(data) >= 4 {
				if e := int32(binary.NativeEndian.Uint32(data)); e < 0 {
					return true, syscall.Errno(-e)
				}
			}
			if typ == nlmsgDone {
				return true, nil
			}
		case sockDiagByFamily, tcpDiagGetSock:
			if err := ParseInetDiagMsg(data, &s); err != nil {
				return false, err
			}
			fn(&s)
		}
	}
	return false, nil
}

// dumpAll dumps the sockets of both families.
func (s *Sampler) dumpAll(states StateSet, fn func(*Socket)) error {
	if s.compat {
		return s.dump(reqCompat, states, fn)
	}
	if err := s.dump(reqV4, states, fn); err != nil {
		return err
	}
	return s.dump(reqV6, states, fn)
}

// dump runs one dump. An error leaves the netlink socket at an unknown
// place in the stream, so a real socket is closed and redialed on the next
// call.
func (s *Sampler) dump(req diagReq, states StateSet, fn func(*Socket)) error {
	if s.conn == nil {
		if err := s.redial(); err != nil {
			return err
		}
	}
	err := s.dumpOnce(req, states, fn)
	if err != nil && req == reqV6 && errors.Is(err, syscall.ENOENT) {
		return nil // IPv6 disabled: no inet6 diag handler
	}
	if err != nil && !isFake(s.conn) {
		s.conn.Close()
		s.conn = nil
	}
	if err != nil {
		return fmt.Errorf("dump sockets (%s): %w", req, err)
	}
	return nil
}

func (s *Sampler) dumpOnce(req diagReq, states StateSet, fn func(*Socket)) error {
	m := netlink.Message{Header: netlink.Header{Flags: netlink.Request | netlink.Dump}}
	switch req {
	case reqV4:
		m.Header.Type, m.Data = sockDiagByFamily, MarshalInetDiagReq(unix.AF_INET, states)
	case reqV6:
		m.Header.Type, m.Data = sockDiagByFamily, MarshalInetDiagReq(unix.AF_INET6, states)
	case reqCompat:
		m.Header.Type, m.Data = tcpDiagGetSock, MarshalInetDiagReqCompat(states)
	}
	sent, err := s.conn.Send(m)
	if err != nil {
		return err
	}
	seq := sent.Header.Sequence
	rc, err := s.conn.SyscallConn()
	if err != nil {
		// No socket underneath (a fake kernel): the library's receive path.
		var sk Socket
		for m, err := range s.conn.ReceiveIter() {
			if err != nil {
				return err
			}
			if m.Header.Sequence != seq || (m.Header.Type != sockDiagByFamily && m.Header.Type != tcpDiagGetSock) {
				continue
			}
			if err := ParseInetDiagMsg(m.Data, &sk); err != nil {
				return err
			}
			fn(&sk)
		}
		return nil
	}
	// Read the datagrams into one reused buffer: no allocation per
	// datagram, one system call each.
	if s.rbuf == nil {
		s.rbuf = make([]byte, 2*dumpBufferSize)
	}
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), s.rbuf, 0)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		done, err := ParseDumpDatagram(s.rbuf[:n], seq, fn)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// redial opens the sock_diag socket in the sampler's namespace. A 32 KiB
// receive buffer makes the kernel fill 32 KiB per dump step (netlink caps
// its dump skbs there) instead of one page.
func (s *Sampler) redial() error {
	cfg := &netlink.Config{MessageBufferSize: dumpBufferSize}
	if s.nsfd >= 0 {
		cfg.NetNS = s.nsfd
	}
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, cfg)
	if err != nil {
		return fmt.Errorf("dial sock_diag: %w", err)
	}
	s.conn = c
	return nil
}

// isFake reports whether c has no real socket underneath (nltest); such a
// connection cannot be redialed.
func isFake(c *netlink.Conn) bool {
	_, err := c.SyscallConn()
	return err != nil
}
