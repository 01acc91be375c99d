package teacher

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"
)

// Providers a Config can name.
const (
	ProviderGemini = "gemini" // Gemini API, key from APIKeyEnv
	ProviderVertex = "vertex" // Gemini on Vertex AI, Application Default Credentials
	ProviderOpenAI = "openai" // any OpenAI-compatible endpoint (OpenAI, vLLM, SGLang, LiteLLM, Ollama)
)

// Structured-output modes.
const (
	StructuredSchema = "schema" // send the JSON schema; the provider constrains the reply
	StructuredTags   = "tags"   // ask for <tag>…</tag> text and parse it
)

// Config is the teacher section of a job spec. Start from DefaultConfig.
type Config struct {
	// Provider: gemini, vertex or openai.
	Provider string `yaml:"provider"`
	// Model as the provider names it ("gemini-2.5-flash", "gpt-4o-mini").
	Model string `yaml:"model"`
	// BaseURL overrides the provider's endpoint (required for self-hosted
	// OpenAI-compatible servers).
	BaseURL string `yaml:"base_url,omitempty"`
	// APIKeyEnv is the NAME of the environment variable holding the key
	// (gemini, openai). The key itself never appears in a spec, log or error.
	// Empty: GEMINI_API_KEY for gemini, OPENAI_API_KEY for openai without a
	// base_url, and no key for a self-hosted base_url.
	APIKeyEnv string `yaml:"api_key_env,omitempty"`
	// Project and Location of the Vertex AI endpoint (vertex).
	Project  string `yaml:"project,omitempty"`
	Location string `yaml:"location,omitempty"`
	// Structured: schema (JSON schema, default) or tags (tagged text) for
	// endpoints without constrained decoding.
	Structured string `yaml:"structured"`
	// Timeout of one attempt.
	Timeout time.Duration `yaml:"timeout"`

	Limits Limits `yaml:"limits"`
	Retry  Retry  `yaml:"retry"`
	Budget Budget `yaml:"budget"`
	// Prices per model name, for cost accounting and money budgets.
	Prices map[string]Price `yaml:"prices,omitempty"`
	Batch  BatchConfig      `yaml:"batch"`
	// Cache turns the response cache off when false (default true).
	Cache bool `yaml:"cache"`
}

// Limits pace calls to what the provider allows.
type Limits struct {
	// Concurrency is the most calls in flight (the AIMD limit's ceiling).
	Concurrency int `yaml:"concurrency"`
	// RPM and TPM: requests and tokens per minute; 0 = unlimited.
	RPM int `yaml:"rpm"`
	TPM int `yaml:"tpm"`
}

// Retry bounds the retries of one call.
type Retry struct {
	// Attempts per call for 5xx, timeouts and resets (1 = no retry).
	Attempts int `yaml:"attempts"`
	// RateLimited: how many 429s one call may meet before it fails.
	RateLimited int `yaml:"rate_limited"`
	// BaseDelay and MaxDelay of the exponential backoff (full jitter).
	BaseDelay time.Duration `yaml:"base_delay"`
	MaxDelay  time.Duration `yaml:"max_delay"`
	// Reasks: how often a reply that does not parse is re-asked with the
	// parse error before the item is recorded as failed.
	Reasks int `yaml:"reasks"`
}

// Budget is a hard limit on what a stage may spend; zero fields are unlimited.
type Budget struct {
	Tokens int64   `yaml:"tokens,omitempty"` // input + output tokens
	USD    float64 `yaml:"usd,omitempty"`    // needs a price for the model
}

// Price of one model in US dollars per million tokens.
type Price struct {
	InputPerM  float64 `yaml:"input_per_m"`
	OutputPerM float64 `yaml:"output_per_m"`
}

// BatchConfig sets up the provider's batch API.
type BatchConfig struct {
	// Enabled sends a stage's calls as one batch job (Vertex batch
	// prediction, OpenAI Batch API) before the online pass.
	Enabled bool `yaml:"enabled"`
	// PollInterval between status checks of a running batch.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MinItems: fewer uncached calls than this go online.
	MinItems int `yaml:"min_items"`
}

