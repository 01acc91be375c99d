package sft

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"

	"github.com/statjob/statjob/train/tokenizer"
)

// Conversation is one training example as read from JSONL.
type Conversation struct {
	Messages []tokenizer.Message
	Source   string // "file:line", for errors
}

// ErrData is wrapped by every error about the content of a training file.
var ErrData = errors.New("bad training data")

// knownRoles are the roles a conversation may use.
var knownRoles = map[string]bool{"system": true, "user": true, "assistant": true}

// ReadJSONL reads conversations from r, one JSON object per line, named name
// in errors. A line is either {"messages": [{"role", "content"}, ...]} with at
// least one non-empty assistant turn, or {"prompt": ..., "completion": ...}
// (a user turn and an assistant turn). Blank lines are skipped.
func ReadJSONL(r io.Reader, name string) ([]Conversation, error) {
	var out []Conversation
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		src := fmt.Sprintf("%s:%d", name, line)
		msgs, err := parseLine(text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %v", src, ErrData, err)
		}
		out = append(out, Conversation{Messages: msgs, Source: src})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return out, nil
}

func parseLine(text []byte) ([]tokenizer.Message, error) {
	var rec struct {
		Messages   *[]map[string]*string `json:"messages"`
		Prompt     *string               `json:"prompt"`
		Completion *string               `json:"completion"`
	}
	if err := json.Unmarshal(text, &rec); err != nil {
		return nil, fmt.Errorf("not a JSON object of messages or prompt/completion: %v", err)
	}
	if rec.Messages == nil {
		switch {
		case rec.Prompt == nil && rec.Completion == nil:
			return nil, errors.New(`missing field "messages" (or "prompt" and "completion")`)
		case rec.Prompt == nil:
			return nil, errors.New(`missing field "prompt"`)
		case rec.Completion == nil:
			return nil, errors.New(`missing field "completion"`)
		case strings.TrimSpace(*rec.Completion) == "":
			return nil, errors.New(`empty "completion"`)
		}
		return []tokenizer.Message{{Role: "user", Content: *rec.Prompt}, {Role: "assistant", Content: *rec.Completion}}, nil
	}
	if len(*rec.Messages) == 0 {
		return nil, errors.New(`empty "messages"`)
	}
	msgs := make([]tokenizer.Message, len(*rec.Messages))
	assistant := false
	for i, m := range *rec.Messages {
		role, content := m["role"], m["content"]
		switch {
		case role == nil:
			return nil, fmt.Errorf(`messages[%d]: missing field "role"`, i)
		case content == nil:
			return nil, fmt.Errorf(`messages[%d]: missing field "content"`, i)
		case !knownRoles[*role]:
			return nil, fmt.Errorf(`messages[%d]: unknown role %q (want system, user or assistant)`, i, *role)
		case *role == "assistant" && strings.TrimSpace(*content) == "":
			return nil, fmt.Errorf(`messages[%d]: empty assistant "content"`, i)
		}
		assistant = assistant || *role == "assistant"
		msgs[i] = tokenizer.Message{Role: *role, Content: *content}
	}
	if !assistant {
		return nil, errors.New(`"messages" has no assistant turn to train on`)
	}
	return msgs, nil
}

// Example is one tokenized conversation: Loss[i] tells whether token i is a
// target of the loss (an assistant token, end-of-turn included).
type Example struct {
	IDs    []int32
	Loss   []bool
	Source string
}

// DataStats counts what tokenization did to the examples.
type DataStats struct {
	Read      int `json:"read"`      // conversations read
	Kept      int `json:"kept"`      // examples trained on
	Truncated int `json:"truncated"` // longer than MaxLen, cut to MaxLen
	Dropped   int `json:"dropped"`   // longer than MaxLen and dropped (or left without assistant tokens)
	Tokens    int `json:"tokens"`    // tokens of the kept examples
	Targets   int `json:"targets"`   // loss tokens of the kept examples
}

// Dataset is a tokenized training set.
type Dataset struct {
	Examples []Example
	Stats    DataStats
}

// Tokenize renders every conversation through tok's chat template (the
// loss covers the assistant's tokens, end-of-turn included) and applies
// cfg's MaxLen and Overlong policy.
func Tokenize(convs []Conversation, tok *tokenizer.Tokenizer, opts tokenizer.ChatOptions, cfg Config) (*Dataset, error) {
	d := &Dataset{Stats: DataStats{Read: len(convs)}}
	for _, c := range convs {
		chat, err := tok.ApplyChatTemplate(c.Messages, opts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Source, err)
		}
		ids, loss := make([]int32, len(chat.IDs)), chat.Mask
		for i, id := range chat.IDs {
			ids[i] = int32(id)
		}
		if len(ids) > cfg.MaxLen {
			if cfg.Overlong == OverlongDrop {
				d.Stats.Dropped++
				continue
			}
			ids, loss = ids[:cfg.MaxLen], loss[:cfg.MaxLen]
			d.Stats.Truncated++
		}
		targets := 0
		for _, l := range loss[1:] { // token 0 is never predicted
			if l {
				targets++
			}
		}
		if targets == 0 {
			d.Stats.Dropped++
			continue
		}
		d.Examples = append(d.Examples, Example{IDs: ids, Loss: loss, Source: c.Source})
		d.Stats.Kept++
		d.Stats.Tokens += len(ids)
		d.Stats.Targets += targets
	}
	if len(d.Examples) == 0 {
		return nil, fmt.Errorf("%w: no example left to train on (%d read, %d dropped)", ErrData, d.Stats.Read, d.Stats.Dropped)
	}
	return d, nil
}

