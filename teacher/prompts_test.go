package teacher

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func algebraSkills(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../data/skills/math_skills.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Subjects map[string][]string `json:"subjects"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Subjects["algebra"]) < 5 {
		t.Fatal("no algebra skills in the catalogue")
	}
	return f.Subjects["algebra"]
}

func TestPromptHashes(t *testing.T) {
	seen := map[string]string{}
	for name, p := range Prompts {
		h := p.Hash()
		if len(h) != 64 || h != p.Hash() {
			t.Fatalf("%s: hash %q not stable", name, h)
		}
		if other, dup := seen[h]; dup {
			t.Fatalf("%s and %s share a hash", name, other)
		}
		seen[h] = name
		changed := *p
		changed.User += " "
		if changed.Hash() == h {
			t.Fatalf("%s: hash ignores the template text", name)
		}
		changed = *p
		changed.Version++
		if changed.Hash() == h {
			t.Fatalf("%s: hash ignores the version", name)
		}
	}
}

func TestPromptRender(t *testing.T) {
	skills := algebraSkills(t)
	data := map[string]any{"Subject": "algebra", "Question": "Solve $2x+3=7$.", "Skills": skills}
	req, err := LabelSkills.Request(data, Params{MaxTokens: 200}, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	if req.Prompt != "label_skills@1" || req.Sample != 1 || req.Schema == nil || req.Messages[0].Role != System {
		t.Fatalf("request %+v", req)
	}
	user := req.Messages[1].Content
	if !strings.Contains(user, "Solve $2x+3=7$.") || !strings.Contains(user, "- "+skills[0]+"\n") {
		t.Fatalf("user message:\n%s", user)
	}
	tagged, err := LabelSkills.Request(data, Params{MaxTokens: 200}, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if tagged.Schema != nil || !strings.Contains(tagged.Messages[1].Content, "<skill>") {
		t.Fatalf("tagged request %+v", tagged)
	}
	if _, err := LabelSkills.Request(map[string]any{"Subject": "algebra"}, Params{MaxTokens: 1}, 0, true); err == nil {
		t.Fatal("missing template data not reported")
	}
	for _, p := range Prompts {
		if _, err := p.Request(map[string]any{"Subject": "s", "Question": "q", "Questions": []string{"a"},
			"Skills": skills, "Skill": "x", "Examples": []string{"e1", "e2", "e3"}, "Reference": "1",
			"Response": "r"}, Params{MaxTokens: 1}, 0, true); err != nil {
			t.Fatalf("%s: %v", p.ID(), err)
		}
	}
}

func TestParseLabel(t *testing.T) {
	skills := algebraSkills(t)
	parse := ParseLabel(skills)
	a, b := skills[0], skills[1]
	cases := []struct {
		text    string
		want    []string
		wantErr string
	}{
		{`{"skills": ["` + a + `", "` + b + `"]}`, []string{a, b}, ""},
		{"```json\n{\"skills\": [\"" + strings.ToUpper(a) + "\"]}\n```", []string{a}, ""},
		{"<skill>" + a + "</skill>\n<skill> " + strings.ReplaceAll(b, "_", " ") + " </skill><skill>" + a + "</skill>", []string{a, b}, ""},
		{`<skill>quantum_gravity</skill>`, nil, "not in the list"},
		{`{"skills": []}`, nil, "want 1 to 5"},
		{`{"skills": ["` + strings.Join(skills[:6], `","`) + `"]}`, nil, "want 1 to 5"},
		{`{"skills": "` + a + `"}`, nil, "not a list"},
		{`{"skills": [`, nil, "not valid JSON"},
		{`I think it is algebra.`, nil, "no <skill>"},
	}
	for _, c := range cases {
		got, err := parse(c.text)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: err %v, want %q", c.text, err, c.wantErr)
			}
			continue
		}
		if err != nil || strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%q: %v, %v; want %v", c.text, got, err, c.want)
		}
	}
}