// DefaultConfig returns the defaults every spec starts from.
func DefaultConfig() Config {
	return Config{
		Provider:   ProviderGemini,
		Model:      "gemini-2.5-flash",
		Structured: StructuredSchema,
		Timeout:    2 * time.Minute,
		Limits:     Limits{Concurrency: 64},
		Retry: Retry{Attempts: 5, RateLimited: 20, BaseDelay: time.Second,
			MaxDelay: time.Minute, Reasks: 2},
		Batch: BatchConfig{PollInterval: 30 * time.Second, MinItems: 100},
		Cache: true,
	}
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate names the first bad field.
func (c *Config) Validate() error {
	bad := func(field, format string, a ...any) error {
		return fmt.Errorf("teacher.%s: %s", field, fmt.Sprintf(format, a...))
	}
	switch c.Provider {
	case ProviderGemini, ProviderOpenAI:
	case ProviderVertex:
		if c.Project == "" {
			return bad("project", "required for provider vertex")
		}
		if c.Location == "" {
			return bad("location", "required for provider vertex")
		}
	default:
		return bad("provider", "%q is not one of gemini, vertex, openai", c.Provider)
	}
	if c.Model == "" {
		return bad("model", "required")
	}
	if c.APIKeyEnv != "" && !envName.MatchString(c.APIKeyEnv) {
		// A value that is not a variable name is most likely a pasted key:
		// say so without echoing it.
		return bad("api_key_env", "must be the NAME of an environment variable (letters, digits, _), not a key")
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("base_url", "%q is not an http(s) URL", c.BaseURL)
		}
	}
	switch c.Structured {
	case StructuredSchema, StructuredTags:
	default:
		return bad("structured", "%q is not schema or tags", c.Structured)
	}
	if c.Timeout <= 0 {
		return bad("timeout", "must be positive")
	}
	if c.Limits.Concurrency < 1 {
		return bad("limits.concurrency", "must be at least 1")
	}
	if c.Limits.RPM < 0 || c.Limits.TPM < 0 {
		return bad("limits", "rpm and tpm must not be negative")
	}
	if c.Retry.Attempts < 1 {
		return bad("retry.attempts", "must be at least 1")
	}
	if c.Retry.RateLimited < 0 || c.Retry.Reasks < 0 {
		return bad("retry", "rate_limited and reasks must not be negative")
	}
	if c.Retry.BaseDelay <= 0 || c.Retry.MaxDelay < c.Retry.BaseDelay {
		return bad("retry.base_delay", "must be positive and at most max_delay")
	}
	if c.Budget.Tokens < 0 || c.Budget.USD < 0 {
		return bad("budget", "must not be negative")
	}
	for m, p := range c.Prices {
		if p.InputPerM < 0 || p.OutputPerM < 0 {
			return bad("prices."+m, "must not be negative")
		}
	}
	if c.Budget.USD > 0 {
		if _, ok := c.Prices[c.Model]; !ok {
			return bad("budget.usd", "needs prices.%s to turn tokens into dollars", c.Model)
		}
	}
	if c.Batch.Enabled {
		if c.Provider == ProviderGemini {
			return bad("batch.enabled", "batch mode is available with provider vertex or openai, not gemini (the Gemini API key has none)")
		}
		if !c.Cache {
			return bad("batch.enabled", "batch mode needs the response cache (teacher.cache: true): it holds the batch's results")
		}
		if c.Batch.PollInterval <= 0 {
			return bad("batch.poll_interval", "must be positive")
		}
		if c.Batch.MinItems < 0 {
			return bad("batch.min_items", "must not be negative")
		}
	}
	return nil
}

// KeyEnv is the variable the key is read from ("" when none is needed).
func (c *Config) KeyEnv() string {
	switch {
	case c.APIKeyEnv != "" || c.Provider == ProviderVertex:
		return c.APIKeyEnv
	case c.Provider == ProviderGemini:
		return "GEMINI_API_KEY"
	case c.BaseURL == "":
		return "OPENAI_API_KEY"
	}
	return ""
}

// Cost of a usage in dollars under the model's price (0 without a price).
func (c *Config) Cost(u Usage) float64 {
	p := c.Prices[c.Model]
	return (float64(u.Input)*p.InputPerM + float64(u.Output)*p.OutputPerM) / 1e6
}

var errNoKey = errors.New("environment variable is empty or unset")
