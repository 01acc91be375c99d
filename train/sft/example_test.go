package sft_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/sft"
	"github.com/statjob/statjob/train/tokenizer"
)

// Example is how a training stage uses the package: read the conversations,
// render them through the student's chat template, train with checkpoints in
// the run's storage (a rerun resumes from the newest one), export the merged
// student. Here: a tiny random Qwen2 student, four optimizer steps of LoRA.
func Example() {
	ctx := context.Background()
	root, err := os.MkdirTemp("", "sft-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	store, err := storage.Open(ctx, root) // or gs://bucket/prefix, s3://bucket/prefix
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	writeTinyStudent(ctx, store, "base") // stands in for a real base model

	// Data: JSONL of messages or prompt/completion pairs.
	jsonl := `{"prompt": "What is 2+3?", "completion": "2+3 = \\boxed{5}."}
{"messages": [{"role": "user", "content": "Is 7 prime?"}, {"role": "assistant", "content": "Yes: \\boxed{7} is prime."}]}
{"prompt": "Compute 4*4.", "completion": "4*4 = \\boxed{16}."}
{"prompt": "Half of 10?", "completion": "10/2 = \\boxed{5}."}`
	convs, err := sft.ReadJSONL(strings.NewReader(jsonl), "dataset/train.jsonl")
	if err != nil {
		log.Fatal(err)
	}
	tok, err := tokenizer.LoadDir(filepath.Join(root, "base"))
	if err != nil {
		log.Fatal(err)
	}
	cfg := sft.DefaultConfig() // the paper's recipe; a job spec overrides fields
	cfg.MaxLen, cfg.MicroBatch, cfg.Accumulation, cfg.Epochs, cfg.CheckpointEvery = 64, 2, 1, 2, 2
	if err := cfg.Validate(); err != nil {
		log.Fatal(err)
	}
	data, err := sft.Tokenize(convs, tok, tokenizer.ChatOptions{}, cfg)
	if err != nil {
		log.Fatal(err)
	}

	// Train.
	student, err := model.Load(ctx, store, "base")
	if err != nil {
		log.Fatal(err)
	}
	be, err := backend.New("") // GOMLX_BACKEND or SimpleGo
	if err != nil {
		log.Fatal(err)
	}
	fwd, err := sft.ModelForward(student.Config, cfg)
	if err != nil {
		log.Fatal(err)
	}
	tr, err := sft.NewTrainer(cfg, be, student.Ctx, fwd)
	if err != nil {
		log.Fatal(err)
	}
	run := &sft.Run{Trainer: tr, Train: data, Store: store, Prefix: "runs/r1/sft/train/"}
	res, err := run.Run(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("trained %d/%d steps on %d examples, done=%v\n", res.Steps, res.TotalSteps, res.Data.Kept, res.Done)

	// Export the merged student in Hugging Face layout, tokenizer included.
	files := map[string][]byte{}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		if files[f], err = os.ReadFile(filepath.Join(root, "base", f)); err != nil {
			log.Fatal(err)
		}
	}
	if err := sft.Export(ctx, student, cfg, store, "runs/r1/sft/train/student", "BF16", files); err != nil {
		log.Fatal(err)
	}
	if _, err := model.Load(ctx, store, "runs/r1/sft/train/student"); err != nil {
		log.Fatal(err)
	}
	fmt.Println("exported student loads")
}

// TestExample runs Example (whose output includes the backend's own
// start-up line, so it is not compared as an Output block): any failure
// stops the test binary.
func TestExample(t *testing.T) { Example() }

// writeTinyStudent saves a random tiny Qwen2 checkpoint with the test
// tokenizer under prefix.
func writeTinyStudent(ctx context.Context, store storage.Store, prefix string) {
	cfg, err := model.ParseConfig([]byte(`{"model_type": "qwen2", "vocab_size": 288, "hidden_size": 32,
		"intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 4096,
		"tie_word_embeddings": true, "hidden_act": "silu"}`))
	if err != nil {
		log.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		if files[f], err = os.ReadFile(filepath.Join("testdata/tinytok", f)); err != nil {
			log.Fatal(err)
		}
	}
	if err := model.NewRandom(cfg, 1, 0.05).Save(ctx, store, prefix, model.SaveOptions{Files: files}); err != nil {
		log.Fatal(err)
	}
}
