package mathgrade

import (
	"strings"
	"testing"
)

// pairs are gold/response pairs written from the rules in the package doc.
var pairs = []struct {
	gold, resp string
	want       bool
}{
	// integers, signs, decimals
	{"5", "5", true},
	{"5", "6", false},
	{"-3", "-3", true},
	{"-3", "3", false},
	{"27", "27.0", true},
	{"27", "27.00", true},
	{"27", "27.01", false},
	{"0", "0.0", true},
	{"0", "-0", true},
	{"0", "0.000001", false},
	{"0.5", ".5", true},
	{"1.25", "1.250", true},
	{"100", "1e2", true},
	{"100", "1.0E+02", true},
	{"3000", "3 \\times 10^3", true},
	{"3000", "3\\cdot 10^{3}", true},
	{"0.00012", "1.2 \\times 10^{-4}", true},
	// thousands separators vs lists
	{"1000", "1,000", true},
	{"1000", "1{,}000", true},
	{"1000", "1,\\!000", true},
	{"1234567", "1,234,567", true},
	{"1000", "1, 000", false},
	{"1,2", "1000", false},
	{"16386.16", "\\$16,\\!386.16", true},
	{"1000", "1\\,000", true},
	// fractions
	{"\\frac{1}{2}", "0.5", true},
	{"\\frac{1}{2}", "1/2", true},
	{"\\frac12", "\\frac{1}{2}", true},
	{"\\dfrac{3}{4}", "\\frac{3}{4}", true},
	{"\\tfrac{3}{4}", "0.75", true},
	{"\\cfrac{3}{4}", "\\frac{6}{8}", true},
	{"\\frac{1}{3}", "0.333", false},
	{"\\frac{1}{3}", "0.33", false},
	{"\\frac{1}{3}", "\\frac{2}{6}", true},
	{"-\\frac{1}{2}", "\\frac{-1}{2}", true},
	{"-\\frac{1}{2}", "\\frac{1}{-2}", true},
	{"-\\frac{1}{2}", "\\frac{1}{2}", false},
	{"\\frac{7}{2}", "3.5", true},
	{"\\frac{7}{2}", "3\\frac{1}{2}", true},
	{"\\frac{27}{4}", "6 \\frac{3}{4}", true},
	{"\\frac{27}{4}", "6\\frac34", true},
	{"\\frac{2\\pi}{3}", "2\\frac{\\pi}{3}", true},
	{"\\frac{1}{2004!}", "0", false},
	// percent, degrees, dollars, units, text
	{"50", "50\\%", true},
	{"50\\%", "50", true},
	{"50\\%", "0.5", false},
	{"7\\%", "7 \\%", true},
	{"45^\\circ", "45", true},
	{"45", "45^{\\circ}", true},
	{"45^\\circ", "45 degrees", true},
	{"90^\\circ", "\\frac{\\pi}{2}", false},
	{"\\$40", "40", true},
	{"40", "\\$ 40.00", true},
	{"162\\text{ minutes}", "162", true},
	{"864 \\mbox{ inches}^2", "864", true},
	{"90\\text{ square\nunits}", "90", true},
	{"5", "5 \\text{ cm}", true},
	{"1.6", "1.6 \\mathrm{~cm}", true},
	{"12", "12 units", true},
	{"\\text{Evelyn}", "Evelyn", true},
	{"\\text{Evelyn}", "\\text{evelyn}", true},
	{"\\text{Evelyn}", "Emily", false},
	{"\\text{odd}", "\\text{even}", false},
	// leading labels and trailing periods
	{"5", "x = 5", true},
	{"5", "k=5.", true},
	{"x = 5", "5", true},
	{"5", "x = 6", false},
	{"12", "12.", true},
	{"12", "12 .", true},
	{"-\\frac{3}{2}", "y=-\\frac{3}{2}", true},
	// roots
	{"\\sqrt{2}", "\\sqrt2", true},
	{"2\\sqrt{2}", "\\sqrt{8}", true},
	{"\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", true},
	{"\\frac{\\sqrt{2}}{2}", "0.7071", false},
	{"\\sqrt{3}", "3^{1/2}", true},
	{"\\sqrt[3]{8}", "2", true},
	{"\\sqrt[3]{-8}", "-2", true},
	{"\\sqrt{2}", "\\sqrt{3}", false},
	{"3\\sqrt{5}", "\\sqrt{45}", true},
	{"5\\sqrt{2}", "5 \\sqrt 2", true},
	{"4", "\\sqrt{16}", true},
	// pi, e, i
	{"2\\pi", "2 \\pi", true},
	{"2\\pi", "\\pi \\cdot 2", true},
	{"2\\pi", "6.28", false},
	{"\\pi", "3.14159", false},
	{"e^2", "\\exp(2)", true},
	{"\\ln e", "1", true},
	{"3+4i", "4i+3", true},
	{"3+4i", "3-4i", false},
	{"i", "\\sqrt{-1}", true},
	{"\\frac{3}{2} + \\frac{3}{2} i", "1.5+1.5i", true},
	{"-1", "i^2", true},
	// trig and logs
	{"\\frac{1}{2}", "\\sin 30^\\circ", false},
	{"\\frac{1}{2}", "\\cos \\frac{\\pi}{3}", true},
	{"\\frac{\\sqrt{3}}{2}", "\\sin(\\pi/3)", true},
	{"\\tan x", "\\frac{\\sin x}{\\cos x}", true},
	{"1", "\\sin^2 x + \\cos^2 x", true},
	{"\\frac{\\pi}{4}", "\\arctan 1", true},
	{"\\frac{\\pi}{6}", "\\sin^{-1}(1/2)", true},
	{"3", "\\log_2 8", true},
	{"2", "\\log 100", true},
	{"\\log_2 3", "\\frac{\\ln 3}{\\ln 2}", true},
	{"\\ln 6", "\\ln 2 + \\ln 3", true},
	{"\\ln 6", "\\ln 5", false},
	// polynomials and expressions with variables
	{"x^2+2x+1", "(x+1)^2", true},
	{"x^2+2x+1", "(x+1)^3", false},
	{"6p^4 + 5p^2 - 4", "5p^2 + 6p^4 - 4", true},
	{"6p^4 + 5p^2 - 4", "6p^4 + 5p^2 + 4", false},
	{"\\frac{1}{2 - x}", "\\frac{-1}{x-2}", true},
	{"\\frac{1}{2 - x}", "\\frac{1}{x-2}", false},
	{"2x", "x2", true},
	{"ab", "ba", true},
	{"a^2b", "a b^2", false},
	{"\\frac{x+1}{2}", "\\frac{1}{2}(x+1)", true},
	{"n(n+1)/2", "\\frac{n^2+n}{2}", true},
	{"2^{n}", "2^n", true},
	{"2^{1009}", "2^{1009}", true},
	{"2^{1009}", "2^{1008}", false},
	{"\\binom{2n}{n}", "\\binom{2n}{n}", true},
	{"\\binom{5}{2}", "10", true},
	{"5!", "120", true},
	{"|x-1|", "|1-x|", true},
	{"\\lfloor 3.7 \\rfloor", "3", true},
	{"\\lceil 3.2 \\rceil", "4", true},
	{"x_1 + x_2", "x_2 + x_1", true},
	{"\\theta^2", "\\theta \\cdot \\theta", true},
	// tuples and intervals
	{"(1,2)", "(1, 2)", true},
	{"(1,2)", "(2,1)", false},
	{"(1,2)", "\\left( 1, 2 \\right)", true},
	{"\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\pi/2)", true},
	{"(0,9)", "[0,9)", false},
	{"[0,9)", "[0,9)", true},
	{"[0,9]", "[0,9)", false},
	{"(-\\infty, 3)", "(-\\infty,3]", false},
	{"(-\\infty, 3)", "[-\\infty, 3)", true},
	{"(3, \\infty)", "x > 3", true},
	{"[3, \\infty)", "x \\ge 3", true},
	{"(3, \\infty)", "x \\ge 3", false},
	{"(2, 5]", "2 < x \\le 5", true},
	{"(2,5]", "x \\in (2,5]", true},
	{"(-\\infty, 1) \\cup (2, \\infty)", "(2,\\infty)\\cup(-\\infty,1)", true},
	{"(-\\infty, 1) \\cup (2, \\infty)", "(-\\infty, 1] \\cup (2, \\infty)", false},
	{"(1,2,3)", "(1,2)", false},
	{"(8,3,-1)", "(8, 3, -1)", true},
	// sets and multiple answers
	{"1, 2, 3", "3, 2, 1", true},
	{"1, 2, 3", "\\{1, 2, 3\\}", true},
	{"1, 2, 3", "1, 2", false},
	{"1, 2", "1, 2, 2", false},
	{"0,4", "4, 0", true},
	{"-\\frac{3}{2}, -1, 7", "x=7, x=-1, x=-\\frac32", true},
	{"7, -2, \\text{ and } -5", "-5, -2, 7", true},
	{"1 \\pm \\sqrt{2}", "1+\\sqrt2, 1-\\sqrt2", true},
	{"1 \\pm \\sqrt{2}", "1+\\sqrt2", false},
	{"\\{1, 2\\}", "\\{2,1\\}", true},
	{"(1,2), (3,4)", "(3,4), (1,2)", true},
	{"(1,2), (3,4)", "(1,2), (4,3)", false},
	{"\\emptyset", "\\varnothing", true},
	// matrices and vectors
	{"\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{bmatrix} 1 \\\\ 2 \\end{bmatrix}", true},
	{"\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}", false},
	{"\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", true},
	{"\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}", false},
	{"\\begin{pmatrix} 2/5 \\\\ -1/5 \\end{pmatrix}", "\\begin{pmatrix} \\frac{2}{5} \\\\ -0.2 \\end{pmatrix}", true},
	{"\\begin{pmatrix} 1 \\\\ 2 \\\\ 3 \\end{pmatrix}", "(1,2,3)", true},
	{"\\begin{pmatrix} 1 & 2 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", false},
	// equations and inequalities
	{"y = 2x + 3", "y = 3 + 2x", true},
	{"y = 2x + 3", "2x + 3 = y", true},
	{"y = 2x + 3", "y = 2x - 3", false},
	{"x + y = 2", "2x + 2y = 4", true},
	{"x + y = 2", "x - y = 2", false},
	{"y = 2x + 3", "2x + 3", true},
	{"x^2 + y^2 = 4", "y^2 + x^2 - 4 = 0", true},
	{"x > 3", "3 < x", true},
	{"x > 3", "x < 3", false},
	{"x > 3", "x \\geq 3", false},
	{"x \\le 5", "5 \\ge x", true},
	{"1 < x < 2", "2 > x > 1", true},
	{"f(x)=2x", "f(x) = 2x", true},
	{"y = -\\frac{1}{2}x + 3", "x + 2y = 6", true},
	{"f(x)=2 x", "2x", true},
	{"f(x)=2 x", "f(x) = 2x + 1", false},
	{"k \\geqslant 2", "k \\ge 2", true},
	{"2, 3", "x = 2 \\text{ or } x = 3", true},
	{"-\\frac{1}{3}", "-1./3", true},
	{"\\dot{x}_{0}", "x_0", false},
	{"\\lambda_{\\text {red}} / \\sqrt{2}", "\\frac{\\lambda_{red}}{\\sqrt2}", true},
	{"y=2x+3", "f(x) = 2x + 3", true},
	{"3.14", "x \\approx 3.14", true},
	{"x = 5", "y = 6", false},
	{"|x|", "x", false},
	{"\\sqrt{x^2}", "|x|", true},
	{"|xy|", "xy", false},
	{"(-\\infty, \\infty)", "\\mathbb{R}", true},
	{"\\pi", "π", true},
	{"-5", "−5", true},
	{"\\infty", "∞", true},
	// multiple choice
	{"\\text{(C)}", "C", true},
	{"\\text{(C)}", "(C)", true},
	{"C", "\\textbf{(C)}", true},
	{"(C)", "(C) 12", true},
	{"\\text{(C)}", "D", false},
	{"B", "(B)", true},
	// bases
	{"1200_7", "1200_{7}", true},
	{"1200_7", "1201_7", false},
	// things that must not parse into equality
	{"3:1", "3:1", true},
	{"3:1", "1:3", false},
	{"\\text{1:03 PM}", "1:03 PM", true},
	{"\\infty", "\\infty", true},
	{"\\infty", "-\\infty", false},
	{"\\infty", "1e9999", false},
	{"\\infty", "\\frac{1}{0}", false},
	{"0", "\\frac{0}{0}", false},
}

