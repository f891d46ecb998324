package results

import (
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/loadcap/loadcap/capacity"
)

// WriteSummary writes the human-readable end-of-run summary of d; path,
// when not "", is where the result was saved.
func WriteSummary(w io.Writer, d *Document, path string) error {
	c := d.Config
	state := ""
	if d.Interrupted {
		state = " (interrupted)"
	}
	fmt.Fprintf(w, "loadcap run %s%s\n", d.ID, state)
	asked := fmt.Sprintf("asked %s writes/s per target for %gs", capacity.FormatRate(c.Rate), c.DurationS)
	if c.FindLimit {
		asked = fmt.Sprintf("find-limit: %d steps, %.0fs of writes", len(d.Steps), c.DurationS)
	}
	fmt.Fprintf(w, "  %s, batch %d, client %s (%s), sysctl %s, kernel %s\n",
		asked, c.Batch, c.ClientProfile, c.DialMode, c.SysctlProfile, d.Kernel)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\twrites\tok\tfailed\tlines ok\tachieved/s\tlate\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tnew conns\tpeak TW\tTW at start\t")
	for _, t := range d.Targets {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.1f\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%d\t\n",
			t.Name, t.Writes, t.WritesOK, t.WritesFailed, t.LinesOK, t.AchievedRate, t.LateStarts,
			t.LatencyMS.P50, t.LatencyMS.P90, t.LatencyMS.P99, t.LatencyMS.P999, t.LatencyMS.Max, t.NewConnections, t.OwnPeakTimeWait, t.StartTimeWait)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, t := range d.Targets {
		if len(t.Errors) == 0 {
			continue
		}
		var parts []string
		for _, cl := range SortedClasses(t.Errors) {
			parts = append(parts, fmt.Sprintf("%s %d", cl, t.Errors[cl]))
		}
		fmt.Fprintf(w, "  errors %s: %s\n", t.Name, strings.Join(parts, ", "))
		if t.FirstError != "" {
			fmt.Fprintf(w, "    e.g. %s\n", firstLine(t.FirstError))
		}
	}
	for _, t := range Unreached(d) {
		fmt.Fprintf(w, "  outcome: %s\n", UnreachedSentence(t))
	}
	if msg := OverrunSentence(d); msg != "" {
		fmt.Fprintf(w, "  took: %s\n", msg)
	}
	// The overload sentence, when there is one, is among the notes.
	if len(Judged(d)) > 0 {
		fmt.Fprintf(w, "  capacity: %s\n", CapacitySentence(d))
	} else {
		fmt.Fprintf(w, "  capacity: not judged: no write reached any target\n")
	}
	for _, n := range d.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	if path != "" {
		fmt.Fprintf(w, "  result: %s\n", path)
	}
	return nil
}

// CapacitySentence says in one sentence how much of the port budget the
// run used and where it runs out: the achieved rate as a percentage of the
// predicted exhaustion rate (the inverse of capacity.headroom), or why the
// client does not run out of ports.
func CapacitySentence(d *Document) string {
	c := d.Capacity
	dest := "each target"
	if js := Judged(d); len(js) == 1 {
		// One target, or one that accepted writes beside ones that did
		// not (of which nothing is judged).
		dest = js[0].Name
		if u, err := url.Parse(js[0].URL); err == nil && u.Host != "" && u.Host != dest {
			dest += " (" + u.Host + ")"
		}
	}
	if c.Loopback {
		dest += " over loopback"
	}
	if c.PredictedExhaustionRate == nil {
		return fmt.Sprintf("at %s writes/s (%.3g new connections per write) this client does not run out of ports toward %s: %s",
			capacity.FormatRate(d.AchievedRate), c.NewConnsPerWrite, dest, c.Explanation) + remoteClause(c)
	}
	var s string
	if pred := *c.PredictedExhaustionRate; pred > 0 {
		s = fmt.Sprintf("at %s writes/s this client uses %.0f %% of its port budget toward %s; it runs out at %s writes/s (%s)",
			capacity.FormatRate(d.AchievedRate), d.AchievedRate/pred*100, dest, capacity.FormatRate(pred), c.Explanation)
	} else {
		s = fmt.Sprintf("at %s writes/s this client has no port budget toward %s: it runs out at once (%s)",
			capacity.FormatRate(d.AchievedRate), dest, c.Explanation)
	}
	if c.MeasuredExhaustionRate != nil {
		s += fmt.Sprintf("; measured: %s writes/s", capacity.FormatRate(*c.MeasuredExhaustionRate))
	}
	return s + remoteClause(c)
}

// remoteClause is what a loopback run adds to its capacity sentence: the
// budget was loopback's, and toward a remote address it is smaller.
func remoteClause(c Capacity) string {
	if !c.Loopback || c.RemoteExhaustionRate == nil {
		return ""
	}
	return fmt.Sprintf(". Loopback understates exhaustion: toward a remote address the same client and sysctls run out at %s writes/s (tcp_tw_reuse=2 applies to loopback only; --lab measures over veth)",
		capacity.FormatRate(*c.RemoteExhaustionRate))
}

