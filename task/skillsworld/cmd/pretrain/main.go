// Command pretrain trains the skills world's base student from random
// weights: full fine-tuning of a tiny Qwen2 model (f32, CPU) on every
// question of the skills it should know (skillsworld.Trained), none of the
// skills it should lack (skillsworld.Unseen). It writes the Hugging Face
// directory (config.json, model.safetensors, tokenizer files) to -out and
// prints the greedy accuracy per skill on the world's test split. -init
// continues from a student written before. The shipped student:
//
//	go run ./task/skillsworld/cmd/pretrain -out /tmp/base
//	go run ./task/skillsworld/cmd/pretrain -init /tmp/base -epochs 20 -out task/skillsworld/student
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"sort"
	"time"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/task/skillsworld"
	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/sft"
	"github.com/statjob/statjob/train/tokenizer"
)

func main() {
	out := flag.String("out", "", "directory to write the student to (required)")
	hidden := flag.Int("hidden", 64, "hidden size")
	layers := flag.Int("layers", 2, "decoder layers")
	epochs := flag.Int("epochs", 36, "passes over the pre-training questions")
	lr := flag.Float64("lr", 3e-3, "peak learning rate")
	batch := flag.Int("batch", 8, "rows per optimizer step")
	seed := flag.Uint64("seed", 1, "weight initialisation and data order seed")
	initDir := flag.String("init", "", "start from the student in this directory instead of random weights")
	flag.Parse()
	if *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*out, *initDir, *hidden, *layers, *epochs, *batch, *lr, *seed); err != nil {
		log.Fatal(err)
	}
}

func run(out, initDir string, hidden, layers, epochs, batch int, lr float64, seed uint64) error {
	ctx := context.Background()
	tok, err := skillsworld.Tokenizer()
	if err != nil {
		return err
	}
	files, err := skillsworld.TokenizerFiles()
	if err != nil {
		return err
	}
	mcfg, err := model.ParseConfig(fmt.Appendf(nil, `{"model_type": "qwen2", "vocab_size": %d, "hidden_size": %d,
		"intermediate_size": %d, "num_hidden_layers": %d, "num_attention_heads": 4, "num_key_value_heads": 2,
		"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 512,
		"tie_word_embeddings": true, "hidden_act": "silu", "bos_token_id": null, "eos_token_id": %d}`,
		tok.VocabSize(), hidden, 2*hidden, layers, tok.StopIDs()[0]))
	if err != nil {
		return err
	}
	m := model.NewRandom(mcfg, seed, 0.02)
	if initDir != "" {
		st, err := storage.Open(ctx, initDir)
		if err != nil {
			return err
		}
		m, err = model.Load(ctx, st, "")
		st.Close()
		if err != nil {
			return err
		}
		mcfg = m.Config
	}

	var convs []sft.Conversation
	for _, k := range skillsworld.Trained() {
		for _, it := range k.Items() {
			convs = append(convs, sft.Conversation{Messages: skillsworld.Conversation(it), Source: it.Question})
		}
	}
	cfg := sft.DefaultConfig()
	cfg.LoRA.Rank = 0
	cfg.MaxLen, cfg.MicroBatch, cfg.Accumulation = 176, batch, 1
	cfg.Epochs, cfg.LR, cfg.WarmupRatio, cfg.WeightDecay, cfg.ClipNorm = epochs, lr, 0.05, 0.0, 1.0
	cfg.Seed, cfg.CheckpointEvery = int64(seed), 0
	if err := cfg.Validate(); err != nil {
		return err
	}
	data, err := sft.Tokenize(convs, tok, tokenizer.ChatOptions{}, cfg)
	if err != nil {
		return err
	}
	log.Printf("pre-training on %d questions (%d tokens, %d targets), %d epochs", data.Stats.Kept, data.Stats.Tokens, data.Stats.Targets, epochs)
	be, err := backend.New("")
	if err != nil {
		return err
	}
	fwd, err := sft.ModelForward(mcfg, cfg)
	if err != nil {
		return err
	}
	tr, err := sft.NewTrainer(cfg, be, m.Ctx, fwd)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "pretrain")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	st, err := storage.Open(ctx, tmp)
	if err != nil {
		return err
	}
	defer st.Close()
	start := time.Now()
	res, err := (&sft.Run{Trainer: tr, Train: data, Store: st, Log: os.Stderr}).Run(ctx)
	if err != nil {
		return err
	}
	log.Printf("trained %d steps in %s, final loss %.4f", res.Steps, time.Since(start).Round(time.Second), res.Final.Loss)

	outSt, err := storage.Open(ctx, out)
	if err != nil {
		return err
	}
	defer outSt.Close()
	if err := m.Save(ctx, outSt, "", model.SaveOptions{Files: files}); err != nil {
		return err
	}
	_, test, err := skillsworld.Split(skillsworld.DefaultConfig())
	if err != nil {
		return err
	}
	start = time.Now()
	scores, _, err := skillsworld.Measure(be, m, tok, test, 24)
	if err != nil {
		return err
	}
	log.Printf("measured %d test questions in %s", len(test), time.Since(start).Round(time.Second))
	names := make([]string, 0, len(scores))
	for n := range scores {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Println("skill\tcorrect\ttotal\taccuracy")
	for _, n := range names {
		s := scores[n]
		fmt.Printf("%s\t%d\t%d\t%.2f\n", n, s.Correct, s.Total, s.Accuracy())
	}
	return nil
}
