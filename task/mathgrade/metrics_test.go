package mathgrade

import (
	"errors"
	"math"
	"math/big"
	"reflect"
	"testing"
)

func TestClusterNonTransitive(t *testing.T) {
	g, err := New(Config{RelTol: 0.01, Budget: 10000, Points: 4})
	if err != nil {
		t.Fatal(err)
	}
	// 1.00 ≈ 1.009 and 1.009 ≈ 1.018, but 1.00 and 1.018 differ by 1.8%.
	if !g.Equal("1.00", "1.009").Equal || !g.Equal("1.009", "1.018").Equal || g.Equal("1.00", "1.018").Equal {
		t.Fatal("the tolerance chain does not hold; the test needs another example")
	}
	for _, c := range []struct {
		in   []string
		want [][]int
	}{
		// the leader 1.00 takes 1.009; 1.018 is not within 1% of the leader
		{[]string{"1.00", "1.009", "1.018"}, [][]int{{0, 1}, {2}}},
		// the order decides the leader: 1.018 takes 1.009, 1.00 is alone
		{[]string{"1.018", "1.009", "1.00"}, [][]int{{0, 1}, {2}}},
		// 1.009 leads and takes both ends
		{[]string{"1.009", "1.00", "1.018"}, [][]int{{0, 1, 2}}},
		// largest cluster first; ties in first-appearance order; empty answers stay alone
		{[]string{"3", "", "\\frac{1}{2}", "0.5", "", "3.0", "1/2"}, [][]int{{2, 3, 6}, {0, 5}, {1}, {4}}},
		{nil, nil},
	} {
		if got := g.Cluster(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Cluster(%q) = %v, want %v", c.in, got, c.want)
		}
	}
	// STAT-Syn's "at least 2 of 3 solutions agree"
	if lead, n := Default().Majority([]string{"x=2", "2", "3"}); lead != 0 || n != 2 {
		t.Errorf("Majority = %d, %d, want 0, 2", lead, n)
	}
}

func binom(n, k int) *big.Int { return new(big.Int).Binomial(int64(n), int64(k)) }

func TestPassAtK(t *testing.T) {
	for n := 1; n <= 12; n++ {
		for c := 0; c <= n; c++ {
			for k := 1; k <= n; k++ {
				// 1 - C(n-c, k)/C(n, k), exactly
				want := 1.0
				if n-c >= k {
					r := new(big.Rat).SetFrac(binom(n-c, k), binom(n, k))
					f, _ := r.Float64()
					want = 1 - f
				}
				if got := PassAtK(n, c, k); math.Abs(got-want) > 1e-12 {
					t.Errorf("PassAtK(%d,%d,%d) = %v, want %v", n, c, k, got, want)
				}
			}
		}
	}
	if got := PassAtK(200, 1, 1); math.Abs(got-0.005) > 1e-15 {
		t.Errorf("PassAtK(200,1,1) = %v", got)
	}
	if !math.IsNaN(PassAtK(3, 1, 4)) {
		t.Error("PassAtK with k > n is not NaN")
	}
}