// Unreached returns the targets of d that were sent writes and accepted
// none: the run measured no write path to them, and it exits 1.
func Unreached(d *Document) []Target {
	var out []Target
	for _, t := range d.Targets {
		if t.WritesOK == 0 && t.WritesFailed > 0 {
			out = append(out, t)
		}
	}
	return out
}

// Judged returns the targets of d the capacity model speaks of: all but
// those that accepted no write (Unreached).
func Judged(d *Document) []Target {
	var out []Target
	for _, t := range d.Targets {
		if t.WritesOK > 0 || t.WritesFailed == 0 {
			out = append(out, t)
		}
	}
	return out
}

// UnreachedSentence says that no write reached t (or that the server
// refused every one), how they failed and the first error.
func UnreachedSentence(t Target) string {
	var parts []string
	for _, cl := range SortedClasses(t.Errors) {
		parts = append(parts, fmt.Sprintf("%s %d", cl, t.Errors[cl]))
	}
	what := "no write reached " + t.Name
	if len(t.StatusCodes) > 0 {
		what = "no write was accepted by " + t.Name + " (the server answered, refusing every write)"
	}
	s := fmt.Sprintf("%s: all %d writes failed (%s)", what, t.WritesFailed, strings.Join(parts, ", "))
	if t.FirstError != "" {
		s += "; first error: " + firstLine(t.FirstError)
	}
	return s + "; nothing was measured of its write path"
}

// OverrunSentence says how long a run really took when it ran on well
// past its window (in-flight writes finishing, each bounded by the write
// timeout), and "" when it ended with its window or was interrupted.
func OverrunSentence(d *Document) string {
	if d.Interrupted || d.Config.FindLimit || d.Config.DurationS <= 0 {
		return ""
	}
	took := d.FinishedAt.Sub(d.StartedAt).Seconds()
	past := took - d.Config.DurationS
	if past < 1 {
		return ""
	}
	return fmt.Sprintf("%.1f s in all, %.1f s past the %gs window: writes in flight at its end were let finish (each bounded by --timeout %gs); writes due in the window that no worker could start within 1 s of its end are not_started",
		took, past, d.Config.DurationS, d.Config.TimeoutS)
}

// OverloadSentence says, when the run could not start writes at the asked
// rate, by how much it fell short, why, and what that means for the
// figures; "" when it held the rate (achieved >= 99 % of asked on every
// target that accepted writes). When the target's service time times the
// asked rate needs more writes in flight than the client allows (its pool
// size, or --max-workers), the target is named as the limit; otherwise the
// client is.
func OverloadSentence(d *Document) string {
	asked := d.Config.Rate
	if asked <= 0 || d.Config.Pattern != "" || d.Config.FindLimit {
		return ""
	}
	var parts []string
	clientBound := false
	for _, t := range d.Targets {
		if t.AchievedRate >= 0.99*asked || t.WritesOK == 0 {
			continue
		}
		// An interrupt cuts the window between two writes: fewer writes
		// per second of window is then no sign of overload by itself.
		if d.Interrupted && t.LateStarts == 0 && t.Errors[ClassNotStarted] == 0 {
			continue
		}
		part := fmt.Sprintf("%s achieved %s of %s writes/s (%.0f %%), %d writes started late",
			t.Name, capacity.FormatRate(t.AchievedRate), capacity.FormatRate(asked), t.AchievedRate/asked*100, t.LateStarts)
		if why := targetBound(d.Config, t); why != "" {
			part += ": " + why
		} else {
			clientBound = true
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return ""
	}
	s := strings.Join(parts, "; ") + "."
	if clientBound {
		s += " The client could not hold the asked rate (all workers busy, or this machine saturated)."
	}
	s += " Latency is measured from each write's intended start, so it includes that queueing."
	if clientBound {
		return s + " See --max-workers and the target's latency."
	}
	return s + " A larger pool helps only if the target serves more writes at once."
}

// targetBound says why target t could not take the asked rate when its
// service time is the reason: with every one of the client's L writes in
// flight (pooled connections, or workers) taking the mean service time S,
// at most L/S writes/s can start. "" when that bound is above the asked
// rate (the client, not the target, fell short).
func targetBound(c Config, t Target) string {
	svc := t.ServiceTimeMS.Mean
	if svc <= 0 {
		return ""
	}
	limit, what := c.PoolSize, "pooled connections"
	if limit <= 0 {
		limit, what = c.MaxWorkers, "workers (--max-workers)"
		if limit <= 0 {
			limit = 512 // loadgen's default
		}
	}
	most := float64(limit) / (svc / 1000)
	if most > 1.05*c.Rate {
		return ""
	}
	return fmt.Sprintf("every one of the %d %s was busy: the target's service time (mean %.1f ms, p99 %.1f ms) lets %d carry at most %s writes/s; the target and the pool size are the limit, not this machine",
		limit, what, svc, t.ServiceTimeMS.P99, limit, capacity.FormatRate(most))
}
