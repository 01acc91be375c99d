package prm

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestSteps(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" \n\n\t\n", nil},
		{"one step", []string{"one step"}},
		{"a\nb\n\nc", []string{"a\nb", "c"}},                   // a single newline stays inside a step
		{"a\n\n\n\n  b  \n\n", []string{"a", "b"}},             // a run of blank lines is one break
		{"a\n   \nb\n\t\nc", []string{"a", "b", "c"}},          // whitespace-only lines are blank
		{"a\r\n\r\nb\r\nc", []string{"a", "b\nc"}},             // Windows line ends
		{"\n\n  lead\n\ntrail  \n", []string{"lead", "trail"}}, // trimmed
		{"$$\nx\n$$\n\nSo $\\boxed{1}$.", []string{"$$\nx\n$$", "So $\\boxed{1}$."}},
	} {
		if got := Steps(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("Steps(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestJudge: the rule at its boundaries — equal to a threshold passes,
// just below fails; τ2 does not apply to the first step; the first rule
// that fails is named.
func TestJudge(t *testing.T) {
	c := DefaultConfig() // τ1 0.85, τ2 0.7
	below := func(x float64) float64 { return math.Nextafter(x, 0) }
	for _, tc := range []struct {
		steps []float64
		right bool
		why   string
	}{
		{nil, false, "no steps"},
		{[]float64{0.85}, true, ""},
		{[]float64{below(0.85)}, false, "last step 0.850 < tau1 0.85"},
		{[]float64{0.9, 0.95, 0.85}, true, ""},
		{[]float64{0.9, 0.95, 0.84}, false, "last step 0.840 < tau1 0.85"},
		// the first step is below τ2 but only counts in the mean: 0.5+1+1 = 2.5/3 < 0.85
		{[]float64{0.5, 1, 1}, false, "mean step 0.833 < tau1 0.85"},
		// the first step below τ2 with a mean that holds: right
		{[]float64{0.6, 1, 1, 1}, true, ""},
		{[]float64{1, 1, 0.7, 1, 1, 1, 1}, true, ""}, // τ2 exactly: mean 0.957
		{[]float64{1, 1, below(0.7), 1, 1, 1, 1}, false, "step 3 of 7 0.700 < tau2 0.70"},
		{[]float64{0.85, 0.85, 0.85}, true, ""},
		{[]float64{0.85, 0.85, below(0.85)}, false, "last step 0.850 < tau1 0.85"},
	} {
		right, why := c.Judge(tc.steps)
		if right != tc.right || why != tc.why {
			t.Errorf("Judge(%v) = %v %q, want %v %q", tc.steps, right, why, tc.right, tc.why)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Model = "models/prm"
	if err := ok.Validate(); err != nil {
		t.Fatalf("default with a model: %v", err)
	}
	noModel := DefaultConfig()
	if err := noModel.Validate(); !errors.Is(err, ErrNoModel) || !strings.HasPrefix(err.Error(), "model: ") {
		t.Errorf("no model: %v", err)
	}
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Tau1 = 1.2 }, "tau1: 1.2 is not in [0, 1]"},
		{func(c *Config) { c.Tau2 = math.NaN() }, "tau2: NaN is not in [0, 1]"},
		{func(c *Config) { c.GoodToken = "" }, "good_token: empty"},
		{func(c *Config) { c.BadToken = "+" }, `bad_token: "+" is the good_token too`},
		{func(c *Config) { c.MaxLength = 0 }, "max_length: 0, want at least 8 tokens"},
		{func(c *Config) { c.BatchTokens = -1 }, "batch_tokens: -1, want at least 1"},
	} {
		c := ok
		tc.edit(&c)
		if err := c.Validate(); err == nil || err.Error() != tc.want {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

func TestBucket(t *testing.T) {
	for _, tc := range []struct{ n, limit, want int }{
		{1, 4096, 32}, {32, 4096, 32}, {33, 4096, 48}, {49, 4096, 64}, {65, 4096, 96}, {97, 4096, 128},
		{1500, 4096, 1536}, {3100, 4096, 4096}, {3100, 3500, 3500}, {60, 60, 60},
	} {
		if got := bucket(tc.n, tc.limit); got != tc.want {
			t.Errorf("bucket(%d, %d) = %d, want %d", tc.n, tc.limit, got, tc.want)
		}
	}
}
