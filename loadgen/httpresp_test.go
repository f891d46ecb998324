package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/profiles"
)

// nextResponse follows each response in the table: reading it after the
// response under test shows that the parser consumed exactly one response.
const nextResponse = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"

func TestReadResponse(t *testing.T) {
	long := strings.Repeat("e", 700)
	cases := []struct {
		name, in   string
		status     int
		close      bool
		retryAfter string
		snip       string
		err        string // substring; "" for none
		noNext     bool   // the body runs to the end of the stream
	}{
		{name: "204", in: "HTTP/1.1 204 No Content\r\nX-Influxdb-Version: 1.8\r\n\r\n", status: 204},
		{name: "200 with a length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", status: 200},
		{name: "2xx body not kept", in: "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", status: 200},
		{name: "400 partial write", in: "HTTP/1.1 400 Bad Request\r\nContent-Length: 27\r\n\r\n{\"error\":\"partial write\"}\r\n", status: 400, snip: "{\"error\":\"partial write\"}\r\n"},
		{name: "error body kept up to 512 bytes", in: "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 700\r\n\r\n" + long, status: 500, snip: long[:512]},
		{name: "chunked error body without framing", in: "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3\r\npar\r\na;ext=1\r\ntial write\r\n0\r\nX-Trailer: 1\r\n\r\n", status: 500, snip: "partial write"},
		{name: "gzip, chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n", status: 200},
		{name: "Retry-After", in: "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n", status: 503, retryAfter: "5"},
		{name: "Connection: close", in: "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", status: 204, close: true},
		{name: "Connection: keep-alive, close", in: "HTTP/1.1 204 No Content\r\nConnection: keep-alive, close\r\n\r\n", status: 204, close: true},
		{name: "Connection: Upgrade,CLOSE", in: "HTTP/1.1 204 No Content\r\nconnection: Upgrade,CLOSE\r\n\r\n", status: 204, close: true},
		{name: "Connection: keep-alive", in: "HTTP/1.1 204 No Content\r\nConnection: Keep-Alive\r\n\r\n", status: 204},
		{name: "Connection: closed is not close", in: "HTTP/1.1 204 No Content\r\nConnection: closed\r\n\r\n", status: 204},
		{name: "HTTP/1.0 closes", in: "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", status: 200, close: true},
		{name: "no length: body to the end", in: "HTTP/1.1 200 OK\r\n\r\nall of it", status: 200, close: true, noNext: true},
		{name: "304 has no body", in: "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", status: 304},
		{name: "100 Continue then 204", in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", status: 204},
		{name: "103 and 100 then 500", in: "HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\nboom", status: 500, snip: "boom"},
		{name: "interim Connection: close does not leak into the final response", in: "HTTP/1.1 100 Continue\r\nConnection: close\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", status: 204},
		{name: "too many interim responses", in: strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 6) + "HTTP/1.1 204 No Content\r\n\r\n", err: "interim"},
		{name: "five interim responses are fine", in: strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 5) + "HTTP/1.1 204 No Content\r\n\r\n", status: 204},
		{name: "101 is final and closes", in: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", status: 101, close: true},
		{name: "a 2-byte header line is not the end of the headers", in: "HTTP/1.1 200 OK\r\nx\nContent-Length: 2\r\n\r\nok", status: 200},
		{name: "a header longer than the buffer is skipped", in: "HTTP/1.1 400 Bad Request\r\nSet-Cookie: " + strings.Repeat("c", 5000) + "\r\nContent-Length: 3\r\n\r\nbad", status: 400, snip: "bad"},
		{name: "a long reason phrase", in: "HTTP/1.1 204 " + strings.Repeat("r", 5000) + "\r\n\r\n", status: 204},
		{name: "header without colon ignored", in: "HTTP/1.1 204 No Content\r\nnonsense\r\n\r\n", status: 204},
		{name: "bare LF line ends", in: "HTTP/1.1 200 OK\nContent-Length: 1\n\nx", status: 200},
		{name: "HTTP/2 status line", in: "HTTP/2 200 OK\r\n\r\n", err: "malformed status line"},
		{name: "letters in the code", in: "HTTP/1.1 20x OK\r\n\r\n", err: "malformed status line"},
		{name: "four-digit code", in: "HTTP/1.1 2000 OK\r\n\r\n", err: "malformed status line"},
		{name: "code below 100", in: "HTTP/1.1 099 Low\r\n\r\n", err: "malformed status line"},
		{name: "no space after the version", in: "HTTP/1.1_204 No Content\r\n\r\n", err: "malformed status line"},
		{name: "not HTTP", in: "ICY 200 OK\r\n\r\n", err: "malformed status line"},
		{name: "negative length", in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", err: "bad Content-Length"},
		{name: "length not a number", in: "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", err: "bad Content-Length"},
		{name: "truncated body", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", err: "read body", noNext: true},
		{name: "truncated headers", in: "HTTP/1.1 200 OK\r\nContent-Len", err: "read headers", noNext: true},
		{name: "bad chunk size", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", err: "bad chunk size"},
		{name: "chunk longer than its size", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", err: "bad chunk end"},
		{name: "empty stream", in: "", err: "connection closed before a response", noNext: true},
		{name: "closed after an interim response", in: "HTTP/1.1 100 Continue\r\n\r\n", err: "EOF", noNext: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stream := c.in
			if !c.noNext {
				stream += nextResponse
			}
			br := bufio.NewReader(strings.NewReader(stream))
			var snip []byte
			r, err := readResponse(br, &snip)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want one containing %q", err, c.err)
				}
				if wantStale := c.in == ""; errors.Is(err, errNoResponse) != wantStale {
					t.Fatalf("err %v: errNoResponse %v, want %v (only a stream without any byte is a stale connection)", err, !wantStale, wantStale)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.status != c.status || r.close != c.close || r.retryAfter != c.retryAfter || string(snip) != c.snip {
				t.Fatalf("got status %d close %v retryAfter %q snip %q; want %d %v %q %q", r.status, r.close, r.retryAfter, snip, c.status, c.close, c.retryAfter, c.snip)
			}
			if c.noNext || r.close {
				return
			}
			next, err := readResponse(br, &snip)
			if err != nil || next.status != 202 {
				t.Fatalf("the next response: status %d, %v; want 202: the parser did not consume exactly one response", next.status, err)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("bytes left after the next response")
			}
		})
	}
}

// TestHTTPInterimResponseOverSocket drives writes through the HTTP driver
// against a loopback server that sends "100 Continue" before each final
// response: every write gets its own final status, on one connection.
func TestHTTPInterimResponseOverSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					if _, err := readRequest(br); err != nil {
						return
					}
					// alternate the final status, so a response read one
					// write late shows
					final := "HTTP/1.1 204 No Content\r\n\r\n"
					if n%2 == 1 {
						final = "HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy"
					}
					if _, err := io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n"+final); err != nil {
						return
					}
				}
			}()
		}
	}()
	spec, _ := ParseTarget("http://" + ln.Addr().String() + "/write?db=x")
	g, _ := NewGenerator(DefaultGenConfig())
	d, err := NewHTTPDriver(spec, &profiles.Client{Conn: profiles.ConnPool, PoolSize: 1, IdleSize: 1}, g, DriverOptions{Batch: 1, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s := d.NewSession()
	for i := 0; i < 6; i++ {
		r := s.Write(context.Background(), uint64(i), time.Now())
		want := 204
		if i%2 == 1 {
			want = 503
		}
		if r.Status != want {
			t.Fatalf("write %d: status %d (%v), want %d", i, r.Status, r.Err, want)
		}
	}
	if n := d.NewConnections(); n != 1 {
		t.Fatalf("%d connections opened, want 1 (the connection stays usable)", n)
	}
}

// FuzzReadResponse checks the response parser two ways. Any byte stream:
// no panic, an error body kept to at most 512 bytes, and a final status
// from 101 to 999 that is not interim. A well-formed response built from
// the inputs (any status, Connection header, body, framing and interim
// responses before it), followed by another response: the parser returns
// its status, its close flag and error body, and leaves the next response
// for the next read. A hang is caught by the fuzzing engine's worker
// timeout (no goroutine per input: it made coverage flaky and minimization
// slow).
func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 204 No Content\r\n\r\n"), uint16(204), "keep-alive", []byte(""), uint8(0), uint8(0), uint8(1))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad\r\nContent-Length: 3\r\n\r\nbad"), uint16(400), "keep-alive, close", []byte("partial write"), uint8(1), uint8(1), uint8(4))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\n\r\n"), uint16(503), "close", []byte("busy"), uint8(2), uint8(2), uint8(3))
	f.Add([]byte("HTTP/1.0 200 OK\r\n\r\nbody"), uint16(101), "Upgrade", []byte{}, uint8(0), uint8(0), uint8(0))
	f.Add([]byte("HTTP/1.1 2000 OK\r\n\r\n"), uint16(999), "", []byte("x"), uint8(1), uint8(9), uint8(0))
	f.Fuzz(func(t *testing.T, raw []byte, status uint16, conn string, body []byte, framing, interim, chunk uint8) {
		var snip []byte
		var r response
		var err error
		r, err = readResponse(bufio.NewReaderSize(bytes.NewReader(raw), 64), &snip)
		if len(snip) > maxSnip {
			t.Fatalf("kept %d bytes of the body, more than %d", len(snip), maxSnip)
		}
		if err == nil && (r.status < 101 || r.status > 999 || r.status > 101 && r.status < 200) {
			t.Fatalf("%q: final status %d", raw, r.status)
		}

		// A well-formed response.
		code := 100 + int(status)%900
		if code < 200 && code != 101 {
			code += 100 // a final status
		}
		if strings.ContainsAny(conn, "\r\n") || len(conn) > 48 {
			return // one header line, within the 64-byte buffer below (a longer one is cut)
		}
		var b bytes.Buffer
		for i := 0; i < int(interim%(maxInterim+1)); i++ {
			fmt.Fprintf(&b, "HTTP/1.1 1%02d Interim\r\nConnection: close\r\n\r\n", i*3%100)
		}
		fmt.Fprintf(&b, "HTTP/1.1 %d Whatever\r\nConnection: %s\r\n", code, conn)
		hasBody := code != 101 && code != 204 && code != 304
		toEOF := false
		switch framing % 3 {
		case 0:
			fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(body))
			if hasBody {
				b.Write(body)
			}
		case 1:
			b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
			if hasBody {
				size := int(chunk%16) + 1
				for rest := body; len(rest) > 0; {
					n := min(size, len(rest))
					fmt.Fprintf(&b, "%x\r\n%s\r\n", n, rest[:n])
					rest = rest[n:]
				}
				b.WriteString("0\r\n\r\n")
			}
		case 2:
			b.WriteString("\r\n")
			if hasBody {
				b.Write(body)
				toEOF = true
			}
		}
		if !toEOF {
			b.WriteString(nextResponse)
		}
		wantClose := toEOF || code == 101
		for _, tok := range strings.Split(conn, ",") {
			if strings.EqualFold(strings.Trim(tok, " \t"), "close") {
				wantClose = true
			}
		}
		wantSnip := ""
		if hasBody && (code < 200 || code > 299) {
			wantSnip = string(body[:min(len(body), maxSnip)])
		}
		br := bufio.NewReaderSize(bytes.NewReader(b.Bytes()), 64)
		r, err = readResponse(br, &snip)
		if err != nil {
			t.Fatalf("%q: %v", b.Bytes(), err)
		}
		if r.status != code || r.close != wantClose || string(snip) != wantSnip {
			t.Fatalf("%q: status %d close %v snip %q; want %d %v %q", b.Bytes(), r.status, r.close, snip, code, wantClose, wantSnip)
		}
		if toEOF {
			return
		}
		if next, err := readResponse(br, &snip); err != nil || next.status != 202 {
			t.Fatalf("%q: the next response: status %d, %v; want 202", b.Bytes(), next.status, err)
		}
	})
}
