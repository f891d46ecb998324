package run_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// lineWaiter hands out the lines a process prints, as they come.
type lineWaiter struct {
	lines chan string
	seen  []string
}

func newLineWaiter(t *testing.T, cmd *exec.Cmd) *lineWaiter {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &lineWaiter{lines: make(chan string, 256)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	return w
}

// wait returns the first submatches of re in the next lines, within limit.
func (w *lineWaiter) wait(t *testing.T, re *regexp.Regexp, limit time.Duration) []string {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				t.Fatalf("output ended without a line matching %s; got:\n%s", re, strings.Join(w.seen, "\n"))
			}
			w.seen = append(w.seen, l)
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-deadline:
			t.Fatalf("no line matching %s within %s; got:\n%s", re, limit, strings.Join(w.seen, "\n"))
		}
	}
}

// `loadcap sink --pg-listen ADDR` serves the PostgreSQL wire on a free
// loopback port beside the HTTP sink. pgx writes through the simple query
// protocol (3 rows), the extended protocol (2 rows) and binary COPY (5
// rows); the sink's live stats line and its final line on SIGINT count
// exactly those 10 rows, 1 COPY, 1 session and no error, and it exits 0.
func TestCLISinkPGListen(t *testing.T) {
	cmd := exec.Command(os.Getenv("LOADCAP_TEST_EXE"), "sink", "--listen", "127.0.0.1:0", "--pg-listen", "127.0.0.1:0", "--stats-interval", "100ms")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	w := newLineWaiter(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
	}()
	// Port 0: the sink picks a free loopback port and names it.
	url := w.wait(t, regexp.MustCompile(`PostgreSQL wire on (postgres://loadcap@127\.0\.0\.1:[1-9][0-9]*/\S+)`), 10*time.Second)[1]

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `CREATE TABLE IF NOT EXISTS m ("time" timestamptz NOT NULL, host text, v double precision)`, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	tag, err := c.Exec(ctx, `INSERT INTO m VALUES (now(), 'a', 1), (now(), 'b', 2), (now(), 'c', 3)`, pgx.QueryExecModeSimpleProtocol)
	if err != nil || tag.RowsAffected() != 3 {
		t.Fatalf("simple protocol insert: %v %v", tag, err)
	}
	now := time.Now()
	tag, err = c.Exec(ctx, `INSERT INTO m (time, host, v) VALUES ($1, $2, $3), ($1, $4, $3)`, now, "d", 4.0, "e")
	if err != nil || tag.RowsAffected() != 2 {
		t.Fatalf("extended protocol insert: %v %v", tag, err)
	}
	rows := [][]any{{now, "f", 1.0}, {now, "g", 2.0}, {now, nil, 3.0}, {now, "i", 4.0}, {now, "j", 5.0}}
	if n, err := c.CopyFrom(ctx, pgx.Identifier{"m"}, []string{"time", "host", "v"}, pgx.CopyFromRows(rows)); err != nil || n != 5 {
		t.Fatalf("CopyFrom = %d, %v", n, err)
	}
	var count int64
	if err := c.QueryRow(ctx, "SELECT count(*) FROM m").Scan(&count); err != nil || count != 10 {
		t.Fatalf("count(*) = %d, %v; want 10", count, err)
	}
	// The live stats line reports the rows while the sink runs.
	w.wait(t, regexp.MustCompile(`^loadcap sink: pg \| connections=1 active=1 rejected=0 statements=\d+ rows=10 copies=1 errors=0$`), 10*time.Second)
	c.Close(ctx)

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	final := w.wait(t, regexp.MustCompile(`^loadcap sink: pg stopped \| connections=(\d+) active=(\d+) rejected=0 statements=\d+ rows=(\d+) copies=(\d+) errors=(\d+)$`), 10*time.Second)
	if got := strings.Join(final[1:], " "); got != "1 0 10 1 0" {
		t.Errorf("final line %q: want connections=1 active=0 rows=10 copies=1 errors=0", final[0])
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("sink exited with %v; stderr %q", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sink still running 10 s after SIGINT")
	}
}
