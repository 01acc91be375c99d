// Package prm scores a student's step-by-step answers with a process reward
// model (PRM) in RLHFlow's format (the paper's PRM is
// RLHFlow/Llama3.1-8B-PRM-Mistral-Data) and judges each answer right or
// wrong.
//
// The conversation. A response is split into steps on blank lines (Steps).
// Every step is a user turn — the first one is the question, a space, and
// the first step — and the assistant answers each with the good token "+":
//
//	user: "<question> <step 1>"   assistant: "+"
//	user: "<step 2>"              assistant: "+"
//	…
//
// rendered with the PRM's own chat template (tokenizer_config.json) and
// encoded with its tokenizer. One forward pass over the whole conversation
// scores every step: step k's score is P(good) / (P(good) + P(bad)), the
// softmax over the two tokens' logits at the position that predicts the
// assistant's k-th answer (the last token of the k-th assistant header). As
// attention is causal, this is the score RLHFlow's loop gets by re-running
// the conversation cut after each step.
//
// The verdict (Config.Judge). With step scores s₁…sₙ a response is judged
// wrong when
//
//	sₙ < τ1  or  mean(s₁…sₙ) < τ1  or  sᵢ < τ2 for some i ≥ 2
//
// (τ1 = 0.85 on the last step and on the mean, τ2 = 0.7 on every later
// step, i.e. every step after the first). A response with no steps, or
// whose conversation is longer than MaxLength tokens, is not scored and
// counts as wrong.
//
// Cost. Conversations are sorted by length and padded to a few bucket
// lengths (32·2ᵏ and 48·2ᵏ tokens), with up to BatchTokens padded tokens
// per pass, so only a handful of graphs is compiled. The final hidden
// states (model.Hidden) are multiplied by only the two rows of the head
// (lm_head, or embed_tokens when tied) for the good and bad tokens, so no
// vocabulary-sized logits are built.
//
//	p, err := prm.Open(ctx, backend, cfg) // cfg.Model: a path, gs:// or s3://
//	scores, err := p.Score(ctx, []prm.Item{{Question: q, Response: r}})
//	scores[0].Steps, scores[0].Right, scores[0].Why
package prm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // graph code reads like the math
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/tokenizer"
)

// Item is one response to score.
type Item struct {
	Question string
	Response string
}

// Score is the PRM's reading of one response.
type Score struct {
	// Steps are the step scores P(good) / (P(good) + P(bad)), in order;
	// empty when the response was not scored.
	Steps []float64 `json:"steps"`
	// Right is the verdict of Config.Judge (false when not scored).
	Right bool `json:"right"`
	// Scored is false for a response with no steps or one longer than
	// MaxLength.
	Scored bool `json:"scored"`
	// Why says why a response is judged wrong or was not scored; "" when
	// right.
	Why string `json:"why,omitempty"`
}

// ErrToken: the good or bad token is not in the PRM's vocabulary.
var ErrToken = errors.New("not a token of the PRM's vocabulary")

// ErrTemplate: the chat template does not render the conversation as the
// PRM needs (each assistant turn starting with the good token).
var ErrTemplate = errors.New("chat template does not fit the PRM conversation")

// PRM is a loaded process reward model. Score is not safe for concurrent
// use.
type PRM struct {
	cfg       Config
	m         *model.Model
	tok       *tokenizer.Tokenizer
	good, bad int
	exec      *mlctx.Exec
}

// tokenizerFiles are read beside the weights.
var tokenizerFiles = []string{"tokenizer.json", "tokenizer_config.json"}

// Open loads the PRM in cfg.Model (a Hugging Face directory on any store)
// to compute on backend b.
func Open(ctx context.Context, b backends.Backend, cfg Config) (*PRM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	st, err := storage.Open(ctx, cfg.Model)
	if err != nil {
		return nil, fmt.Errorf("prm model: %w", err)
	}
	defer st.Close()
	where := st.URI("")
	files := make([][]byte, len(tokenizerFiles))
	for i, f := range tokenizerFiles {
		rc, err := st.Get(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("prm %s: %s: %w", where, f, err)
		}
		files[i], err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("prm %s: read %s: %w", where, f, err)
		}
	}
	tok, err := tokenizer.Load(bytes.NewReader(files[0]), bytes.NewReader(files[1]))
	if err != nil {
		return nil, fmt.Errorf("prm %s: %w", where, err)
	}
	held, _ := model.HeldDType(cfg.DType) // Validate checked it
	m, err := model.LoadAs(ctx, st, "", held)
	if err != nil {
		return nil, fmt.Errorf("prm %s: %w", where, err)
	}
	p, err := New(b, m, tok, cfg)
	if err != nil {
		return nil, fmt.Errorf("prm %s: %w", where, err)
	}
	return p, nil
}

