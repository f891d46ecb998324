package pg_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/pg"
)

func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// closedLoop writes with n sessions back to back for dur (like pgbench -c
// n -T dur) and returns rows/s.
func closedLoop(t *testing.T, target string, clients, batch int, dur time.Duration) float64 {
	spec, err := loadgen.ParseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	d, err := pg.NewDriver(context.Background(), spec, client(t, "keepalive"), gen(t), pg.Options{Batch: batch, Timeout: 10 * time.Second, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var rows, failed atomic.Int64
	var seq atomic.Uint64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(dur)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := d.NewSession()
			for time.Now().Before(end) {
				r := s.Write(context.Background(), seq.Add(1), time.Now())
				if r.Class != "" {
					failed.Add(1)
					continue
				}
				rows.Add(int64(r.Lines))
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%s: %d writes failed", target, failed.Load())
	}
	return float64(rows.Load()) / time.Since(start).Seconds()
}

func pgbenchPath() string {
	if p := os.Getenv("LOADCAP_PGBENCH"); p != "" {
		return p
	}
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(m) > 0 {
		return m[len(m)-1]
	}
	return ""
}

// pgbenchRow is one row of loadcap's default schema with random values.
// (No pgbench variables: -M prepared allows 255 per statement.)
const pgbenchRow = "(now(), 'host-' || (random()*999)::int, 'v' || (random()*4)::int, 'v' || (random()*8)::int, random()*100, random()*100, random()*100, (random()*1000000)::bigint, random() < 0.5, 'ok')"

var tpsRe = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbench runs a custom script (rows per transaction) and returns rows/s.
func pgbench(t *testing.T, bin, dsn, script string, rows, clients int, dur time.Duration) float64 {
	f := filepath.Join(t.TempDir(), "insert.sql")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(clients),
		"-T", strconv.Itoa(int(dur.Seconds())), "-f", f, dsn).CombinedOutput()
	if err != nil {
		if len(out) > 2000 {
			out = out[:2000]
		}
		t.Fatalf("pgbench: %v\n%s", err, out)
	}
	m := tpsRe.FindSubmatch(out)
	if m == nil {
		t.Fatalf("pgbench: no tps in output:\n%s", out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	return tps * float64(rows)
}

// TestSQLBench compares loadcap's three modes with pgbench running
// equivalent custom insert scripts, against the same server, at the same
// client count and batch, in one run. Run it with scripts/bench-sql.sh
// (LOADCAP_BENCH_SQL=1; LOADCAP_BENCH_CLIENTS, _BATCH, _SECONDS).
func TestSQLBench(t *testing.T) {
	if os.Getenv("LOADCAP_BENCH_SQL") == "" {
		t.Skip("set LOADCAP_BENCH_SQL=1 (scripts/bench-sql.sh) to run the SQL benchmark")
	}
	dsn := realPG(t)
	bin := pgbenchPath()
	if bin == "" {
		t.Fatal("pgbench not found (set LOADCAP_PGBENCH, or install Debian's postgresql-client): the benchmark compares against it")
	}
	clients := benchEnv("LOADCAP_BENCH_CLIENTS", 4)
	batch := benchEnv("LOADCAP_BENCH_BATCH", 100)
	dur := time.Duration(benchEnv("LOADCAP_BENCH_SECONDS", 5)) * time.Second

	type row struct {
		name, what string
		rps        float64
	}
	var rowsOut []row
	for _, mode := range []string{"insert", "values", "copy"} {
		table := uniqueTable("bench_" + mode)
		dropTable(t, dsn, table)
		rps := closedLoop(t, withQuery(dsn, "table="+table+"&mode="+mode), clients, batch, dur)
		rowsOut = append(rowsOut, row{"loadcap " + mode, fmt.Sprintf("%d-row pipelined prepared INSERTs / multi-row VALUES / binary COPY per write", batch), rps})
	}
	// pgbench writes into a table created by loadcap's own DDL.
	table := uniqueTable("bench_pgbench")
	dropTable(t, dsn, table)
	c := sqlConn(t, dsn)
	g := gen(t)
	if _, err := c.Exec(context.Background(), pg.CreateTableSQL(table, pg.Columns(g))); err != nil {
		t.Fatal(err)
	}
	cols := `"time", host, t01, t02, f0, f1, f2, i0, b0, s0`
	ins := fmt.Sprintf(`INSERT INTO %q (%s) VALUES %s;`, table, cols, pgbenchRow)
	var pipe strings.Builder
	pipe.WriteString("\\startpipeline\n")
	for i := 0; i < batch; i++ {
		pipe.WriteString(ins + "\n")
	}
	pipe.WriteString("\\endpipeline\n")
	rowsOut = append(rowsOut, row{"pgbench pipeline", fmt.Sprintf("%d prepared INSERTs in \\startpipeline", batch), pgbench(t, bin, dsn, pipe.String(), batch, clients, dur)})
	var vals strings.Builder
	fmt.Fprintf(&vals, "INSERT INTO %q (%s) VALUES ", table, cols)
	for i := 0; i < batch; i++ {
		if i > 0 {
			vals.WriteString(",")
		}
		vals.WriteString(pgbenchRow)
	}
	vals.WriteString(";\n")
	rowsOut = append(rowsOut, row{"pgbench values", fmt.Sprintf("one %d-row INSERT ... VALUES", batch), pgbench(t, bin, dsn, vals.String(), batch, clients, dur)})

	base := map[string]float64{"insert": rowsOut[3].rps, "values": rowsOut[4].rps, "copy": rowsOut[3].rps}
	var b strings.Builder
	fmt.Fprintf(&b, "\nSQL write benchmark: %d clients, %d rows per write/transaction, %s each, same server\n\n", clients, batch, dur)
	b.WriteString("| client | rows/s | vs pgbench pipeline | vs pgbench values |\n|---|---:|---:|---:|\n")
	for _, r := range rowsOut {
		fmt.Fprintf(&b, "| %s | %.0f | %.2f | %.2f |\n", r.name, r.rps, r.rps/base["insert"], r.rps/base["values"])
	}
	t.Log(b.String())
	fmt.Print(b.String())
}

// TestPoolerBench measures rows/s of each write mode and execution mode
// directly and through the test pgbouncers (session and transaction
// pooling), closed loop, same server, in one run. The cells are measured
// in turn, round after round (LOADCAP_BENCH_ROUNDS, 3), and each cell's
// median is printed, so that a load that comes and goes on the machine
// spreads over every cell. Run it with
// LOADCAP_BENCH_SQL=1 go test -run '^TestPoolerBench$' -v ./loadgen/pg/
// (LOADCAP_BENCH_CLIENTS, _BATCH, _SECONDS as TestSQLBench).
// cache_statement through transaction pooling is left out: it fails.
func TestPoolerBench(t *testing.T) {
	if os.Getenv("LOADCAP_BENCH_SQL") == "" {
		t.Skip("set LOADCAP_BENCH_SQL=1 to run the pooler benchmark")
	}
	direct := realPG(t)
	targets := []struct{ name, dsn string }{
		{"direct", direct},
		{"pgbouncer session", testservers.PgBouncer(t, "session")},
		{"pgbouncer transaction", testservers.PgBouncer(t, "transaction")},
	}
	clients := benchEnv("LOADCAP_BENCH_CLIENTS", 4)
	batch := benchEnv("LOADCAP_BENCH_BATCH", 100)
	rounds := benchEnv("LOADCAP_BENCH_ROUNDS", 3)
	dur := time.Duration(benchEnv("LOADCAP_BENCH_SECONDS", 2)) * time.Second
	type cell struct{ mode, exec string }
	cells := []cell{{"insert", "exec"}, {"insert", "cache_statement"}, {"insert", "simple_protocol"},
		{"values", "exec"}, {"values", "cache_statement"}, {"values", "simple_protocol"}, {"copy", ""}}
	rps := make([][][]float64, len(cells)) // cell, target, round
	for i := range rps {
		rps[i] = make([][]float64, len(targets))
	}
	for r := 0; r < rounds; r++ {
		for i, c := range cells {
			for j, tg := range targets {
				if c.exec == "cache_statement" && tg.name == "pgbouncer transaction" {
					continue
				}
				table := uniqueTable("pbench_" + c.mode)
				dropTable(t, direct, table)
				q := "table=" + table + "&mode=" + c.mode
				if c.exec != "" {
					q += "&default_query_exec_mode=" + c.exec
				}
				rps[i][j] = append(rps[i][j], closedLoop(t, withQuery(tg.dsn, q), clients, batch, dur))
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nrows/s (median of %d rounds, min-max), %d clients, %d rows per write, %s per cell per round, closed loop\n\n| mode | default_query_exec_mode |", rounds, clients, batch, dur)
	for _, tg := range targets {
		fmt.Fprintf(&b, " %s |", tg.name)
	}
	b.WriteString("\n|---|---|---:|---:|---:|\n")
	for i, c := range cells {
		exec := c.exec
		if exec == "" {
			exec = "(any)"
		}
		fmt.Fprintf(&b, "| %s | %s |", c.mode, exec)
		for j := range targets {
			v := rps[i][j]
			if len(v) == 0 {
				b.WriteString(" fails |")
				continue
			}
			sort.Float64s(v)
			fmt.Fprintf(&b, " %.0f (%.0f-%.0f) |", v[len(v)/2], v[0], v[len(v)-1])
		}
		b.WriteString("\n")
	}
	t.Log(b.String())
	fmt.Print(b.String())
}
