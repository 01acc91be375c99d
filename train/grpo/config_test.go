package grpo

import (
	"errors"
	"math"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestDefaultConfigIsThePapers(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.LR != 5e-7 || c.WarmupSteps != 0 || c.KLCoef != 0 || c.Questions != 256 || c.Group != 4 ||
		c.MiniBatch != 64 || c.Sampling.MaxNewTokens != 2048 || c.Sampling.Temperature != 1 || c.ClipEpsilon != 0.2 {
		t.Fatalf("defaults %+v differ from the paper's GRPO", c)
	}
	if c.lr(0) != c.LR || c.lr(1000) != c.LR {
		t.Fatal("the default learning rate is not constant")
	}
	c.WarmupSteps = 4
	if got := []float64{c.lr(0), c.lr(3), c.lr(4)}; got[0] != c.LR/4 || got[1] != c.LR || got[2] != c.LR {
		t.Fatalf("warm-up lrs %v", got)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		field string
		set   func(*Config)
	}{
		{"grpo.steps", func(c *Config) { c.Steps = 0 }},
		{"grpo.questions", func(c *Config) { c.Questions = 0 }},
		{"grpo.group", func(c *Config) { c.Group = 1 }},
		{"grpo.mini_batch", func(c *Config) { c.MiniBatch = 0 }},
		{"grpo.micro_batch", func(c *Config) { c.MicroBatch = -1 }},
		{"grpo.sample_batch", func(c *Config) { c.SampleBatch = 0 }},
		{"grpo.lr", func(c *Config) { c.LR = 0 }},
		{"grpo.warmup_steps", func(c *Config) { c.WarmupSteps = -1 }},
		{"grpo.clip_epsilon", func(c *Config) { c.ClipEpsilon = 1.5 }},
		{"grpo.kl_coef", func(c *Config) { c.KLCoef = -0.04 }},
		{"grpo.kl_coef", func(c *Config) { c.KLCoef = math.NaN() }},
		{"grpo.kl_coef", func(c *Config) { c.KLCoef = math.Inf(1) }},
		{"grpo.sampling.temperature", func(c *Config) { c.Sampling.Temperature = 0 }},
		{"grpo.sampling.max_new_tokens", func(c *Config) { c.Sampling.MaxNewTokens = 0 }},
		{"grpo.sampling.top_p", func(c *Config) { c.Sampling.TopP = 2 }},
		{"grpo.checkpoint_every", func(c *Config) { c.CheckpointEvery = -1 }},
		{"grpo.keep", func(c *Config) { c.Keep = 0 }},
		{"grpo.beta1", func(c *Config) { c.Beta1 = 1 }},
		{"grpo.clip_norm", func(c *Config) { c.ClipNorm = -1 }},
		{"grpo.lora.alpha", func(c *Config) { c.LoRA.Rank, c.LoRA.Targets = 8, []string{"q_proj"} }},
		{"grpo.lora.targets", func(c *Config) { c.LoRA.Rank, c.LoRA.Alpha = 8, 16 }},
		{"grpo.precision", func(c *Config) { c.Precision = "fp8" }},
	} {
		c := DefaultConfig()
		tc.set(&c)
		err := c.Validate()
		if !errors.Is(err, ErrConfig) || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("%s: err = %v, want ErrConfig naming %s", tc.field, err, tc.field)
		}
	}
}

// TestConfigYAML reads a recipe as a job spec writes it.
func TestConfigYAML(t *testing.T) {
	c := DefaultConfig()
	src := "steps: 3\nquestions: 8\ngroup: 2\nlr: 1.0e-6\nkl_coef: 0.04\nsampling: {temperature: 0.9, top_p: 0.95, max_new_tokens: 64}\nlora: {rank: 4, alpha: 8, targets: [q_proj]}\n"
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Steps != 3 || c.Group != 2 || c.LR != 1e-6 || c.Sampling.TopP != 0.95 || c.KLCoef != 0.04 || c.LoRA.Rank != 4 || c.MiniBatch != 64 {
		t.Fatalf("read %+v", c)
	}
}
