package mathgrade

import (
	"strings"
	"testing"
	"time"
)

func TestExtract(t *testing.T) {
	for _, c := range []struct {
		in, want string
		rule     Rule
	}{
		{`So $x = \boxed{5}$.`, "5", RuleBoxed},
		{`\boxed{\frac{1}{2}} and later \boxed{\frac{\sqrt{3}}{2}}`, `\frac{\sqrt{3}}{2}`, RuleBoxed},
		{`nested \boxed{\{1, \{2\}\}} ok`, `\{1, \{2\}\}`, RuleBoxed},
		{`so \boxed 5$.`, "5", RuleBoxed},
		{`\fbox{42}`, "42", RuleBoxed},
		{`\boxed{12} then \boxed{unclosed`, "12", RuleBoxed},
		{`The answer is $\frac{3}{4}$.`, `\frac{3}{4}`, RuleAnswerIs},
		{`Final Answer: The final answer is $7$. I hope it is correct.`, "7", RuleAnswerIs},
		{`the answer is 3.5. Done`, "3.5", RuleAnswerIs},
		{`The answer is $\$40$.`, `\$40`, RuleAnswerIs},
		{"The answer is: 12\nmore text", "12", RuleAnswerIs},
		{"the answer is (C).", "(C)", RuleAnswerIs},
		{"She has 3 + 4 = 7 left.\n#### 7", "7", RuleAnswerIs},
		{"**Final Answer**: 42", "42", RuleAnswerIs},
		{"The answer is **7**.", "7", RuleAnswerIs},
		{`**Final Answer:** $\frac{1}{2}$`, `\frac{1}{2}`, RuleAnswerIs},
		{"so the rate is 6.02e23 per mole", "6.02e23", RuleLastNumber},
		{`We get 3 apples and then 1,250 pears`, "1,250", RuleLastNumber},
		{`x is -2.5 or so`, "-2.5", RuleLastNumber},
		{`ratio 3/4`, "3/4", RuleLastNumber},
		{`no numbers here`, "", RuleNone},
		{``, "", RuleNone},
	} {
		got, rule := Extract(c.in)
		if got != c.want || rule != c.rule {
			t.Errorf("Extract(%q) = %q, %s; want %q, %s", c.in, got, rule, c.want, c.rule)
		}
	}
}

// TestExtractLinear: many unclosed boxes must not make extraction
// quadratic (a 1 MiB response of them would otherwise take minutes).
func TestExtractLinear(t *testing.T) {
	s := strings.Repeat(`\boxed{`, 100000)
	if a, rule := Extract(s); rule != RuleNone || a != "" {
		t.Errorf("Extract(unclosed boxes) = %q, %s", a, rule)
	}
	s = `\boxed{7} ` + strings.Repeat(`\boxed{`, 100000)
	if a, rule := Extract(s); rule != RuleBoxed || a != "7" {
		t.Errorf("Extract(closed box then unclosed) = %q, %s", a, rule)
	}
}

// TestGradeLargeInputs: responses of about 1 MiB in adversarial shapes
// finish (parsing is bounded by length, comparison by the work budget).
func TestGradeLargeInputs(t *testing.T) {
	const n = 150000
	for name, body := range map[string]string{
		"sum":      strings.Repeat("1+", n) + "1",
		"parens":   strings.Repeat("(", n) + "1" + strings.Repeat(")", n),
		"braces":   strings.Repeat("{", n) + "1" + strings.Repeat("}", n),
		"list":     strings.Repeat("1,", n) + "1",
		"tuples":   strings.Repeat("(1,2),", n) + "(1,2)",
		"text":     strings.Repeat(`\text{a}`, n),
		"relation": strings.Repeat("x<", n) + "1",
		"matrix":   `\begin{pmatrix}` + strings.Repeat(`1&`, n) + `1\end{pmatrix}`,
		"frac":     strings.Repeat(`\frac{1}{`, n) + "2" + strings.Repeat("}", n),
		"unclosed": strings.Repeat(`\sqrt{`, n),
		"units":    "5" + strings.Repeat(" cm", n),
	} {
		for _, resp := range []string{`\boxed{` + body + "}", "The answer is " + body, body} {
			r := Grade(resp, "(1,2), (3,4)")
			if r.Correct {
				t.Errorf("%s: graded correct", name)
			}
			if r.Steps > DefaultConfig().Budget {
				t.Errorf("%s: %d steps", name, r.Steps)
			}
		}
	}
}

func TestGrade(t *testing.T) {
	r := Grade(`Adding, we get $\boxed{\dfrac{1}{2}}$.`, "0.5")
	if !r.Correct || r.Rule != RuleBoxed || r.Extracted != `\dfrac{1}{2}` {
		t.Errorf("Grade = %+v", r)
	}
	if r := Grade("I do not know.", "3"); r.Correct || r.Rule != RuleNone {
		t.Errorf("Grade without answer = %+v", r)
	}
	if r := Grade("so 2 + 2 = 5", "4"); r.Correct || r.Rule != RuleLastNumber {
		t.Errorf("Grade(last number) = %+v", r)
	}
}

// fuzzSeeds are the seed corpus of both fuzz targets; `go test` runs them.
var fuzzSeeds = []string{
	"", "5", `\frac{1}{2}`, `\frac12`, `\sqrt[3]{-8}`, `2^{2^{2^{2}}}`, `\sin^2 x+\cos^2x`, `\log_2 8`,
	`\left(1,2\right]`, `\begin{pmatrix}1&2\\3&4\end{pmatrix}`, `x \in (2,5]`, `1 \pm \sqrt2`,
	`\boxed{\boxed{1}}`, `\boxed{`, `\boxed`, `}{`, `((((((`, `||||`, `\frac{\frac{\frac{1}{2}}{3}}{4}`,
	`\text{(C)}`, `1,\!000`, `10^{10^{10}}`, `0^{-1}`, `(-8)^{1/3}`, `\lfloor x \rfloor!`, `\binom{100000}{50000}`,
	`3e5`, `1e99999`, `\operatorname{lcm}(2,3)`, `x_{1_{2}}`, `a=b=c<d`, "The answer is $\\$", `\sqrt`, `^`, `_`, `!`,
}

func FuzzParseExpr(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start := time.Now()
		n, err := ParseExpr(s)
		if err == nil && n == nil {
			t.Fatal("nil tree without error")
		}
		// comparing with itself and with another answer must finish within the budget
		Default().Equal(s, s+"+1")
		Default().Equal(s, "x")
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("%q took %v", s, d)
		}
	})
}

func FuzzExtract(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
		f.Add("The answer is " + s)
		f.Add(`\boxed{` + s + "}")
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, rule := Extract(s)
		if rule == RuleNone && a != "" {
			t.Fatalf("rule none with answer %q", a)
		}
		if rule != RuleNone && !strings.Contains(s, strings.TrimSpace(a)) {
			t.Fatalf("extracted %q is not in the response", a)
		}
		Grade(s, "1")
	})
}
