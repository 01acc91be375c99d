package prm

import (
	"fmt"
	"strings"
)

// Steps splits a response into steps on blank lines (lines that are empty
// or only whitespace; a run of them is one break), as RLHFlow's PRM data
// was split on "\n\n". Each step is trimmed; a response with no text has
// no steps. "\r\n" counts as "\n".
func Steps(response string) []string {
	var steps []string
	var cur []string
	flush := func() {
		if s := strings.TrimSpace(strings.Join(cur, "\n")); s != "" {
			steps = append(steps, s)
		}
		cur = cur[:0]
	}
	for _, line := range strings.Split(strings.ReplaceAll(response, "\r\n", "\n"), "\n") {
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	return steps
}

// Judge applies the rule to one response's step scores s₁…sₙ: the response
// is judged right unless
//
//	sₙ < τ1, or mean(s₁…sₙ) < τ1, or sᵢ < τ2 for some i in 2…n
//
// ("τ1 on the last/mean step, τ2 on any later step": later means after the
// first, whose text also carries the question). A score equal to a
// threshold passes. No steps is wrong. why names the first rule that
// failed, "" when right.
func (c *Config) Judge(steps []float64) (right bool, why string) {
	n := len(steps)
	if n == 0 {
		return false, "no steps"
	}
	if last := steps[n-1]; last < c.Tau1 {
		return false, fmt.Sprintf("last step %.3f < tau1 %.2f", last, c.Tau1)
	}
	sum := 0.0
	for _, s := range steps {
		sum += s
	}
	if mean := sum / float64(n); mean < c.Tau1 {
		return false, fmt.Sprintf("mean step %.3f < tau1 %.2f", mean, c.Tau1)
	}
	for i := 1; i < n; i++ {
		if steps[i] < c.Tau2 {
			return false, fmt.Sprintf("step %d of %d %.3f < tau2 %.2f", i+1, n, steps[i], c.Tau2)
		}
	}
	return true, ""
}
