package pgsink

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// binaryCopy builds a binary COPY stream: the signature, flags, a header
// extension of ext bytes, one tuple per entry of tuples (each a list of
// field lengths, -1 for NULL), and the trailer when trailer is set.
func binaryCopy(ext int, tuples [][]int, trailer bool) []byte {
	b := append([]byte(nil), copySignature...)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(ext))
	b = append(b, bytes.Repeat([]byte{'x'}, ext)...)
	for _, fields := range tuples {
		b = binary.BigEndian.AppendUint16(b, uint16(len(fields)))
		for _, l := range fields {
			b = binary.BigEndian.AppendUint32(b, uint32(int32(l)))
			if l > 0 {
				b = append(b, bytes.Repeat([]byte{0xff}, l)...)
			}
		}
	}
	if trailer {
		b = binary.BigEndian.AppendUint16(b, 0xffff)
	}
	return b
}

// countCopy feeds data to a counter in chunks of size chunk (0: at once).
func countCopy(data []byte, csv, header bool, chunk int) (int64, error) {
	c := copyCounter{csv: csv, header: header}
	if chunk <= 0 {
		chunk = len(data) + 1
	}
	for p := data; len(p) > 0; {
		n := min(chunk, len(p))
		c.feed(p[:n])
		p = p[n:]
	}
	return c.finish()
}

func TestCopyCounter(t *testing.T) {
	tuples := [][]int{{8, 4, -1, 0}, {8, 4, 5, 1}, {}, {8}}
	cases := []struct {
		name        string
		data        []byte
		csv, header bool
		rows        int64
		err         string
	}{
		{name: "empty", data: nil},
		{name: "text lines", data: []byte("a\tb\nc\td\ne\tf\n"), rows: 3},
		{name: "text without a final newline", data: []byte("a\nb"), rows: 2},
		{name: "text end marker", data: []byte("a\nb\n\\.\n"), rows: 2},
		{name: "text end marker with CR", data: []byte("a\r\n\\.\r\n"), rows: 1},
		{name: "a row starting with \\. is a row", data: []byte("\\.x\n\\\n"), rows: 2},
		{name: "empty lines are rows", data: []byte("\n\n"), rows: 2},
		{name: "csv header", data: []byte("h1,h2\n1,2\n3,4\n"), csv: true, header: true, rows: 2},
		{name: "csv header only", data: []byte("h1,h2\n"), csv: true, header: true, rows: 0},
		{name: "csv without header", data: []byte("1,2\n3,4\n"), csv: true, rows: 2},
		{name: "header is for csv only", data: []byte("1\n2\n"), header: true, rows: 2},
		{name: "a prefix of the signature is text", data: []byte("PGCOPY\n"), rows: 1},
		{name: "signature then text", data: []byte("PGCOPY\nabc\n"), rows: 2},
		{name: "binary", data: binaryCopy(0, tuples, true), rows: 4},
		{name: "binary with a header extension", data: binaryCopy(13, tuples, true), rows: 4},
		{name: "binary without trailer", data: binaryCopy(0, tuples, false), rows: 4},
		{name: "binary, no tuples", data: binaryCopy(0, nil, true), rows: 0},
		{name: "binary signature only", data: copySignature, err: "ends inside a tuple"},
		{name: "binary ends inside a field", data: binaryCopy(0, tuples, false)[:40], err: "ends inside a tuple"},
		{name: "binary bytes after the trailer", data: append(binaryCopy(0, tuples, true), 0), err: "after the trailer"},
		{name: "binary bad field count", data: binaryCopy(0, [][]int{make([]int, 0xfffe)}, true)[:21], err: "invalid binary COPY data"},
		{name: "binary bad field length", data: binaryCopy(0, [][]int{{-2}}, true), err: "invalid binary COPY data"},
	}
	for _, c := range cases {
		for _, chunk := range []int{0, 1, 3, 7} {
			rows, err := countCopy(c.data, c.csv, c.header, chunk)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Errorf("%s, chunks of %d: %d rows, err %v; want an error containing %q", c.name, chunk, rows, err, c.err)
				}
				continue
			}
			if err != nil || rows != c.rows {
				t.Errorf("%s, chunks of %d: %d rows, %v; want %d", c.name, chunk, rows, err, c.rows)
			}
		}
	}
}

// FuzzCopyCounter: on any stream the counter does not panic (a hang is
// caught by the fuzzing engine's worker timeout),
// and the count does not depend on how the stream is cut into CopyData
// messages. A text stream counts its lines (without a "\." end line or a
// CSV header); a binary stream built from the input counts its tuples.
func FuzzCopyCounter(f *testing.F) {
	f.Add([]byte("a\tb\nc\td\n\\.\n"), false, false, uint8(3))
	f.Add([]byte("h\n1\n2"), true, true, uint8(1))
	f.Add([]byte("PGCOPY\nx"), false, false, uint8(2))
	f.Add(binaryCopy(2, [][]int{{1, -1, 0}, {3}}, true), false, false, uint8(5))
	f.Add(binaryCopy(0, [][]int{{1}}, false)[:20], false, false, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, csv, header bool, chunk uint8) {
		var whole, cut int64
		var errWhole, errCut error
		whole, errWhole = countCopy(data, csv, header, 0)
		cut, errCut = countCopy(data, csv, header, int(chunk%16)+1)
		if whole != cut || (errWhole == nil) != (errCut == nil) {
			t.Fatalf("%q: whole %d, %v; in chunks of %d: %d, %v", data, whole, errWhole, chunk%16+1, cut, errCut)
		}
		if !bytes.HasPrefix(data, copySignature) {
			var want int64
			lines := bytes.Split(data, []byte("\n"))
			if len(lines[len(lines)-1]) == 0 {
				lines = lines[:len(lines)-1]
			}
			for _, l := range lines {
				if string(l) != `\.` && string(l) != "\\.\r" {
					want++
				}
			}
			if csv && header && want > 0 {
				want--
			}
			if errWhole != nil || whole != want {
				t.Fatalf("text %q: %d rows, %v; want %d", data, whole, errWhole, want)
			}
		}
		// A binary stream shaped by the input: one tuple per input byte
		// (at most 64), b%5 fields of length b/8-1 (-1: NULL).
		var tuples [][]int
		for _, b := range data[:min(len(data), 64)] {
			fields := make([]int, b%5)
			for i := range fields {
				fields[i] = int(b/8) - 1
			}
			tuples = append(tuples, fields)
		}
		stream := binaryCopy(int(chunk%4), tuples, header)
		rows, err := countCopy(stream, csv, header, int(chunk%16)+1)
		if err != nil || rows != int64(len(tuples)) {
			t.Fatalf("binary stream of %d tuples: %d rows, %v", len(tuples), rows, err)
		}
	})
}
