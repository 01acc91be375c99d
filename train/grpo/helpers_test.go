package grpo

import (
	"context"
	"testing"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/model"
)

// tinyConfig is a two-layer Qwen2 decoder with a 16-token vocabulary and an
// untied lm_head: every part of the model core, at test size.
func tinyConfig(t testing.TB) *model.Config {
	t.Helper()
	cfg, err := model.ParseConfig([]byte(`{"model_type": "qwen2", "vocab_size": 16, "hidden_size": 16,
		"intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 512,
		"tie_word_embeddings": false, "hidden_act": "silu"}`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// tinyModel is a seeded random tiny model.
func tinyModel(t testing.TB, seed uint64) *model.Model {
	return model.NewRandom(tinyConfig(t), seed, 0.3)
}

// testBackend is SimpleGo on the CPU unless GOMLX_BACKEND names another.
func testBackend(t testing.TB) backends.Backend {
	t.Helper()
	b, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openStore(t testing.TB, dir string) storage.Store {
	t.Helper()
	st, err := storage.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// testLog writes a run's log lines to the test log.
type testLog struct{ t testing.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}
