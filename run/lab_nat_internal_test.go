package run

import (
	"testing"

	"github.com/loadcap/loadcap/capacity"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/results"
)

// The failure a NAT find-limit measured is the class of the lowest failing
// step at or above the measured limit, in any client; the burst and the
// steps below the limit (a scout far past it that ran out of something
// else, say) do not count.
func TestMeasuredFailure(t *testing.T) {
	rate := func(v float64) *float64 { return &v }
	st := func(phase string, r float64, failed int, errs map[string]int64) results.Step {
		return results.Step{Phase: phase, Rate: r, Fleet: &results.StepFleet{Clients: 2, Failed: failed, SteadyFailed: failed, Errors: errs}}
	}
	pe := map[string]int64{loadgen.ClassEADDRNOTAVAIL: 40}
	to := map[string]int64{loadgen.ClassETIMEDOUT: 3}
	both := map[string]int64{loadgen.ClassEADDRINUSE: 1, loadgen.ClassETIMEDOUT: 2}
	for _, c := range []struct {
		name     string
		measured *float64
		steps    []results.Step
		want     string
	}{
		{"host", rate(200), []results.Step{st("burst", 4000, 2, to), st("bracket", 180, 0, nil), st("confirm-high", 220, 2, pe), st("bracket", 400, 2, to)}, capacity.FailPortError},
		{"translator", rate(50), []results.Step{st("bracket", 45, 0, nil), st("confirm-high", 55, 1, to)}, capacity.FailConnectTimeout},
		{"both", rate(50), []results.Step{st("confirm-high", 55, 2, both)}, capacity.FailPortError + "+" + capacity.FailConnectTimeout},
		{"below the limit only", rate(50), []results.Step{st("scout", 40, 1, pe)}, ""},
		{"no exhaustion", nil, []results.Step{st("burst", 4000, 0, nil)}, ""},
		{"no fleet", rate(50), []results.Step{{Phase: "confirm-high", Rate: 55}}, ""},
		// Port errors only in the first hold time (the ports the step before
		// held): not a failure of the step.
		{"inherited only", rate(50), []results.Step{{Phase: "confirm-low", Rate: 48, Fleet: &results.StepFleet{Clients: 4, Failed: 3, Errors: pe}}}, ""},
	} {
		doc := &results.Document{Steps: c.steps}
		doc.Capacity.MeasuredExhaustionRate = c.measured
		if got := measuredFailure(doc); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
