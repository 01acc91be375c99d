package stages

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/train/model"
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
