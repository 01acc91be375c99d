package sft

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestLoRATargetsMustExist: a target that names no projection of the model
// is an error naming the entry, not a run that trains fewer adapters.
func TestLoRATargetsMustExist(t *testing.T) {
	r := tinyRun(t, t.TempDir(), nil)
	cfg := r.Trainer.cfg
	cfg.LoRA.Targets = []string{"up_proj", "dwn_proj"}
	ctx, _ := newTinyContext(1)
	tr, err := NewTrainer(cfg, tinyBackend(t), ctx, tinyForward(NewAdapters(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	r.Trainer = tr
	_, err = r.Run(context.Background())
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), `sft.lora.targets[1]: "dwn_proj"`) {
		t.Fatalf("misspelt LoRA target: got %v", err)
	}
}
