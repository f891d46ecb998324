package pgsink

import (
	"bytes"
	"encoding/binary"
	"errors"
)

var copySignature = []byte("PGCOPY\n\xff\r\n\x00")

// copyCounter counts the rows of a COPY FROM STDIN stream fed in arbitrary
// chunks. Binary streams (recognised by their signature) are walked tuple by
// tuple: a 16-bit field count per tuple, a 32-bit length per field (-1:
// NULL), and a -1 field count as trailer. Text and CSV streams count lines
// (a CSV value holding a newline is miscounted; a "\." end line is not a row).
type copyCounter struct {
	csv, header bool
	started     bool
	binary      bool
	rows        int64
	err         error

	// text
	line     int // bytes in the current line so far
	lineHead [3]byte

	// binary
	state  uint8
	acc    [19]byte
	accN   int
	skip   int64
	fields int
}

const (
	bHeader uint8 = iota
	bSkip         // header extension
	bTuple
	bFieldLen
	bFieldData
	bDone
)

var errBadCopy = errors.New("invalid binary COPY data")

func (c *copyCounter) feed(p []byte) {
	if c.err != nil || len(p) == 0 {
		return
	}
	if !c.started {
		// the signature decides; a stream shorter than it is text
		need := len(copySignature) - c.accN
		if need > len(p) {
			need = len(p)
		}
		copy(c.acc[c.accN:], p[:need])
		if !bytes.HasPrefix(copySignature, c.acc[:c.accN+need]) {
			c.started = true
			buf := append([]byte(nil), c.acc[:c.accN]...)
			c.accN = 0
			c.feedText(buf)
			c.feedText(p)
			return
		}
		c.accN += need
		p = p[need:]
		if c.accN < len(copySignature) {
			return
		}
		c.started, c.binary = true, true
		c.state, c.accN = bHeader, 0
	}
	if c.binary {
		c.feedBinary(p)
	} else {
		c.feedText(p)
	}
}

func (c *copyCounter) feedText(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		for k := 0; k < len(seg) && c.line+k < len(c.lineHead); k++ {
			c.lineHead[c.line+k] = seg[k]
		}
		c.line += len(seg)
		if i < 0 {
			return
		}
		c.endLine()
		p = p[i+1:]
	}
}

func (c *copyCounter) endLine() {
	end := (c.line == 2 || c.line == 3 && c.lineHead[2] == '\r') && c.lineHead[0] == '\\' && c.lineHead[1] == '.'
	if !end {
		c.rows++
	}
	c.line = 0
}

// take copies up to n bytes into acc; it reports whether acc holds n.
func (c *copyCounter) take(p *[]byte, n int) bool {
	k := copy(c.acc[c.accN:n], *p)
	c.accN += k
	*p = (*p)[k:]
	return c.accN == n
}

func (c *copyCounter) feedBinary(p []byte) {
	for len(p) > 0 && c.err == nil {
		switch c.state {
		case bHeader: // flags (4) and extension length (4) after the signature
			if !c.take(&p, 8) {
				return
			}
			c.skip = int64(binary.BigEndian.Uint32(c.acc[4:8]))
			c.accN = 0
			c.state = bSkip
			if c.skip == 0 {
				c.state = bTuple
			}
		case bSkip, bFieldData:
			n := int64(len(p))
			if n > c.skip {
				n = c.skip
			}
			p = p[n:]
			c.skip -= n
			if c.skip == 0 {
				if c.state == bSkip {
					c.state = bTuple
				} else {
					c.nextField()
				}
			}
		case bTuple:
			if !c.take(&p, 2) {
				return
			}
			n := int16(binary.BigEndian.Uint16(c.acc[:2]))
			c.accN = 0
			if n == -1 {
				c.state = bDone
				continue
			}
			if n < 0 {
				c.err = errBadCopy
				return
			}
			c.rows++
			c.fields = int(n)
			c.nextField()
		case bFieldLen:
			if !c.take(&p, 4) {
				return
			}
			l := int32(binary.BigEndian.Uint32(c.acc[:4]))
			c.accN = 0
			c.fields--
			if l < -1 {
				c.err = errBadCopy
				return
			}
			if l > 0 {
				c.skip = int64(l)
				c.state = bFieldData
			} else {
				c.nextField()
			}
		case bDone:
			c.err = errors.New("invalid binary COPY data: bytes after the trailer")
			return
		}
	}
}

func (c *copyCounter) nextField() {
	if c.fields > 0 {
		c.state = bFieldLen
	} else {
		c.state = bTuple
	}
}

// finish returns the row count of the complete stream.
func (c *copyCounter) finish() (int64, error) {
	if c.err != nil {
		return 0, c.err
	}
	if !c.started && c.accN > 0 { // shorter than the signature: text
		c.started = true
		buf := append([]byte(nil), c.acc[:c.accN]...)
		c.accN = 0
		c.feedText(buf)
	}
	if c.binary {
		if c.state != bDone && c.state != bTuple || c.accN != 0 {
			return 0, errors.New("invalid binary COPY data: stream ends inside a tuple")
		}
		return c.rows, nil
	}
	if c.line > 0 {
		c.endLine()
	}
	rows := c.rows
	if c.csv && c.header && rows > 0 {
		rows--
	}
	return rows, nil
}
