package loadgen

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
)

// The HTTP/1.x response parser of the HTTP driver: it reads exactly one
// response off a pooled connection, so that the next request on the same
// connection reads its own response, and says whether the connection may be
// reused. It is table-tested and fuzzed in httpresp_test.go.

var errNoResponse = fmt.Errorf("connection closed before a response: %w", io.EOF)

// maxInterim bounds the interim (1xx) responses skipped before the final
// one, as net/http does.
const maxInterim = 5

// maxSnip is how much of an error body a response keeps.
const maxSnip = 512

type response struct {
	status     int
	close      bool
	retryAfter string
}

// readResponse parses one HTTP/1.x response and consumes its body, keeping
// up to maxSnip bytes of an error body in *snip. Interim responses (100
// Continue, 102, 103 Early Hints) are skipped: the response returned is the
// final one, so that it is not left for the next request to read. 101
// Switching Protocols is final and closes the connection. The connection is
// to be closed after an HTTP/1.0 response, a "Connection" header whose token
// list holds "close", or a body delimited by the end of the connection. It
// allocates nothing for a normal 204 response.
func readResponse(br *bufio.Reader, snip *[]byte) (response, error) {
	*snip = (*snip)[:0]
	var r response
	var clen int64
	var chunked bool
	var err error
	for interim := 0; ; interim++ {
		r, clen, chunked, err = readHead(br, interim == 0)
		if err != nil {
			return r, err
		}
		if r.status >= 200 || r.status == 101 {
			break
		}
		if interim == maxInterim {
			return r, fmt.Errorf("read response: more than %d interim (1xx) responses", maxInterim)
		}
	}
	if r.status == 101 {
		r.close = true // the peer now speaks another protocol
		return r, nil
	}
	if r.status == 204 || r.status == 304 {
		return r, nil
	}
	keep := r.status < 200 || r.status > 299
	switch {
	case chunked:
		return r, readChunked(br, snip, keep)
	case clen >= 0:
		return r, discardN(br, clen, snip, keep)
	default:
		r.close = true
		return r, discardN(br, untilEOF, snip, keep)
	}
}

// readHead reads one status line and its header fields. first says that no
// byte of the response has been read yet: a connection closed (or reset)
// there is errNoResponse, a stale pooled connection.
func readHead(br *bufio.Reader, first bool) (r response, clen int64, chunked bool, err error) {
	clen = -1
	line, err := readLine(br)
	if err != nil {
		if first && len(line) == 0 && (err == io.EOF || isReset(err)) {
			return r, clen, false, errNoResponse
		}
		return r, clen, false, err
	}
	code, ok := parseStatusLine(line)
	if !ok {
		return r, clen, false, fmt.Errorf("malformed status line %q", bytes.TrimSpace(line))
	}
	r.status = code
	r.close = line[7] == '0' // HTTP/1.0
	for {
		line, err = readLine(br)
		if err != nil {
			return r, clen, false, fmt.Errorf("read headers: %w", err)
		}
		if isBlankLine(line) {
			return r, clen, chunked, nil
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
				return r, clen, false, fmt.Errorf("bad Content-Length %q", val)
			}
			clen = n
		case bytes.EqualFold(key, []byte("Transfer-Encoding")):
			chunked = hasToken(val, "chunked")
		case bytes.EqualFold(key, []byte("Connection")):
			if hasToken(val, "close") {
				r.close = true
			}
		case bytes.EqualFold(key, []byte("Retry-After")):
			r.retryAfter = string(val)
		}
	}
}

// parseStatusLine reads "HTTP/1.x NNN reason": the status code, from 100 to
// 999.
func parseStatusLine(line []byte) (int, bool) {
	if len(line) < 13 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false
	}
	if c := line[12]; c != ' ' && c != '\r' && c != '\n' {
		return 0, false
	}
	code, ok := atoi3(line[9:12])
	return code, ok && code >= 100
}

// isBlankLine reports whether line is "\r\n" or "\n": the end of a header
// block.
func isBlankLine(line []byte) bool {
	return len(line) == 1 || len(line) == 2 && line[0] == '\r'
}

// hasToken reports whether the comma-separated list val (a Connection or
// Transfer-Encoding header) holds token, in any case. It allocates nothing.
func hasToken(val []byte, token string) bool {
	for len(val) > 0 {
		var item []byte
		if k := bytes.IndexByte(val, ','); k >= 0 {
			item, val = val[:k], val[k+1:]
		} else {
			item, val = val, nil
		}
		if bytes.EqualFold(bytes.Trim(item, " \t"), []byte(token)) {
			return true
		}
	}
	return false
}

// readLine reads one line. A line longer than the reader's buffer (a long
// header the parser does not read, such as a cookie) is consumed to its
// end and returned cut to the buffer's length, without its line end: it
// allocates only then.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return line, err
	}
	head := append([]byte(nil), line...)
	for err == bufio.ErrBufferFull {
		_, err = br.ReadSlice('\n')
	}
	if err != nil {
		return head, err
	}
	return head, nil
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

// untilEOF is a body length that stands for "until the peer closes".
const untilEOF = 1 << 40

// discardN consumes n bytes (or until EOF when n is untilEOF), keeping a
// prefix in *snip when keep is set.
func discardN(br *bufio.Reader, n int64, snip *[]byte, keep bool) error {
	toEOF := n == untilEOF
	for n > 0 {
		b, err := br.Peek(1)
		if len(b) == 0 {
			if err == io.EOF && toEOF {
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
		if keep && len(*snip) < maxSnip {
			room := min(maxSnip-len(*snip), len(chunk))
			*snip = append(*snip, chunk[:room]...)
		}
		br.Discard(int(avail))
		n -= avail
	}
	return nil
}

// readChunked consumes a chunked body and its trailers; *snip keeps the
// start of the body's data, without the chunk framing.
func readChunked(br *bufio.Reader, snip *[]byte, keep bool) error {
	for i := 0; i < 1<<20; i++ {
		line, err := readLine(br)
		if err != nil {
			return fmt.Errorf("read chunk size: %w", err)
		}
		line = bytes.TrimSpace(line)
		if k := bytes.IndexByte(line, ';'); k >= 0 {
			line = bytes.TrimSpace(line[:k])
		}
		size, err := strconv.ParseInt(string(line), 16, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if size == 0 {
			// trailers until an empty line
			for {
				t, err := readLine(br)
				if err != nil {
					return fmt.Errorf("read trailer: %w", err)
				}
				if isBlankLine(t) {
					return nil
				}
			}
		}
		if err := discardN(br, size, snip, keep); err != nil {
			return err
		}
		end, err := readLine(br)
		if err != nil {
			return fmt.Errorf("read chunk end: %w", err)
		}
		if !isBlankLine(end) {
			return fmt.Errorf("bad chunk end %q", bytes.TrimSpace(end))
		}
	}
	return fmt.Errorf("read body: too many chunks")
}

func isReset(err error) bool { return Classify(err) == ClassECONNRESET }
