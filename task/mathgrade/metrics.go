package mathgrade

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
)

// Record is the graded samples of one problem.
type Record struct {
	ProblemID string
	Benchmark string
	Subject   string
	Level     int
	Skills    []string
	// Correct holds one verdict per sample, in sample order; sample 0 is the
	// pass@1 sample (greedy or low temperature).
	Correct []bool
	// Answers holds the extracted answer of each sample (same order), for
	// maj@k; may be nil.
	Answers []string
}

// Summary is the accuracy of a set of records.
type Summary struct {
	Problems int     `json:"problems"`
	Samples  int     `json:"samples"`
	Pass1    float64 `json:"pass@1"` // first sample correct
	AvgK     float64 `json:"avg@k"`  // mean fraction of samples correct
	PassK    float64 `json:"pass@k"` // unbiased pass@k, k = Summary.K
	MajK     float64 `json:"maj@k"`  // majority answer correct (records with Answers)
	K        int     `json:"k"`
}

// PassAtK is the unbiased estimator of pass@k from n samples of which c
// are correct: 1 - C(n-c, k) / C(n, k), computed as a product so it stays
// exact in float64 for any n. It is 1 when n-c < k.
func PassAtK(n, c, k int) float64 {
	if k <= 0 || n <= 0 || c < 0 || c > n || k > n {
		return math.NaN()
	}
	if n-c < k {
		return 1
	}
	p := 1.0
	for i := n - c + 1; i <= n; i++ {
		p *= 1 - float64(k)/float64(i)
	}
	return 1 - p
}

// Summarize computes the metrics of recs with pass@k at k (k ≤ the
// smallest sample count). maj@k uses the records that carry Answers.
func (g *Grader) Summarize(recs []Record, k int) (Summary, error) {
	s := Summary{K: k}
	majN := 0
	for _, r := range recs {
		n := len(r.Correct)
		if n == 0 {
			return Summary{}, fmt.Errorf("problem %s: no samples", r.ProblemID)
		}
		if k > n {
			return Summary{}, fmt.Errorf("problem %s: pass@%d needs %d samples, has %d", r.ProblemID, k, k, n)
		}
		if r.Answers != nil && len(r.Answers) != n {
			return Summary{}, fmt.Errorf("problem %s: %d answers for %d verdicts", r.ProblemID, len(r.Answers), n)
		}
		c := 0
		for _, ok := range r.Correct {
			if ok {
				c++
			}
		}
		s.Problems++
		s.Samples += n
		if r.Correct[0] {
			s.Pass1++
		}
		s.AvgK += float64(c) / float64(n)
		s.PassK += PassAtK(n, c, k)
		if r.Answers != nil {
			majN++
			if lead, _ := g.Majority(r.Answers); lead >= 0 && r.Correct[lead] {
				s.MajK++
			}
		}
	}
	if s.Problems == 0 {
		return s, nil
	}
	p := float64(s.Problems)
	s.Pass1 /= p
	s.AvgK /= p
	s.PassK /= p
	if majN > 0 {
		s.MajK /= float64(majN)
	} else {
		s.MajK = math.NaN()
	}
	return s, nil
}

// Grouping names what a breakdown groups by.
type Grouping func(Record) []string

// Groupings for Breakdown. A record without skills is in no skill group;
// level 0 is "unknown".
var (
	ByBenchmark Grouping = func(r Record) []string { return []string{r.Benchmark} }
	BySubject   Grouping = func(r Record) []string { return []string{r.Subject} }
	ByLevel     Grouping = func(r Record) []string {
		if r.Level == 0 {
			return []string{"unknown"}
		}
		return []string{strconv.Itoa(r.Level)}
	}
	BySkill Grouping = func(r Record) []string { return r.Skills }
)

// Breakdown summarises recs per group.
func (g *Grader) Breakdown(recs []Record, k int, by Grouping) (map[string]Summary, error) {
	groups := map[string][]Record{}
	for _, r := range recs {
		for _, key := range by(r) {
			groups[key] = append(groups[key], r)
		}
	}
	out := make(map[string]Summary, len(groups))
	for key, rs := range groups {
		s, err := g.Summarize(rs, k)
		if err != nil {
			return nil, fmt.Errorf("group %q: %w", key, err)
		}
		out[key] = s
	}
	return out, nil
}

// Interval is a confidence interval.
type Interval struct {
	Lo float64 `json:"lo"`
	Hi float64 `json:"hi"`
}

// BootstrapConfig sets the bootstrap.
type BootstrapConfig struct {
	Resamples int     `yaml:"resamples"` // default 10000
	Level     float64 `yaml:"level"`     // e.g. 0.95
	Seed      uint64  `yaml:"seed"`
}

// DefaultBootstrapConfig is 10,000 resamples, 95%, seed 0.
func DefaultBootstrapConfig() BootstrapConfig {
	return BootstrapConfig{Resamples: 10000, Level: 0.95}
}

// Validate names the first bad field.
func (c BootstrapConfig) Validate() error {
	if c.Resamples < 100 {
		return fmt.Errorf("resamples: %d is below 100", c.Resamples)
	}
	if !(c.Level > 0 && c.Level < 1) {
		return fmt.Errorf("level: %v is not in (0, 1)", c.Level)
	}
	return nil
}

// ErrLengthMismatch is returned by PairedBootstrap when the two result
// sets do not cover the same problems.
var ErrLengthMismatch = errors.New("paired results differ in length")

// Bootstrap returns the mean of per-problem scores (e.g. 1/0 correctness,
// or each problem's fraction of correct samples) and its percentile
// bootstrap confidence interval, resampling problems with replacement.
func Bootstrap(scores []float64, c BootstrapConfig) (float64, Interval, error) {
	return bootstrap(scores, c)
}

// PairedBootstrap returns mean(b) - mean(a) over the same problems (a[i]
// and b[i] score problem i) and the percentile bootstrap interval of that
// difference, resampling problems jointly so that per-problem correlation
// is kept.
func PairedBootstrap(a, b []float64, c BootstrapConfig) (float64, Interval, error) {
	if len(a) != len(b) {
		return 0, Interval{}, fmt.Errorf("%w: %d vs %d", ErrLengthMismatch, len(a), len(b))
	}
	d := make([]float64, len(a))
	for i := range a {
		d[i] = b[i] - a[i]
	}
	return bootstrap(d, c)
}

func bootstrap(x []float64, c BootstrapConfig) (float64, Interval, error) {
	if err := c.Validate(); err != nil {
		return 0, Interval{}, fmt.Errorf("bootstrap: %w", err)
	}
	n := len(x)
	if n == 0 {
		return 0, Interval{}, fmt.Errorf("bootstrap: no scores")
	}
	mean := 0.0
	for _, v := range x {
		mean += v
	}
	mean /= float64(n)
	r := rand.New(rand.NewPCG(c.Seed, 0x5851F42D4C957F2D))
	means := make([]float64, c.Resamples)
	for b := range means {
		s := 0.0
		for i := 0; i < n; i++ {
			s += x[r.IntN(n)]
		}
		means[b] = s / float64(n)
	}
	sort.Float64s(means)
	alpha := (1 - c.Level) / 2
	lo := means[int(math.Floor(alpha*float64(c.Resamples-1)))]
	hi := means[int(math.Ceil((1-alpha)*float64(c.Resamples-1)))]
	return mean, Interval{Lo: lo, Hi: hi}, nil
}