// CheckIDs fails, naming the example, when a token id is outside a model
// vocabulary of vocab ids: a tokenizer may know more tokens than the model
// embeds (Gemma 3 1B's <image_soft_token>), and the text spells one out.
func (d *Dataset) CheckIDs(vocab int) error {
	for _, e := range d.Examples {
		for _, id := range e.IDs {
			if int(id) >= vocab {
				return fmt.Errorf("%w: %s: token %d is outside the model's vocabulary of %d (the text spells out a token the model has no embedding for)", ErrData, e.Source, id, vocab)
			}
		}
	}
	return nil
}

// Batch is one micro-batch: Rows × Len tokens, row-major. Each row holds one
// example (length buckets) or several (packing); Segments numbers the
// examples of a row from 1 (0 is padding) and Positions restart at 0 for each
// one, so attention never crosses examples (see AttentionMask). Targets[i] is
// the token after Tokens[i] in the same example; Weights[i] is 1 where that
// target is an assistant token, else 0.
type Batch struct {
	Rows, Len int
	Tokens    []int32
	Targets   []int32
	Positions []int32
	Segments  []int32
	Weights   []float32
	Examples  int // examples in the batch
	// Aux are optional extra per-token inputs of the Forward (BatchNodes.Aux),
	// Rows × Len each.
	Aux [][]float32
}

// TargetCount is the number of loss tokens.
func (b *Batch) TargetCount() int {
	n := 0
	for _, w := range b.Weights {
		if w != 0 {
			n++
		}
	}
	return n
}

func newBatch(rows, length int) *Batch {
	n := rows * length
	return &Batch{Rows: rows, Len: length, Tokens: make([]int32, n), Targets: make([]int32, n),
		Positions: make([]int32, n), Segments: make([]int32, n), Weights: make([]float32, n)}
}

// place writes example e into row r at column col as segment seg.
func (b *Batch) place(e *Example, r, col int, seg int32) {
	base := r*b.Len + col
	for i, id := range e.IDs {
		b.Tokens[base+i] = id
		b.Positions[base+i] = int32(i)
		b.Segments[base+i] = seg
		if i+1 < len(e.IDs) {
			b.Targets[base+i] = e.IDs[i+1]
			if e.Loss[i+1] {
				b.Weights[base+i] = 1
			}
		}
	}
	b.Examples++
}

// bucketLen is the padded row length for n tokens: the next power of two
// from 16, capped at maxLen, so that few shapes (compilations) occur.
func bucketLen(n, maxLen int) int {
	l := 16
	for l < n {
		l *= 2
	}
	return min(l, maxLen)
}

// batchPlan is one micro-batch before its arrays are filled: the example
// indices of each row and the row length.
type batchPlan struct {
	len  int
	rows [][]int
}

// EpochBatches lays out one epoch's micro-batches. The order is a function of
// (cfg.Seed, epoch) alone, so a resumed run sees the same batches.
func (d *Dataset) EpochBatches(cfg Config, epoch int) []*Batch {
	plan := d.epochPlan(cfg, epoch)
	out := make([]*Batch, len(plan))
	for i := range plan {
		out[i] = d.materialize(cfg, plan[i])
	}
	return out
}

func (d *Dataset) materialize(cfg Config, p batchPlan) *Batch {
	b := newBatch(cfg.MicroBatch, p.len)
	for r, row := range p.rows {
		col := 0
		for s, i := range row {
			b.place(&d.Examples[i], r, col, int32(s+1))
			col += len(d.Examples[i].IDs)
		}
	}
	return b
}

func (d *Dataset) epochPlan(cfg Config, epoch int) []batchPlan {
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(epoch)))
	perm := rng.Perm(len(d.Examples))
	var plan []batchPlan
	if cfg.Packing {
		var rows [][]int // example indices per row, first fit in shuffled order
		used := 0
		for _, i := range perm {
			n := len(d.Examples[i].IDs)
			if len(rows) == 0 || used+n > cfg.MaxLen {
				rows = append(rows, nil)
				used = 0
			}
			rows[len(rows)-1] = append(rows[len(rows)-1], i)
			used += n
		}
		for start := 0; start < len(rows); start += cfg.MicroBatch {
			group := rows[start:min(start+cfg.MicroBatch, len(rows))]
			longest := 0
			for _, row := range group {
				n := 0
				for _, i := range row {
					n += len(d.Examples[i].IDs)
				}
				longest = max(longest, n)
			}
			plan = append(plan, batchPlan{len: bucketLen(longest, cfg.MaxLen), rows: group})
		}
		return plan
	}
	buckets := map[int][]int{}
	var lens []int // bucket lengths in order of first appearance (deterministic)
	for _, i := range perm {
		l := bucketLen(len(d.Examples[i].IDs), cfg.MaxLen)
		if _, ok := buckets[l]; !ok {
			lens = append(lens, l)
		}
		buckets[l] = append(buckets[l], i)
	}
	for _, l := range lens {
		idx := buckets[l]
		for start := 0; start < len(idx); start += cfg.MicroBatch {
			p := batchPlan{len: l}
			for _, i := range idx[start:min(start+cfg.MicroBatch, len(idx))] {
				p.rows = append(p.rows, []int{i})
			}
			plan = append(plan, p)
		}
	}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	return plan
}

// StepsPerEpoch is the number of optimizer steps one epoch takes: its
// micro-batches grouped by cfg.Accumulation, the last group possibly smaller.
func StepsPerEpoch(numBatches int, cfg Config) int {
	return (numBatches + cfg.Accumulation - 1) / cfg.Accumulation
}
