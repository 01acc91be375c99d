package sft

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/statjob/statjob/train/tokenizer"
)

func tinyTokenizer(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.LoadDir("testdata/tinytok")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestReadJSONLErrorsNameFileAndLine(t *testing.T) {
	good := `{"messages":[{"role":"user","content":"1+1?"},{"role":"assistant","content":"2"}]}`
	for _, tc := range []struct{ line, want string }{
		{`{"prompt":"q","completion":""}`, `empty "completion"`},
		{`{"prompt":"q","completion":"  "}`, `empty "completion"`},
		{`{"prompt":"q"}`, `missing field "completion"`},
		{`{"completion":"a"}`, `missing field "prompt"`},
		{`{"text":"a"}`, `missing field "messages"`},
		{`{"messages":[{"role":"robot","content":"x"},{"role":"assistant","content":"y"}]}`, `unknown role "robot"`},
		{`{"messages":[{"content":"x"}]}`, `messages[0]: missing field "role"`},
		{`{"messages":[{"role":"user"}]}`, `messages[0]: missing field "content"`},
		{`{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":""}]}`, `messages[1]: empty assistant "content"`},
		{`{"messages":[{"role":"user","content":"x"}]}`, `no assistant turn`},
		{`{"messages":[]}`, `empty "messages"`},
		{`not json`, `not a JSON object`},
	} {
		_, err := ReadJSONL(strings.NewReader(good+"\n\n"+tc.line+"\n"), "train.jsonl")
		if err == nil || !errors.Is(err, ErrData) || !strings.Contains(err.Error(), "train.jsonl:3:") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want train.jsonl:3 and %q", tc.line, err, tc.want)
		}
	}
	convs, err := ReadJSONL(strings.NewReader(good+"\n"+`{"prompt":"p","completion":"c"}`), "ok.jsonl")
	if err != nil || len(convs) != 2 || convs[1].Source != "ok.jsonl:2" || convs[1].Messages[1].Role != "assistant" {
		t.Fatalf("got %+v, %v", convs, err)
	}
}

