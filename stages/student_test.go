package stages

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/tokenizer"
)

// tinyTokDir holds the real tiny byte-level BPE tokenizer (Qwen2 chat
// template) the train/sft tests use.
const tinyTokDir = "../train/sft/testdata/tinytok"

// writeTinyStudent saves a random tiny Qwen2 student (hidden 32, 2 layers,
// the tiny tokenizer's 288 ids) in Hugging Face layout under dir and
// returns dir, for student.model.
func writeTinyStudent(t testing.TB, dir string) string {
	t.Helper()
	return writeStudent(t, dir, `{"model_type": "qwen2", "vocab_size": 288, "hidden_size": 32,
		"intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 4096,
		"tie_word_embeddings": true, "hidden_act": "silu"}`, tinyTokDir, 0.05)
}

// writeStudent saves a random student of config.json text config (weights
// N(0, std²), seed 1) with the tokenizer files of tokDir under dir and
// returns dir.
func writeStudent(t testing.TB, dir, config, tokDir string, std float64) string {
	t.Helper()
	ctx := context.Background()
	cfg, err := model.ParseConfig([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range tokenizerFiles {
		if files[f], err = os.ReadFile(filepath.Join(tokDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := storage.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := model.NewRandom(cfg, 1, std).Save(ctx, st, "", model.SaveOptions{Files: files}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// studentWithFile writes a tiny student, adds the file name with content
// beside it, and fails t unless the student's hash changes with it.
func studentWithFile(t *testing.T, name, content string) (*StudentConfig, string) {
	t.Helper()
	ctx := context.Background()
	dir := writeTinyStudent(t, t.TempDir())
	sc := testSpec(t, dir).Section("student").(*StudentConfig)
	before, err := studentHash(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if after, err := studentHash(ctx, sc); err != nil || after == before {
		t.Errorf("the student's hash ignores %s (%v)", name, err)
	}
	return sc, dir
}

// TestChatTemplateFile: a chat_template.jinja beside the tokenizer files
// (where transformers 4.51 on saves the template) replaces
// tokenizer_config.json's, counts in the student's hash, and is exported
// with the trained student.
func TestChatTemplateFile(t *testing.T) {
	ctx := context.Background()
	tmpl := "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endfor %}" +
		"{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
	sc, dir := studentWithFile(t, tokenizer.ChatTemplateFile, tmpl)
	st, err := openStudent(ctx, nil, sc, "")
	if err != nil {
		t.Fatal(err)
	}
	text, err := st.Tok.RenderChat([]tokenizer.Message{{Role: "user", Content: "hi"}}, tokenizer.ChatOptions{AddGenerationPrompt: true})
	if err != nil {
		t.Fatal(err)
	}
	// tokenizer_config.json's template would add a default system turn.
	if want := "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"; text != want || string(st.Files[tokenizer.ChatTemplateFile]) != tmpl {
		t.Errorf("rendered %q, want %q (files %v)", text, want, slices.Sorted(maps.Keys(st.Files)))
	}
	tok, err := tokenizer.LoadDir(dir)
	if err != nil || tok.ChatTemplate() != tmpl {
		t.Errorf("tokenizer.LoadDir: %v, template %q", err, tok.ChatTemplate())
	}
	if err := os.WriteFile(filepath.Join(dir, tokenizer.ChatTemplateFile), []byte("{% for %}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openStudent(ctx, nil, sc, ""); err == nil || !strings.Contains(err.Error(), tokenizer.ChatTemplateFile) {
		t.Errorf("a broken chat_template.jinja: %v", err)
	}
}

// TestGenerationConfigFile: generation_config.json's eos_token_id ends
// answers too (as transformers' generate reads it), counts in the
// student's hash, travels with the student, and a bad one is refused by
// name.
func TestGenerationConfigFile(t *testing.T) {
	ctx := context.Background()
	gc := `{"bos_token_id": 282, "eos_token_id": [284, 282], "do_sample": true}`
	sc, dir := studentWithFile(t, "generation_config.json", gc)
	st, err := openStudent(ctx, nil, sc, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.StopIDs(); !slices.Equal(got, []int{284, 282}) || string(st.Files["generation_config.json"]) != gc {
		t.Errorf("stop ids %v (want <|im_end|> 284 and <|endoftext|> 282); files %v", got, slices.Sorted(maps.Keys(st.Files)))
	}
	if err := os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(`{"eos_token_id": "x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openStudent(ctx, nil, sc, ""); err == nil || !strings.Contains(err.Error(), "generation_config.json: eos_token_id") {
		t.Errorf("a bad generation_config.json: %v", err)
	}
}