func TestEqualPairs(t *testing.T) {
	if len(pairs) < 150 {
		t.Fatalf("only %d pairs", len(pairs))
	}
	checkPairs(t, pairs)
}

// checkPairs checks each pair's verdict in both orders.
func checkPairs(t *testing.T, pairs []struct {
	gold, resp string
	want       bool
}) {
	t.Helper()
	for _, p := range pairs {
		v := Default().Equal(p.gold, p.resp)
		if v.Equal != p.want {
			t.Errorf("Equal(%q, %q) = %v (%s), want %v", p.gold, p.resp, v.Equal, v.How, p.want)
		}
		if w := Default().Equal(p.resp, p.gold); w.Equal != v.Equal {
			t.Errorf("not symmetric: Equal(%q, %q) = %v but reversed %v", p.gold, p.resp, v.Equal, w.Equal)
		}
	}
}

func TestToleranceConfig(t *testing.T) {
	loose, err := New(Config{RelTol: 1e-2, Budget: 10000, Points: 4, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		a, b string
		want bool
	}{
		{"1.6", "1.59", true},
		{"1.6", "1.5", false},
		{"\\pi", "3.14", true},
		{"0", "0.001", false}, // zero equals only zero
	} {
		if got := loose.Equal(p.a, p.b).Equal; got != p.want {
			t.Errorf("RelTol 1e-2: Equal(%q, %q) = %v, want %v", p.a, p.b, got, p.want)
		}
	}
	exactG, err := New(Config{RelTol: 0, Budget: 10000, Points: 4})
	if err != nil {
		t.Fatal(err)
	}
	if exactG.Equal("0.3333333333333", "\\frac13").Equal {
		t.Error("RelTol 0: 0.3333333333333 equals 1/3")
	}
	if !Default().Equal("0.3333333333333", "\\frac13").Equal {
		t.Error("default RelTol 1e-8: 0.3333333333333 differs from 1/3")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg   Config
		field string
	}{
		{Config{RelTol: -1, Budget: 1000, Points: 4}, "rel_tol"},
		{Config{RelTol: 0, Budget: 1, Points: 4}, "budget"},
		{Config{RelTol: 0, Budget: 1000, Points: 1}, "points"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), c.field) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", c.cfg, err, c.field)
		}
		if _, err := New(c.cfg); err == nil {
			t.Errorf("New(%+v) accepted a bad config", c.cfg)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Error(err)
	}
}