func TestParseDiagnosis(t *testing.T) {
	skills := algebraSkills(t)
	parse := ParseDiagnosis(skills)
	a, b, c := skills[0], skills[1], skills[2]
	d, err := parse(`{"judge": "incorrect", "reason": "sign error", "missing_skills": ["` + a + `", "` + b + `"]}`)
	if err != nil || d.Correct || d.Reason != "sign error" || len(d.Missing) != 2 {
		t.Fatalf("%+v %v", d, err)
	}
	d, err = parse("<judge>Correct</judge><reason>fine</reason><skill>" + a + "</skill><skill>" + b + "</skill><skill>" + c + "</skill>")
	if err != nil || !d.Correct || len(d.Missing) != 3 {
		t.Fatalf("%+v %v", d, err)
	}
	for _, bad := range []string{
		`{"judge": "maybe", "reason": "", "missing_skills": ["` + a + `", "` + b + `"]}`,
		`{"judge": "incorrect", "reason": "", "missing_skills": ["` + a + `"]}`,
		`{"judge": "incorrect", "reason": "", "missing_skills": ["` + a + `", "made_up_skill"]}`,
	} {
		if _, err := parse(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestParseQuestionAndBoxed(t *testing.T) {
	if q, err := ParseQuestion(`{"question": " What is 2+2? "}`); err != nil || q != "What is 2+2?" {
		t.Fatalf("%q %v", q, err)
	}
	if q, err := ParseQuestion("Here: <question>Find $x$.</question>"); err != nil || q != "Find $x$." {
		t.Fatalf("%q %v", q, err)
	}
	if _, err := ParseQuestion("Find x."); err == nil {
		t.Fatal("untagged question accepted")
	}
	for text, want := range map[string]string{
		`so \boxed{4}.`:                          "4",
		`\boxed{1} then \boxed{\frac{1}{2}}`:     `\frac{1}{2}`,
		`\boxed{ \{1, 2\} \cup \{3\} }`:          `\{1, 2\} \cup \{3\}`,
		`$x = \boxed{\sqrt{2}}$ and that's all.`: `\sqrt{2}`,
	} {
		if got, err := Boxed(text); err != nil || got != want {
			t.Errorf("Boxed(%q) = %q, %v; want %q", text, got, err, want)
		}
	}
	for _, bad := range []string{"the answer is 4", `\boxed{\frac{1}{2}`} {
		if _, err := Boxed(bad); err == nil {
			t.Errorf("Boxed(%q) accepted", bad)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	if err := ok.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	cases := []struct {
		field string
		edit  func(*Config)
	}{
		{"teacher.provider", func(c *Config) { c.Provider = "claude" }},
		{"teacher.model", func(c *Config) { c.Model = "" }},
		{"teacher.api_key_env", func(c *Config) { c.APIKeyEnv = "AIzaSy-not-a-name" }},
		{"teacher.project", func(c *Config) { c.Provider = ProviderVertex }},
		{"teacher.location", func(c *Config) { c.Provider, c.Project = ProviderVertex, "p" }},
		{"teacher.base_url", func(c *Config) { c.BaseURL = "localhost:8000" }},
		{"teacher.structured", func(c *Config) { c.Structured = "xml" }},
		{"teacher.timeout", func(c *Config) { c.Timeout = 0 }},
		{"teacher.limits.concurrency", func(c *Config) { c.Limits.Concurrency = 0 }},
		{"teacher.limits", func(c *Config) { c.Limits.RPM = -1 }},
		{"teacher.retry.attempts", func(c *Config) { c.Retry.Attempts = 0 }},
		{"teacher.retry.base_delay", func(c *Config) { c.Retry.MaxDelay = 0 }},
		{"teacher.budget", func(c *Config) { c.Budget.Tokens = -5 }},
		{"teacher.budget.usd", func(c *Config) { c.Budget.USD = 10 }},
		{"teacher.prices.m", func(c *Config) { c.Prices = map[string]Price{"m": {InputPerM: -1}} }},
		{"teacher.batch.poll_interval", func(c *Config) { c.Provider, c.Batch.Enabled, c.Batch.PollInterval = ProviderOpenAI, true, 0 }},
		{"teacher.batch.enabled", func(c *Config) { c.Batch.Enabled = true }}, // gemini: no batch mode
		{"teacher.batch.enabled", func(c *Config) { c.Provider, c.Batch.Enabled, c.Cache = ProviderOpenAI, true, false }},
	}
	for _, tc := range cases {
		c := DefaultConfig()
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("want an error naming %s, got %v", tc.field, err)
		}
	}
	vllm := DefaultConfig()
	vllm.Provider, vllm.BaseURL, vllm.Model = ProviderOpenAI, "http://localhost:8000/v1", "Qwen/Qwen2.5-7B-Instruct"
	if err := vllm.Validate(); err != nil || vllm.KeyEnv() != "" {
		t.Fatalf("keyless local server: %v, key from %q", err, vllm.KeyEnv())
	}
	for _, c := range []struct{ provider, base, named, want string }{
		{ProviderGemini, "", "", "GEMINI_API_KEY"},
		{ProviderOpenAI, "", "", "OPENAI_API_KEY"},
		{ProviderOpenAI, "https://proxy.example/v1", "PROXY_KEY", "PROXY_KEY"},
	} {
		k := Config{Provider: c.provider, BaseURL: c.base, APIKeyEnv: c.named}
		if got := k.KeyEnv(); got != c.want {
			t.Errorf("%+v: key from %q, want %q", c, got, c.want)
		}
	}
	t.Setenv("GEMINI_API_KEY", "")
	noCache := DefaultConfig()
	noCache.Cache = false
	if _, err := New(context.Background(), noCache, nil, nil); err == nil ||
		!strings.Contains(err.Error(), "GEMINI_API_KEY") {
		t.Fatalf("unset key: %v", err)
	}
}

func TestConfigYAML(t *testing.T) {
	c := DefaultConfig()
	err := yaml.Unmarshal([]byte(`
provider: openai
model: gpt-4o-mini
api_key_env: OPENAI_API_KEY
timeout: 90s
limits: {concurrency: 32, rpm: 500, tpm: 200000}
retry: {base_delay: 500ms}
budget: {usd: 12.5}
prices: {gpt-4o-mini: {input_per_m: 0.15, output_per_m: 0.6}}
batch: {enabled: true, poll_interval: 1m}
`), &c)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Timeout != 90*time.Second || c.Retry.BaseDelay != 500*time.Millisecond || c.Retry.Attempts != 5 ||
		c.Limits.TPM != 200000 || c.Batch.PollInterval != time.Minute || !c.Cache {
		t.Fatalf("decoded %+v", c)
	}
	if got := c.Cost(Usage{Input: 1_000_000, Output: 500_000}); got < 0.4499 || got > 0.4501 {
		t.Fatalf("cost %v, want 0.45", got)
	}
}
