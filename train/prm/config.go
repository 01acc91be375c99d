package prm

import (
	"errors"
	"fmt"
	"github.com/statjob/statjob/train/model"
	"math"
	"strings"
)

// Config is how the process reward model is read and how its step scores
// become a verdict.
//
//	prm:
//	  model: gs://bucket/models/Llama3.1-8B-PRM-Mistral-Data
//	  tau1: 0.85         # the last step and the mean of all steps must reach this
//	  tau2: 0.7          # every step after the first must reach this
//	  good_token: "+"    # the assistant's answer in every turn; its probability is the step's score
//	  bad_token: "-"
//	  max_length: 4096   # tokens of the rendered conversation; longer responses are not scored (judged wrong)
//	  batch_tokens: 8192 # padded tokens per forward pass (memory, not results)
type Config struct {
	// Model is the PRM, a Hugging Face directory (config.json,
	// model.safetensors or its shards, tokenizer.json and
	// tokenizer_config.json with the chat template): a local path,
	// gs://bucket/dir or s3://bucket/dir. The paper's PRM is
	// RLHFlow/Llama3.1-8B-PRM-Mistral-Data.
	Model string `yaml:"model"`
	// Tau1 (τ1): a response is wrong when the last step's score or the
	// mean of its step scores is below it.
	Tau1 float64 `yaml:"tau1"`
	// Tau2 (τ2): a response is wrong when any step after the first scores
	// below it.
	Tau2 float64 `yaml:"tau2"`
	// GoodToken and BadToken are the vocabulary entries the PRM was trained
	// to answer with (raw token text, as in tokenizer.json's vocabulary
	// after byte-level decoding). A step's score is
	// P(good) / (P(good) + P(bad)) at the position that predicts the
	// assistant's answer.
	GoodToken string `yaml:"good_token"`
	BadToken  string `yaml:"bad_token"`
	// MaxLength bounds the rendered conversation (question, every step and
	// the template's tokens). A longer response is not scored and counts as
	// judged wrong: cutting it would judge a step that is not its last as
	// if it were, and responses that long are almost always generations
	// that ran into the student's token limit without finishing.
	MaxLength int `yaml:"max_length"`
	// BatchTokens bounds the padded tokens (rows × bucket length) of one
	// forward pass; a pass holds at least one conversation. It changes
	// speed and memory, never the scores.
	BatchTokens int `yaml:"batch_tokens"`
	// DType holds the PRM's weights in "float32" ("", the default) or
	// "bfloat16": half the memory (16 GB instead of 32 for an 8B PRM), and
	// for a bfloat16 checkpoint exactly the same scores.
	DType string `yaml:"dtype,omitempty"`
}

// DefaultConfig is the paper's rule (τ1 0.85, τ2 0.7) and RLHFlow's tokens
// "+" / "-". Model is empty: a spec must name one.
func DefaultConfig() Config {
	return Config{Tau1: 0.85, Tau2: 0.7, GoodToken: "+", BadToken: "-", MaxLength: 4096, BatchTokens: 8192}
}

// ErrNoModel: the configuration names no PRM.
var ErrNoModel = errors.New("no process reward model named")

// Validate names the first bad field.
func (c *Config) Validate() error {
	unit := func(x float64) bool { return x >= 0 && x <= 1 && !math.IsNaN(x) }
	switch {
	case strings.TrimSpace(c.Model) == "":
		return fmt.Errorf("model: %w; give the PRM's Hugging Face directory (path, gs:// or s3://), e.g. RLHFlow/Llama3.1-8B-PRM-Mistral-Data", ErrNoModel)
	case !unit(c.Tau1):
		return fmt.Errorf("tau1: %g is not in [0, 1]", c.Tau1)
	case !unit(c.Tau2):
		return fmt.Errorf("tau2: %g is not in [0, 1]", c.Tau2)
	case c.GoodToken == "":
		return errors.New("good_token: empty")
	case c.BadToken == "":
		return errors.New("bad_token: empty")
	case c.GoodToken == c.BadToken:
		return fmt.Errorf("bad_token: %q is the good_token too", c.BadToken)
	case c.MaxLength < 8:
		return fmt.Errorf("max_length: %d, want at least 8 tokens", c.MaxLength)
	case c.BatchTokens < 1:
		return fmt.Errorf("batch_tokens: %d, want at least 1", c.BatchTokens)
	}
	if _, err := model.HeldDType(c.DType); err != nil {
		return fmt.Errorf("dtype: %w", err)
	}
	return nil
}