// TestBudget: a comparison that needs more work than the budget allows is
// "not equal" with How "budget", the same on every machine.
func TestBudget(t *testing.T) {
	small, err := New(Config{RelTol: 1e-8, Budget: 100, Points: 4})
	if err != nil {
		t.Fatal(err)
	}
	a := strings.Repeat("x+", 200) + "1"
	b := "1+" + strings.Repeat("x+", 199) + "x"
	if v := small.Equal(a, b); v.Equal || v.How != "budget" {
		t.Errorf("small budget: %+v, want not equal by budget", v)
	}
	if v := Default().Equal(a, b); !v.Equal {
		t.Errorf("default budget: %+v, want equal", v)
	}
	// a huge exponent is not expanded: it falls back to floats, which overflow
	if v := Default().Equal("2^{100000000}", "2^{100000001}"); v.Equal {
		t.Errorf("2^100000000 vs 2^100000001: %+v", v)
	}
}

// TestConcurrentUse: one Grader shared by goroutines gives the verdicts it
// gives sequentially (the sample points depend on the seed and the
// variable names only). Run with -race to check for data races.
func TestConcurrentUse(t *testing.T) {
	want := make([]Verdict, len(pairs))
	for i, p := range pairs {
		want[i] = Default().Equal(p.gold, p.resp)
	}
	errs := make(chan string, 4*len(pairs))
	done := make(chan bool)
	for w := 0; w < 4; w++ {
		go func(w int) {
			for k := range pairs {
				i := (k + w*37) % len(pairs)
				if got := Default().Equal(pairs[i].gold, pairs[i].resp); got != want[i] {
					errs <- pairs[i].gold + " / " + pairs[i].resp
				}
			}
			done <- true
		}(w)
	}
	for w := 0; w < 4; w++ {
		<-done
	}
	close(errs)
	for e := range errs {
		t.Errorf("concurrent verdict differs: %s", e)
	}
}