// TestLossCoversAssistantAndEndOfTurn renders real conversations through a
// real (tiny) tokenizer and chat template: the loss targets are exactly the
// assistant's tokens followed by <|im_end|>, and nothing of the prompt.
func TestLossCoversAssistantAndEndOfTurn(t *testing.T) {
	tok := tinyTokenizer(t)
	convs, err := ReadJSONL(strings.NewReader(
		`{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 12+34?"},{"role":"assistant","content":"46"},{"role":"user","content":"And 56+78?"},{"role":"assistant","content":"The answer is 134."}]}`+"\n"+
			`{"prompt":"Solve x+1=2.","completion":"x = 1, so \\boxed{1}."}`), "chat.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	d, err := Tokenize(convs, tok, tokenizer.ChatOptions{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	eot, ok := tok.TokenID("<|im_end|>")
	if !ok {
		t.Fatal("no <|im_end|>")
	}
	wantTurns := [][]string{{"46<|im_end|>", "The answer is 134.<|im_end|>"}, {"x = 1, so \\boxed{1}.<|im_end|>"}}
	for k, e := range d.Examples {
		var turns []string
		var cur []int
		for i, id := range e.IDs {
			if e.Loss[i] {
				cur = append(cur, int(id))
			} else if cur != nil {
				turns = append(turns, tok.Decode(cur))
				cur = nil
			}
		}
		if cur != nil {
			turns = append(turns, tok.Decode(cur))
		}
		if !slices.Equal(turns, wantTurns[k]) {
			t.Errorf("example %d: loss tokens decode to %q, want %q", k, turns, wantTurns[k])
		}
		// In a batch the end-of-turn token is a weighted target.
		b := d.EpochBatches(cfg, 0)
		found := false
		for _, bb := range b {
			for i := range bb.Targets {
				found = found || (bb.Targets[i] == int32(eot) && bb.Weights[i] == 1)
			}
		}
		if !found {
			t.Errorf("<|im_end|> is never a loss target")
		}
	}
}

func exampleOfLen(n int, loss bool) Example {
	e := Example{IDs: make([]int32, n), Loss: make([]bool, n)}
	for i := range n {
		e.IDs[i], e.Loss[i] = int32(i+1), loss && i >= n/2
	}
	return e
}

func TestOverlongTruncatedOrDroppedAndCounted(t *testing.T) {
	tok := tinyTokenizer(t)
	long := strings.Repeat("word ", 40)
	convs := []Conversation{
		{Messages: []tokenizer.Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "ok"}}, Source: "a:1"},
		{Messages: []tokenizer.Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: long}}, Source: "a:2"},
		{Messages: []tokenizer.Message{{Role: "user", Content: long}, {Role: "assistant", Content: "ok"}}, Source: "a:3"},
	}
	cfg := DefaultConfig()
	full, err := Tokenize(convs, tok, tokenizer.ChatOptions{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Room for the short example and a few assistant tokens of a:2, but not
	// for the end of a:3's long prompt.
	cfg.MaxLen = len(full.Examples[0].IDs) + 8
	cfg.Overlong = OverlongTruncate
	d, err := Tokenize(convs, tok, tokenizer.ChatOptions{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// a:2 is cut to 40 tokens and keeps assistant tokens; a:3 loses all of them.
	if got := d.Stats; got.Read != 3 || got.Kept != 2 || got.Truncated != 2 || got.Dropped != 1 {
		t.Errorf("truncate: %+v", got)
	}
	for _, e := range d.Examples {
		if len(e.IDs) > cfg.MaxLen {
			t.Errorf("%s: %d tokens > max_len", e.Source, len(e.IDs))
		}
	}
	cfg.Overlong = OverlongDrop
	d, err = Tokenize(convs, tok, tokenizer.ChatOptions{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Stats; got.Kept != 1 || got.Truncated != 0 || got.Dropped != 2 || d.Examples[0].Source != "a:1" {
		t.Errorf("drop: %+v", got)
	}
	_, err = Tokenize(convs[1:], tok, tokenizer.ChatOptions{}, cfg)
	if !errors.Is(err, ErrData) {
		t.Errorf("all dropped: got %v", err)
	}
}

// seen returns how often each example (by its first token) appears in batches.
func exampleCounts(batches []*Batch) map[string]int {
	out := map[string]int{}
	for _, b := range batches {
		for r := range b.Rows {
			row := b.Tokens[r*b.Len : (r+1)*b.Len]
			seg := b.Segments[r*b.Len : (r+1)*b.Len]
			start := 0
			for i := 1; i <= len(row); i++ {
				if i == len(row) || seg[i] != seg[start] {
					if seg[start] != 0 {
						out[fmt.Sprint(row[start:i])]++
					}
					start = i
				}
			}
		}
	}
	return out
}

func TestEpochOrderIsSeededAndComplete(t *testing.T) {
	d := randomDataset(5, 50, 40)
	for _, packing := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.MaxLen, cfg.MicroBatch, cfg.Packing = 40, 3, packing
		e0, again, e1 := d.EpochBatches(cfg, 0), d.EpochBatches(cfg, 0), d.EpochBatches(cfg, 1)
		if fmt.Sprint(e0[0].Tokens) != fmt.Sprint(again[0].Tokens) {
			t.Errorf("packing=%v: same seed and epoch, different order", packing)
		}
		if fmt.Sprint(e0[0].Tokens) == fmt.Sprint(e1[0].Tokens) {
			t.Errorf("packing=%v: epochs 0 and 1 start alike", packing)
		}
		cfg.Seed++
		if fmt.Sprint(e0[0].Tokens) == fmt.Sprint(d.EpochBatches(cfg, 0)[0].Tokens) {
			t.Errorf("packing=%v: another seed, same order", packing)
		}
		want := map[string]int{}
		for _, e := range d.Examples {
			want[fmt.Sprint(e.IDs)]++
		}
		for _, ep := range [][]*Batch{e0, e1} {
			if got := exampleCounts(ep); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("packing=%v: an epoch does not hold every example once", packing)
			}
			shapes := map[int]bool{}
			for _, b := range ep {
				shapes[b.Len] = true
			}
			if len(shapes) > 3 {
				t.Errorf("packing=%v: %d row lengths, want few (buckets)", packing, len(shapes))
			}
		}
	}
}

// TestPackingNeverCrossesExamples packs examples into rows and checks that
// positions restart and no loss target is the next example's token (the
// attention side: TestPackedLossEqualsUnpacked).
func TestPackingNeverCrossesExamples(t *testing.T) {
	d := &Dataset{Examples: []Example{exampleOfLen(5, true), exampleOfLen(3, true), exampleOfLen(6, true), exampleOfLen(7, true)}}
	cfg := DefaultConfig()
	cfg.MaxLen, cfg.MicroBatch, cfg.Packing = 16, 2, true
	bs := d.EpochBatches(cfg, 0)
	multi := false
	for _, b := range bs {
		for r := range b.Rows {
			for i := range b.Len {
				k := r*b.Len + i
				if b.Segments[k] == 0 {
					continue
				}
				if i > 0 && b.Segments[k] != b.Segments[k-1] {
					multi = true
					if b.Positions[k] != 0 {
						t.Errorf("row %d col %d: new example at position %d", r, i, b.Positions[k])
					}
					if b.Weights[k-1] != 0 {
						t.Errorf("row %d col %d: loss on a target across examples", r, i-1)
					}
				}
			}
		}
	}
	if !multi {
		t.Fatal("no row holds two examples; the test packs nothing")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	if d.LoRA.Rank != 16 || d.LoRA.Alpha != 32 || d.LoRA.Dropout != 0.05 || d.Epochs != 3 || d.WarmupRatio != 0.03 ||
		d.MicroBatch*d.Accumulation != 8 || d.ClipNorm != 0.3 || d.WeightDecay != 0.1 || d.LoRA.Scale() != 2 {
		t.Errorf("defaults are not the paper's: %+v", d)
	}
	for field, mut := range map[string]func(*Config){
		"sft.max_len":          func(c *Config) { c.MaxLen = 1 },
		"sft.overlong":         func(c *Config) { c.Overlong = "cut" },
		"sft.micro_batch":      func(c *Config) { c.MicroBatch = 0 },
		"sft.accumulation":     func(c *Config) { c.Accumulation = 0 },
		"sft.epochs":           func(c *Config) { c.Epochs = 0 },
		"sft.lr":               func(c *Config) { c.LR = 0 },
		"sft.warmup_ratio":     func(c *Config) { c.WarmupRatio = 1 },
		"sft.weight_decay":     func(c *Config) { c.WeightDecay = -1 },
		"sft.beta2":            func(c *Config) { c.Beta2 = 1 },
		"sft.epsilon":          func(c *Config) { c.Epsilon = 0 },
		"sft.clip_norm":        func(c *Config) { c.ClipNorm = -1 },
		"sft.lora.rank":        func(c *Config) { c.LoRA.Rank = -1 },
		"sft.lora.alpha":       func(c *Config) { c.LoRA.Alpha = 0 },
		"sft.lora.dropout":     func(c *Config) { c.LoRA.Dropout = 1 },
		"sft.lora.targets":     func(c *Config) { c.LoRA.Targets = nil },
		"sft.lora.targets[1]":  func(c *Config) { c.LoRA.Targets = []string{"q_proj", " "} },
		"sft.precision":        func(c *Config) { c.Precision = "fp8" },
		"sft.keep_checkpoints": func(c *Config) { c.KeepCheckpoints = 0 },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) || !strings.HasPrefix(err.Error(), field+":") {
			t.Errorf("%s: got %v", field, err)
		}
	}
}

func TestScheduleCountsOptimizerSteps(t *testing.T) {
	// 100 optimizer steps, 3% warm-up = 3 steps: 0, 1/3, 2/3 of peak, then cosine.
	w := WarmupSteps(0.03, 100)
	if w != 3 {
		t.Fatalf("warm-up %d", w)
	}
	for step, want := range map[int]float64{0: 0, 1: 1.0 / 3, 2: 2.0 / 3, 3: 1, 100: 0} {
		if got := LearningRate(1, step, w, 100); fmt.Sprintf("%.9f", got) != fmt.Sprintf("%.9f", want) {
			t.Errorf("step %d: lr %g, want %g", step, got, want)
		}
	}
	if mid := LearningRate(1, 3+97/2, w, 100); mid < 0.49 || mid > 0.51 {
		t.Errorf("half-way through the decay: %g", mid)
	}
	// Accumulation does not stretch the schedule: steps per epoch are
	// micro-batches / accumulation.
	cfg := DefaultConfig()
	cfg.Accumulation = 4
	if StepsPerEpoch(10, cfg) != 3 {
		t.Errorf("10 micro-batches at accumulation 4: %d steps", StepsPerEpoch(10, cfg))
	}
}
