package results

import (
	"fmt"
	"math"
	"time"
)

// MatrixKind is the "kind" of a lab matrix summary file.
const MatrixKind = "matrix"

// MatrixCell is one client x sysctl combination of a matrix run.
type MatrixCell struct {
	Client string `json:"client"`
	Sysctl string `json:"sysctl"`
	// Targets is the cell's number of lab targets when the matrix has
	// several (--lab-targets 1,2); 0: the matrix's Targets.
	Targets   int      `json:"targets,omitempty"`
	Result    string   `json:"result,omitempty"`
	Predicted *float64 `json:"predicted_exhaustion_rate"`
	Measured  *float64 `json:"measured_exhaustion_rate"`
	// Low and High bracket Measured: the highest rate that held and the
	// lowest that ran out of ports.
	Low      *float64 `json:"measured_low,omitempty"`
	High     *float64 `json:"measured_high,omitempty"`
	Achieved float64  `json:"achieved_rate"`
	PortErrs int64    `json:"port_errors"`
	// DurationS is how long the cell ran, lab set-up and removal included.
	DurationS float64 `json:"duration_s,omitempty"`
	// CPUS is the CPU time, in seconds, the cell's lab processes used.
	CPUS  float64 `json:"cpu_s,omitempty"`
	Error string  `json:"error,omitempty"`
}

// DiffPct is how far the prediction lies from the measured rate, in % of
// the measured rate (positive: the model is optimistic); false when either
// is unknown.
func (c MatrixCell) DiffPct() (float64, bool) {
	if c.Measured == nil || c.Predicted == nil || *c.Measured <= 0 || math.IsInf(*c.Predicted, 0) {
		return 0, false
	}
	return (*c.Predicted - *c.Measured) / *c.Measured * 100, true
}

// Bracket formats Low-High ("594.2-640.1"), "" when not bracketed.
func (c MatrixCell) Bracket(format func(float64) string) string {
	if c.Low == nil || c.High == nil {
		return ""
	}
	return fmt.Sprintf("%s-%s", format(*c.Low), format(*c.High))
}

// Matrix is the summary of a lab matrix run (`loadcap run --lab` with
// several --client or --sysctl profiles), saved beside the cells' result
// files. Cells are in client-major order: for each client, every sysctl.
type Matrix struct {
	Kind      string    `json:"kind"` // MatrixKind
	ID        string    `json:"id"`
	StartedAt time.Time `json:"started_at"`
	Targets   int       `json:"targets"`
	// TargetCounts, when the matrix has a target-count axis (--lab-targets
	// 1,2), lists the counts; Targets is then the first.
	TargetCounts []int        `json:"target_counts,omitempty"`
	FindLimit    bool         `json:"find_limit"`
	Clients      []string     `json:"clients"`
	Sysctls      []string     `json:"sysctls"`
	Cells        []MatrixCell `json:"cells"`
	// Parallel is how many cells ran at once, each in its own lab.
	Parallel int `json:"parallel,omitempty"`
	// WallS is the matrix's wall time; SlowestCellS its slowest cell's.
	WallS        float64 `json:"wall_s,omitempty"`
	SlowestCellS float64 `json:"slowest_cell_s,omitempty"`
}

// Cell returns the cell of client c and sysctl s (with the matrix's first
// target count), or false.
func (m *Matrix) Cell(c, s string) (MatrixCell, bool) {
	return m.CellAt(m.Targets, c, s)
}

// CellAt returns the cell of n targets, client c and sysctl s, or false.
func (m *Matrix) CellAt(n int, c, s string) (MatrixCell, bool) {
	for _, cell := range m.Cells {
		if cell.Client == c && cell.Sysctl == s && m.CellTargets(cell) == n {
			return cell, true
		}
	}
	return MatrixCell{}, false
}

// Counts returns the matrix's target counts: TargetCounts, or Targets alone.
func (m *Matrix) Counts() []int {
	if len(m.TargetCounts) > 0 {
		return m.TargetCounts
	}
	return []int{m.Targets}
}

// CellTargets is the number of targets cell ran with.
func (m *Matrix) CellTargets(cell MatrixCell) int {
	if cell.Targets > 0 {
		return cell.Targets
	}
	return m.Targets
}
