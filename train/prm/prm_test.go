package prm

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"

	"github.com/statjob/statjob/internal/torchref"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/prm/prmtest"
)

func testBackend(t testing.TB) backends.Backend {
	t.Helper()
	b, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Finalize)
	return b
}

// open writes a tiny PRM of config and opens it under cfg (Model set here).
func open(t testing.TB, config string, cfg Config) *PRM {
	t.Helper()
	cfg.Model = prmtest.Write(t, t.TempDir(), config, 3)
	p, err := Open(context.Background(), testBackend(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// testItems are responses of one to five steps, with multi-line steps,
// runs of blank lines and Windows line ends.
var testItems = []Item{
	{Question: "What is $2+3$?", Response: "We add the numbers.\n\n$2+3=5$.\n\nThe answer is $\\boxed{5}$."},
	{Question: "Solve $x^2=9$ for $x>0$.", Response: "Take square roots: $x=\\pm 3$.\n\n\n\nSince $x>0$, $x=3$.\r\n\r\nSo the answer is\n$\\boxed{3}$"},
	{Question: "Compute $7\\cdot 8$.", Response: "$\\boxed{56}$"},
	{Question: "How many primes are below 20?", Response: "The primes below 20 are 2, 3, 5, 7.\n\nThen 11, 13, 17, 19.\n\nThat is 4 + 4 numbers.\n  \nCounting again: 2, 3, 5, 7, 11, 13, 17, 19.\n\nThe answer is $\\boxed{8}$."},
}

// TestScoresMatchTorch: the step scores of one batched forward pass per
// bucket equal, within 1e-4, PyTorch's scores computed as RLHFlow's loop
// does (the conversation cut after each step, re-run, logits at position
// -3), on the same tiny checkpoint and token ids — with the model's own
// lm_head and with tied embeddings (the head rows from embed_tokens).
func TestScoresMatchTorch(t *testing.T) {
	for _, tc := range []struct{ name, config string }{{"llama", prmtest.Llama}, {"tied", prmtest.Tied}} {
		t.Run(tc.name, func(t *testing.T) {
			py := torchref.Python(t)
			cfg := DefaultConfig()
			cfg.BatchTokens = 512
			p := open(t, tc.config, cfg)
			got, err := p.Score(context.Background(), testItems)
			if err != nil {
				t.Fatal(err)
			}
			var cuts [][][]int
			for i, it := range testItems {
				steps := Steps(it.Response)
				full, at, err := p.Conversation(it.Question, steps)
				if err != nil {
					t.Fatal(err)
				}
				var mine [][]int
				for k := range steps {
					ids, _, err := p.Conversation(it.Question, steps[:k+1])
					if err != nil {
						t.Fatal(err)
					}
					// One pass scores every step only because each cut
					// conversation is a prefix of the whole one.
					if !slices.Equal(ids, full[:len(ids)]) || at[k] != len(ids)-3 {
						t.Fatalf("item %d step %d: the cut conversation is not a prefix ending 3 tokens after the scored position %d", i, k, at[k])
					}
					mine = append(mine, ids)
				}
				cuts = append(cuts, mine)
				if len(got[i].Steps) != len(steps) || !got[i].Scored {
					t.Fatalf("item %d: %d scores for %d steps (scored %v)", i, len(got[i].Steps), len(steps), got[i].Scored)
				}
			}
			good, bad := p.TokenIDs()
			ref := runReference(t, py, p.cfg.Model, good, bad, cuts)
			var maxDiff, lo, hi float64 = 0, 1, 0
			for i := range testItems {
				for k, want := range ref[i] {
					maxDiff = max(maxDiff, math.Abs(got[i].Steps[k]-want))
					lo, hi = min(lo, want), max(hi, want)
				}
			}
			t.Logf("%s: max |P(+) difference| = %.2e over scores in [%.3f, %.3f]", tc.name, maxDiff, lo, hi)
			if maxDiff > 1e-4 {
				t.Errorf("step scores differ from PyTorch by %.2e > 1e-4", maxDiff)
			}
			if hi-lo < 0.2 {
				t.Errorf("scores span only [%.3f, %.3f]: the comparison says little", lo, hi)
			}
		})
	}
}

func runReference(t *testing.T, py, dir string, good, bad int, cuts [][][]int) [][]float64 {
	t.Helper()
	req, _ := json.Marshal(map[string]any{"good": good, "bad": bad, "conversations": cuts})
	tmp := t.TempDir()
	reqPath, outPath := filepath.Join(tmp, "request.json"), filepath.Join(tmp, "reference.json")
	if err := os.WriteFile(reqPath, req, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(py, "testdata/prm_ref.py", dir, reqPath, outPath).CombinedOutput(); err != nil {
		t.Fatalf("prm_ref.py: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	var ref struct{ Scores [][]float64 }
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	return ref.Scores
}

// TestConversationFormat: the conversation is RLHFlow's — the question and
// the first step in one user turn, each step answered by "+" — in the
// PRM's own chat template, and the scored position is the one before "+".
func TestConversationFormat(t *testing.T) {
	p := open(t, prmtest.Llama, DefaultConfig())
	ids, at, err := p.Conversation("What is 1+1?", []string{"1+1 = 2.", "The answer is 2."})
	if err != nil {
		t.Fatal(err)
	}
	want := "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 1+1? 1+1 = 2.<|eot_id|>" +
		"<|start_header_id|>assistant<|end_header_id|>\n\n+<|eot_id|>" +
		"<|start_header_id|>user<|end_header_id|>\n\nThe answer is 2.<|eot_id|>" +
		"<|start_header_id|>assistant<|end_header_id|>\n\n+<|eot_id|>"
	if got := p.tok.Decode(ids); got != want {
		t.Fatalf("rendered\n%q\nwant\n%q", got, want)
	}
	good, _ := p.TokenIDs()
	if len(at) != 2 || ids[at[0]+1] != good || ids[at[1]+1] != good || at[1] != len(ids)-3 {
		t.Fatalf("scored positions %v in %d tokens", at, len(ids))
	}
	if p.tok.Decode(ids[at[0]:at[0]+1]) != "\n\n" {
		t.Errorf("position %d is %q, want the header's \"\\n\\n\"", at[0], p.tok.Decode(ids[at[0]:at[0]+1]))
	}
}

// TestBatchingDoesNotChangeScores: one conversation per pass and many per
// pass give the same scores.
func TestBatchingDoesNotChangeScores(t *testing.T) {
	dir := prmtest.Write(t, t.TempDir(), prmtest.Llama, 5)
	b := testBackend(t)
	score := func(batchTokens int) []Score {
		cfg := DefaultConfig()
		cfg.Model, cfg.BatchTokens = dir, batchTokens
		p, err := Open(context.Background(), b, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		s, err := p.Score(context.Background(), testItems)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	one, many := score(1), score(4096)
	for i := range testItems {
		for k := range one[i].Steps {
			if d := math.Abs(one[i].Steps[k] - many[i].Steps[k]); d > 1e-5 {
				t.Errorf("item %d step %d: %v alone, %v batched", i, k, one[i].Steps[k], many[i].Steps[k])
			}
		}
		if one[i].Right != many[i].Right || one[i].Why != many[i].Why {
			t.Errorf("item %d: verdict %v %q alone, %v %q batched", i, one[i].Right, one[i].Why, many[i].Right, many[i].Why)
		}
	}
}

// TestNotScored: an empty response and one whose conversation exceeds
// max_length are not scored and count as wrong; the others are scored.
func TestNotScored(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxLength = 60
	p := open(t, prmtest.Llama, cfg)
	long := Item{Question: "Count.", Response: strings.Repeat("one two three four five six seven eight nine ten\n\n", 6)}
	got, err := p.Score(context.Background(), []Item{testItems[2], {Question: "Q", Response: " \n\n \r\n"}, long})
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].Scored || len(got[0].Steps) != 1 {
		t.Errorf("short response: %+v", got[0])
	}
	if got[1].Scored || got[1].Right || got[1].Why != "not scored: no steps" {
		t.Errorf("empty response: %+v", got[1])
	}
	if got[2].Scored || got[2].Right || len(got[2].Steps) != 0 || !strings.HasPrefix(got[2].Why, "not scored: ") || !strings.HasSuffix(got[2].Why, " tokens > max_length 60") {
		t.Errorf("long response: %+v", got[2])
	}
}

// TestTokenErrors: good and bad tokens the vocabulary lacks, and a good
// token the chat template does not render as the answer, are errors that
// say which.
func TestTokenErrors(t *testing.T) {
	dir := prmtest.Write(t, t.TempDir(), prmtest.Llama, 3)
	b := testBackend(t)
	for _, tc := range []struct {
		good, bad string
		want      string
		is        error
	}{
		{"<good>", "-", `good_token "<good>": not a token of the PRM's vocabulary`, ErrToken},
		{"+", "<bad>", `bad_token "<bad>": not a token of the PRM's vocabulary`, ErrToken},
	} {
		cfg := DefaultConfig()
		cfg.Model, cfg.GoodToken, cfg.BadToken = dir, tc.good, tc.bad
		_, err := Open(context.Background(), b, cfg)
		if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("good %q bad %q: %v, want %q", tc.good, tc.bad, err, tc.want)
		}
	}
	// " +" is a token, but the template trims the assistant's content, so
	// the turn starts with "+".
	cfg := DefaultConfig()
	cfg.Model, cfg.GoodToken = dir, " +"
	p, err := Open(context.Background(), b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = p.Score(context.Background(), testItems[:1])
	if !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), `assistant turn 1 starts with "+", not the good token " +"`) {
		t.Errorf("good token \" +\": %v", err)
	}
}

// TestHeldInBFloat16: a bfloat16 PRM checkpoint held in bfloat16 (dtype)
// gives exactly the scores of the same checkpoint held in float32.
func TestHeldInBFloat16(t *testing.T) {
	ctx := context.Background()
	dir := prmtest.Write(t, t.TempDir(), prmtest.Llama, 5)
	st, err := storage.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := model.Load(ctx, st, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(ctx, st, "", model.SaveOptions{DType: "BF16"}); err != nil {
		t.Fatal(err)
	}
	b := testBackend(t)
	var scores [2][]Score
	for i, dt := range []string{"", "bfloat16"} {
		cfg := DefaultConfig()
		cfg.Model, cfg.DType = dir, dt
		p, err := Open(ctx, b, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if scores[i], err = p.Score(ctx, testItems); err != nil {
			t.Fatal(err)
		}
		p.Close()
	}
	for i := range testItems {
		if !slices.Equal(scores[0][i].Steps, scores[1][i].Steps) {
			t.Errorf("item %d: steps %v held in float32, %v in bfloat16", i, scores[0][i].Steps, scores[1][i].Steps)
		}
	}
	cfg := DefaultConfig()
	cfg.Model, cfg.DType = dir, "float16"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "dtype") {
		t.Errorf("dtype float16: %v", err)
	}
}
