package results

import "time"

// MatrixKind is the "kind" of a lab matrix summary file.
const MatrixKind = "matrix"

// MatrixCell is one client x sysctl combination of a matrix run.
type MatrixCell struct {
	Client    string   `json:"client"`
	Sysctl    string   `json:"sysctl"`
	Result    string   `json:"result,omitempty"`
	Predicted *float64 `json:"predicted_exhaustion_rate"`
	Measured  *float64 `json:"measured_exhaustion_rate"`
	Achieved  float64  `json:"achieved_rate"`
	PortErrs  int64    `json:"port_errors"`
	Error     string   `json:"error,omitempty"`
}

// Matrix is the summary of a lab matrix run (`loadcap run --lab` with
// several --client or --sysctl profiles), saved beside the cells' result
// files. Cells are in client-major order: for each client, every sysctl.
type Matrix struct {
	Kind      string       `json:"kind"` // MatrixKind
	ID        string       `json:"id"`
	StartedAt time.Time    `json:"started_at"`
	Targets   int          `json:"targets"`
	FindLimit bool         `json:"find_limit"`
	Clients   []string     `json:"clients"`
	Sysctls   []string     `json:"sysctls"`
	Cells     []MatrixCell `json:"cells"`
}

// Cell returns the cell of client c and sysctl s, or false.
func (m *Matrix) Cell(c, s string) (MatrixCell, bool) {
	for _, cell := range m.Cells {
		if cell.Client == c && cell.Sysctl == s {
			return cell, true
		}
	}
	return MatrixCell{}, false
}