// New prepares scoring with model m and tokenizer tok on backend b.
func New(b backends.Backend, m *model.Model, tok *tokenizer.Tokenizer, cfg Config) (*PRM, error) {
	p := &PRM{cfg: cfg, m: m, tok: tok}
	for _, t := range []struct {
		field, text string
		id          *int
	}{{"good_token", cfg.GoodToken, &p.good}, {"bad_token", cfg.BadToken, &p.bad}} {
		id, ok := tok.TokenID(t.text)
		if !ok {
			return nil, fmt.Errorf("%s %q: %w (tokenizer.json)", t.field, t.text, ErrToken)
		}
		if id >= m.Config.VocabSize {
			return nil, fmt.Errorf("%s %q: id %d is outside the model's vocab_size %d (config.json)", t.field, t.text, id, m.Config.VocabSize)
		}
		*t.id = id
	}
	if tok.ChatTemplate() == "" {
		return nil, fmt.Errorf("tokenizer_config.json: %w", tokenizer.ErrNoChatTemplate)
	}
	var err error
	p.exec, err = mlctx.NewExec(b, m.Ctx, p.graph)
	if err != nil {
		return nil, err
	}
	p.exec.SetMaxCache(-1)
	return p, nil
}

// Close frees the compiled graphs.
func (p *PRM) Close() { p.exec.Finalize() }

// TokenIDs are the ids of the good and bad tokens.
func (p *PRM) TokenIDs() (good, bad int) { return p.good, p.bad }

// graph returns the logits of the good and bad tokens [B, T, 2] at every
// position of tokens [B, T] (int32, right-padded; lengths [B] int32).
func (p *PRM) graph(ctx *mlctx.Context, tokens, lengths *Node) *Node {
	g := tokens.Graph()
	b, t := tokens.Shape().Dimensions[0], tokens.Shape().Dimensions[1]
	positions := Iota(g, shapes.Make(dtypes.Int32, b, t), 1)
	valid := LessThan(positions, InsertAxes(lengths, -1))
	hidden := model.Hidden(ctx, p.m.Config, tokens, positions, valid) // [B, T, D]
	head := "lm_head"
	if p.m.Config.TieWordEmbeddings {
		head = "model/embed_tokens"
	}
	w := ctx.GetVariableByScopeAndName("/"+head, "weight").ValueGraph(g)                                 // [V, D]
	rows := Concatenate([]*Node{SliceAxis(w, 0, AxisElem(p.good)), SliceAxis(w, 0, AxisElem(p.bad))}, 0) // [2, D]
	return model.ComputeDot(ctx, hidden, []int{2}, nil, rows, []int{1}, nil)
}

// conversation is one response rendered for scoring.
type conversation struct {
	item int
	ids  []int
	at   []int // positions whose logits score each step
}

// Conversation renders the PRM conversation of question and steps and
// returns its token ids and, per step, the position whose logits predict
// the assistant's answer to it.
func (p *PRM) Conversation(question string, steps []string) (ids, at []int, err error) {
	msgs := make([]tokenizer.Message, 0, 2*len(steps))
	for k, s := range steps {
		if k == 0 {
			s = question + " " + s
		}
		msgs = append(msgs, tokenizer.Message{Role: "user", Content: s}, tokenizer.Message{Role: "assistant", Content: p.cfg.GoodToken})
	}
	chat, err := p.tok.ApplyChatTemplate(msgs, tokenizer.ChatOptions{})
	if err != nil {
		return nil, nil, err
	}
	if len(chat.Assistant) != len(steps) {
		return nil, nil, fmt.Errorf("%w: %d assistant turns found for %d steps", ErrTemplate, len(chat.Assistant), len(steps))
	}
	for k, sp := range chat.Assistant {
		if sp.Start < 1 || sp.Start >= len(chat.IDs) || chat.IDs[sp.Start] != p.good {
			got := "nothing"
			if sp.Start < len(chat.IDs) {
				got = fmt.Sprintf("%q", p.tok.Decode(chat.IDs[sp.Start:sp.Start+1]))
			}
			return nil, nil, fmt.Errorf("%w: assistant turn %d starts with %s, not the good token %q", ErrTemplate, k+1, got, p.cfg.GoodToken)
		}
		at = append(at, sp.Start-1)
	}
	return chat.IDs, at, nil
}

