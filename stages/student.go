package stages

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"time"

	"github.com/gomlx/gomlx/pkg/core/dtypes"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/tokenizer"
)

// StudentConfig is the student section: the base model every arm starts
// from, and how it computes.
type StudentConfig struct {
	// Model is the base student, a Hugging Face directory (config.json,
	// model.safetensors or its shards, tokenizer.json,
	// tokenizer_config.json): a local path, gs://bucket/dir or s3://bucket/dir.
	Model string `yaml:"model"`
	// Backend is the GoMLX backend: "" for $GOMLX_BACKEND or SimpleGo on
	// the CPU, "xla:cuda" on GPUs, with options such as
	// "xla:cuda,deterministic" for bitwise resumes (see train/backend).
	Backend string `yaml:"backend"`
	// Date is "today" (YYYY-MM-DD) for chat templates that print the date:
	// pinned in the spec so prompts do not change from night to night.
	Date string `yaml:"date"`
	// System is a system message put before every question ("" for none).
	System string `yaml:"system,omitempty"`
	// DType holds the weights that are only read — the student when it
	// answers (probe, evaluate), the base under LoRA, the local embedder —
	// in "float32" (""; the default) or "bfloat16": half the memory, and
	// for a bfloat16 checkpoint (most published ones) exactly the same
	// results. Weights being trained (full fine-tuning, full GRPO) are
	// always float32.
	DType string `yaml:"dtype,omitempty"`
}

// DefaultStudentConfig has no model: a spec must name one.
func DefaultStudentConfig() StudentConfig { return StudentConfig{Date: "2026-01-01"} }

// Validate names the first bad field.
func (c *StudentConfig) Validate() error {
	if c.Model == "" {
		return errors.New("model: empty; name the base student's Hugging Face directory (path, gs:// or s3://)")
	}
	if _, err := time.Parse(time.DateOnly, c.Date); err != nil {
		return fmt.Errorf("date: %q is not YYYY-MM-DD", c.Date)
	}
	if _, err := model.HeldDType(c.DType); err != nil {
		return fmt.Errorf("dtype: %w", err)
	}
	return nil
}

// heldDType is the dtype the weights that are only read are held in
// (Validate checked the name).
func (c *StudentConfig) heldDType() dtypes.DType {
	dt, _ := model.HeldDType(c.DType)
	return dt
}

// trained is c for a stage that trains every weight: held in float32.
func (c *StudentConfig) trained() *StudentConfig {
	t := *c
	t.DType = ""
	return &t
}

// ChatOptions are the chat template inputs for a generation prompt.
func (c *StudentConfig) ChatOptions() tokenizer.ChatOptions {
	d, _ := time.Parse(time.DateOnly, c.Date) // checked by Validate
	return tokenizer.ChatOptions{AddGenerationPrompt: true, Date: d}
}

// withSystem puts the system message (when one is set) before msgs, unless
// they open with their own: the student sees it alike in training and in
// generation.
func (c *StudentConfig) withSystem(msgs []tokenizer.Message) []tokenizer.Message {
	if c.System == "" || len(msgs) > 0 && msgs[0].Role == "system" {
		return msgs
	}
	return append([]tokenizer.Message{{Role: "system", Content: c.System}}, msgs...)
}

// tokenizerFiles travel with the weights: read beside them, exported beside
// a fine-tuned student.
var tokenizerFiles = []string{"tokenizer.json", "tokenizer_config.json"}

// Student is a loaded student model.
type Student struct {
	Model *model.Model
	Tok   *tokenizer.Tokenizer
	// Files are the tokenizer files read beside the weights, by name.
	Files map[string][]byte
	// Where is the student's location, for logs and results.
	Where string
}

// StopIDs are the tokens that end the student's answer: the tokenizer's
// EOS and end-of-turn, and the eos_token_id of config.json and
// generation_config.json, as transformers' generate stops (Gemma 3's <eos>
// beside <end_of_turn>, Llama 3.1's <|end_of_text|> and <|eom_id|> beside
// <|eot_id|>).
func (s *Student) StopIDs() []int {
	stop := s.Tok.StopIDs()
	gen, _ := generationEOS(s.Files[generationConfigFile]) // checked when read
	for _, id := range append(s.Model.Config.EOSTokenIDs(), gen...) {
		if id >= 0 && id < s.Model.Config.VocabSize && !slices.Contains(stop, id) {
			stop = append(stop, id)
		}
	}
	return stop
}

