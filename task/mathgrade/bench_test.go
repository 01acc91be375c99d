package mathgrade_test

import (
	"testing"

	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
)

// benchPairs are MATH test solutions graded against their own gold answer
// ("own") and against the next problem's gold ("other": mostly not equal,
// so the comparison cannot stop at identical text).
func benchPairs(b *testing.B, other bool) (resp, gold []string) {
	ps, err := problems.LoadDir(problems.MATH, dataDir)
	if err != nil {
		b.Fatal(err)
	}
	for i, p := range ps {
		resp = append(resp, p.Solution)
		g := p.Answer
		if other {
			g = ps[(i+1)%len(ps)].Answer
		}
		gold = append(gold, g)
	}
	return resp, gold
}

func benchGrade(b *testing.B, other bool) {
	resp, gold := benchPairs(b, other)
	g := mathgrade.Default()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		for i := range resp {
			g.Grade(resp[i], gold[i])
		}
		n += len(resp)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "pairs/s")
}

// BenchmarkGradeOwnGold: each MATH test solution against its own gold.
func BenchmarkGradeOwnGold(b *testing.B) { benchGrade(b, false) }

// BenchmarkGradeOtherGold: each MATH test solution against another gold.
func BenchmarkGradeOtherGold(b *testing.B) { benchGrade(b, true) }

// BenchmarkSlowestPair finds the pair (solution vs own gold, or vs the
// next problem's gold) that uses the most work steps, a measure that does
// not depend on machine load, and times that pair alone.
func BenchmarkSlowestPair(b *testing.B) {
	own, ownGold := benchPairs(b, false)
	_, otherGold := benchPairs(b, true)
	g := mathgrade.Default()
	worst, worstResp, worstGold := -1, "", ""
	for i := range own {
		for _, gold := range []string{ownGold[i], otherGold[i]} {
			if r := g.Grade(own[i], gold); r.Steps > worst {
				worst, worstResp, worstGold = r.Steps, own[i], gold
			}
		}
	}
	b.ResetTimer()
	for b.Loop() {
		g.Grade(worstResp, worstGold)
	}
	b.ReportMetric(float64(worst), "steps")
	a, _ := mathgrade.Extract(worstResp)
	b.Logf("slowest pair: extracted %q vs gold %q: %d steps", a, worstGold, worst)
}