// Score scores and judges every item, in order. A response with no steps
// or a conversation longer than MaxLength is not scored (judged wrong);
// anything else that fails (a chat template that does not fit, the
// backend) is an error.
func (p *PRM) Score(ctx context.Context, items []Item) ([]Score, error) {
	out := make([]Score, len(items))
	var convs []conversation
	for i, it := range items {
		steps := Steps(it.Response)
		if len(steps) == 0 {
			out[i] = Score{Why: "not scored: no steps"}
			continue
		}
		ids, at, err := p.Conversation(it.Question, steps)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		if len(ids) > p.cfg.MaxLength {
			out[i] = Score{Why: fmt.Sprintf("not scored: %d tokens > max_length %d", len(ids), p.cfg.MaxLength)}
			continue
		}
		convs = append(convs, conversation{item: i, ids: ids, at: at})
	}
	slices.SortStableFunc(convs, func(a, b conversation) int { return len(a.ids) - len(b.ids) })
	for start := 0; start < len(convs); {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t := bucket(len(convs[start].ids), p.cfg.MaxLength)
		rows := max(1, p.cfg.BatchTokens/t)
		end := start
		for end < len(convs) && end-start < rows && bucket(len(convs[end].ids), p.cfg.MaxLength) == t {
			end++
		}
		if err := p.scoreBatch(convs[start:end], t, rows, out); err != nil {
			return nil, err
		}
		start = end
	}
	for _, c := range convs {
		s := &out[c.item]
		s.Scored = true
		s.Right, s.Why = p.cfg.Judge(s.Steps)
	}
	return out, nil
}

// scoreBatch runs one forward pass over convs, padded to length t and to
// a power of two of rows (at most rows), and fills their step scores.
func (p *PRM) scoreBatch(convs []conversation, t, rows int, out []Score) error {
	b := 1
	for b < len(convs) {
		b *= 2
	}
	b = min(b, max(rows, len(convs)))
	tokens := make([]int32, b*t)
	lengths := make([]int32, b)
	for i := range b {
		ids := []int{0} // padding rows: one token, so no row is all masked
		if i < len(convs) {
			ids = convs[i].ids
		}
		for j, id := range ids {
			tokens[i*t+j] = int32(id)
		}
		lengths[i] = int32(len(ids))
	}
	res, err := p.exec.Exec(tensors.FromFlatDataAndDimensions(tokens, b, t), tensors.FromFlatDataAndDimensions(lengths, b))
	if err != nil {
		return fmt.Errorf("prm forward [%d×%d]: %w", b, t, err)
	}
	logits, err := tensors.CopyFlatData[float32](res[0])
	for _, r := range res {
		r.FinalizeAll()
	}
	if err != nil {
		return err
	}
	for i, c := range convs {
		steps := make([]float64, len(c.at))
		for k, pos := range c.at {
			good, bad := float64(logits[(i*t+pos)*2]), float64(logits[(i*t+pos)*2+1])
			steps[k] = 1 / (1 + math.Exp(bad-good)) // softmax over the two tokens
		}
		out[c.item].Steps = steps
	}
	return nil
}

// bucket is the padded length of a conversation of n tokens: the smallest
// of 32·2ᵏ and 48·2ᵏ that holds it, at most limit.
func bucket(n, limit int) int {
	b := 32
	for b < n {
		if b&(b-1) == 0 { // a power of two: 32 → 48, 64 → 96, …
			b += b / 2
		} else { // 48 → 64, 96 → 128, …
			b += b / 3
		}
	}
	return min(b, max(limit, n))
}