// openStudent loads the student that stage from produced (its StudentDir
// output), or the base student of cfg when from is "", with the weights
// held as cfg.DType says (cfg.trained() for full training).
func openStudent(ctx context.Context, env *job.Env, cfg *StudentConfig, from string) (*Student, error) {
	var (
		src    model.Source
		prefix string
		where  string
	)
	if from == "" {
		st, err := storage.Open(ctx, cfg.Model)
		if err != nil {
			return nil, fmt.Errorf("student.model: %w", err)
		}
		defer st.Close()
		src, where = st, st.URI("")
	} else {
		if _, err := env.Upstream(from); err != nil {
			return nil, err
		}
		src, prefix = env.Store(), job.OutputKey(env.RunID(), from, StudentDir)
		where = env.Store().URI(prefix)
	}
	tok, files, err := loadTokenizer(ctx, src, prefix, where)
	if err != nil {
		return nil, err
	}
	m, err := model.LoadAs(ctx, src, prefix, cfg.heldDType())
	if err != nil {
		return nil, fmt.Errorf("student %s: %w", where, err)
	}
	return &Student{Model: m, Tok: tok, Files: files, Where: where}, nil
}

// loadTokenizer reads the tokenizer files under prefix in src (the student
// at where) and loads them.
func loadTokenizer(ctx context.Context, src model.Source, prefix, where string) (*tokenizer.Tokenizer, map[string][]byte, error) {
	files := map[string][]byte{}
	for _, f := range tokenizerFiles {
		b, err := storage.ReadAll(ctx, src, path.Join(prefix, f))
		if err != nil {
			return nil, nil, fmt.Errorf("student %s: %s: %w", where, f, err)
		}
		files[f] = b
	}
	tok, err := tokenizer.Load(bytes.NewReader(files["tokenizer.json"]), bytes.NewReader(files["tokenizer_config.json"]))
	if err != nil {
		return nil, nil, fmt.Errorf("student %s: %w", where, err)
	}
	for _, f := range optionalFiles {
		b, err := readOptional(ctx, src, path.Join(prefix, f))
		if err != nil {
			return nil, nil, fmt.Errorf("student %s: %w", where, err)
		}
		if b != nil {
			files[f] = b // exported with the student
		}
	}
	if tmpl := files[tokenizer.ChatTemplateFile]; tmpl != nil {
		if err := tok.SetChatTemplate(string(tmpl)); err != nil {
			return nil, nil, fmt.Errorf("student %s: %s: %w", where, tokenizer.ChatTemplateFile, err)
		}
	}
	if b := files[generationConfigFile]; b != nil {
		if _, err := generationEOS(b); err != nil {
			return nil, nil, fmt.Errorf("student %s: %s: %w", where, generationConfigFile, err)
		}
	}
	return tok, files, nil
}

// generationConfigFile holds transformers' generation defaults; its
// eos_token_id is what generate stops on.
const generationConfigFile = "generation_config.json"

// optionalFiles travel with the weights where a checkpoint has them: the
// chat template as transformers 4.51 on saves it, and the generation
// config.
var optionalFiles = []string{tokenizer.ChatTemplateFile, generationConfigFile}

// generationEOS reads eos_token_id (an id or a list) from a
// generation_config.json.
func generationEOS(b []byte) ([]int, error) {
	if b == nil {
		return nil, nil
	}
	var g struct {
		EOS any `json:"eos_token_id"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		return nil, err
	}
	switch v := g.EOS.(type) {
	case nil:
		return nil, nil
	case float64:
		return []int{int(v)}, nil
	case []any:
		ids := make([]int, 0, len(v))
		for _, x := range v {
			f, ok := x.(float64)
			if !ok {
				return nil, fmt.Errorf("eos_token_id: %v is not a token id", x)
			}
			ids = append(ids, int(f))
		}
		return ids, nil
	}
	return nil, fmt.Errorf("eos_token_id: %v, want an id or a list of ids", g.EOS)
}

// readOptional reads key from src, or returns nil when there is no such object.
func readOptional(ctx context.Context, src model.Source, key string) ([]byte, error) {
	b, err := storage.ReadAll(ctx, src, key)
	if errors.Is(err, storage.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// studentHash identifies the base student for fingerprints without reading
// its weights: the hash of config.json, the tokenizer files, and each weight
// file's size and checksum (or generation) as the store reports them.
func studentHash(ctx context.Context, cfg *StudentConfig) (string, error) {
	st, err := storage.Open(ctx, cfg.Model)
	if err != nil {
		return "", fmt.Errorf("student.model: %w", err)
	}
	defer st.Close()
	var parts []any
	for _, f := range append([]string{model.ConfigFile}, tokenizerFiles...) {
		b, err := storage.ReadAll(ctx, st, f)
		if err != nil {
			return "", fmt.Errorf("student %s: %s: %w", st.URI(""), f, err)
		}
		parts = append(parts, f, b)
	}
	// The optional files count only where they are, so the hashes of
	// students without them stay as they were.
	for _, f := range optionalFiles {
		if b, err := readOptional(ctx, st, f); err != nil {
			return "", fmt.Errorf("student %s: %w", st.URI(""), err)
		} else if b != nil {
			parts = append(parts, f, b)
		}
	}
	err = st.List(ctx, "", func(a storage.Attrs) error {
		if path.Ext(a.Key) == ".safetensors" {
			parts = append(parts, a.Key, a.Size, a.SHA256, a.Generation)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("student %s: list: %w", st.URI(""), err)
	}
	return job.Hash(parts...)
}
