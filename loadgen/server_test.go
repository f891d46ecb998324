package loadgen

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"testing"
)

// startNoContentServer is a minimal HTTP/1.1 keep-alive server that reads
// each request with its body and answers 204: the cheapest possible peer,
// so that a benchmark measures the client.
func startNoContentServer(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveNoContent(c)
		}
	}()
	return "http://" + ln.Addr().String()
}

func serveNoContent(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	resp := []byte("HTTP/1.1 204 No Content\r\nX-Influxdb-Version: test\r\n\r\n")
	for {
		clen := 0
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
			if k := bytes.IndexByte(line, ':'); k > 0 && bytes.EqualFold(line[:k], []byte("Content-Length")) {
				clen = 0
				for _, ch := range bytes.TrimSpace(line[k+1:]) {
					clen = clen*10 + int(ch-'0')
				}
			}
		}
		if _, err := br.Discard(clen); err != nil {
			return
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

// readRequest reads one HTTP/1.1 request with its body and returns its
// request line.
func readRequest(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	clen := 0
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		if h == "\r\n" {
			break
		}
		fmt.Sscanf(h, "Content-Length: %d", &clen)
	}
	_, err = br.Discard(clen)
	return line, err
}