func TestSummarizeAndBreakdown(t *testing.T) {
	recs := []Record{
		{ProblemID: "a", Benchmark: "math", Subject: "algebra", Level: 1, Skills: []string{"s1", "s2"},
			Correct: []bool{true, false, false, true}, Answers: []string{"2", "3", "3", "2.0"}},
		{ProblemID: "b", Benchmark: "math", Subject: "geometry", Level: 5, Skills: []string{"s2"},
			Correct: []bool{false, false, false, false}, Answers: []string{"1", "1", "4", "5"}},
		{ProblemID: "c", Benchmark: "gsm8k", Correct: []bool{false, true, true, true}, Answers: []string{"7", "8", "8", "8"}},
	}
	s, err := Default().Summarize(recs, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := Summary{Problems: 3, Samples: 12, Pass1: 1.0 / 3, AvgK: (0.5 + 0 + 0.75) / 3,
		PassK: (PassAtK(4, 2, 2) + 0 + 1) / 3, MajK: 2.0 / 3, K: 2}
	// a: clusters {2,2.0} and {3,3}: a tie, the first-seen "2" wins and is correct
	if !summaryClose(s, want) {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	bySkill, err := Default().Breakdown(recs, 1, BySkill)
	if err != nil {
		t.Fatal(err)
	}
	if len(bySkill) != 2 || bySkill["s1"].Problems != 1 || bySkill["s2"].Problems != 2 || bySkill["s2"].Pass1 != 0.5 {
		t.Errorf("by skill = %+v", bySkill)
	}
	byLevel, _ := Default().Breakdown(recs, 1, ByLevel)
	if byLevel["unknown"].Problems != 1 || byLevel["5"].AvgK != 0 {
		t.Errorf("by level = %+v", byLevel)
	}
	bySubject, _ := Default().Breakdown(recs, 1, BySubject)
	if bySubject["algebra"].Pass1 != 1 || bySubject["geometry"].Problems != 1 || bySubject[""].AvgK != 0.75 {
		t.Errorf("by subject = %+v", bySubject)
	}
	byBench, _ := Default().Breakdown(recs, 1, ByBenchmark)
	if byBench["gsm8k"].AvgK != 0.75 || byBench["math"].Problems != 2 {
		t.Errorf("by benchmark = %+v", byBench)
	}
	if _, err := Default().Summarize(recs, 5); err == nil {
		t.Error("pass@5 with 4 samples accepted")
	}
	if _, err := Default().Summarize([]Record{{ProblemID: "x"}}, 1); err == nil {
		t.Error("record without samples accepted")
	}
}

func summaryClose(a, b Summary) bool {
	f := func(x, y float64) bool { return math.Abs(x-y) < 1e-12 }
	return a.Problems == b.Problems && a.Samples == b.Samples && a.K == b.K &&
		f(a.Pass1, b.Pass1) && f(a.AvgK, b.AvgK) && f(a.PassK, b.PassK) && f(a.MajK, b.MajK)
}

func TestBootstrap(t *testing.T) {
	cfg := BootstrapConfig{Resamples: 2000, Level: 0.95, Seed: 4}
	scores := make([]float64, 400)
	for i := range scores {
		if i%4 != 0 {
			scores[i] = 1
		}
	}
	mean, ci, err := Bootstrap(scores, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// binomial standard error sqrt(.75*.25/400) = 0.0217; 95% ≈ ±0.042
	if mean != 0.75 || ci.Lo > 0.72 || ci.Lo < 0.69 || ci.Hi < 0.78 || ci.Hi > 0.81 {
		t.Errorf("Bootstrap = %v %+v", mean, ci)
	}
	m2, ci2, _ := Bootstrap(scores, cfg)
	if m2 != mean || ci2 != ci {
		t.Error("same seed gave another interval")
	}
	// paired: b = a plus 40 more problems right out of 400 -> +0.1
	b := append([]float64(nil), scores...)
	for i := 0; i < 40*4; i += 4 {
		b[i] = 1
	}
	d, dci, err := PairedBootstrap(scores, b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(d-0.1) > 1e-12 || dci.Lo <= 0 || dci.Lo > 0.1 || dci.Hi < 0.1 {
		t.Errorf("PairedBootstrap = %v %+v", d, dci)
	}
	if d, dci, _ := PairedBootstrap(scores, scores, cfg); d != 0 || dci.Lo != 0 || dci.Hi != 0 {
		t.Errorf("identical sets: %v %+v", d, dci)
	}
	if _, _, err := PairedBootstrap(scores, scores[1:], cfg); !errors.Is(err, ErrLengthMismatch) {
		t.Errorf("length mismatch: %v", err)
	}
	if _, _, err := Bootstrap(scores, BootstrapConfig{Resamples: 10, Level: 0.95}); err == nil {
		t.Error("10 resamples accepted")
	}
}
