package stages

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/sft"
	"github.com/statjob/statjob/train/tokenizer"
)

// generateVersion is bumped when the responses generation writes change for
// the same settings and student (prompt, seeding, decoding, grading rules).
const generateVersion = "generate v1"

// GenerationConfig is how a stage samples the student: Samples answers per
// question, sample 0 (the pass@1 sample) at Pass1Temperature, samples 1..k-1
// at Sampling.Temperature. Probe and evaluate share it.
type GenerationConfig struct {
	// Samples is k, the answers drawn per question.
	Samples int `yaml:"samples"`
	// Pass1Temperature is sample 0's temperature; 0 is greedy.
	Pass1Temperature float64 `yaml:"pass1_temperature"`
	// Sampling draws samples 1..k-1 (temperature, top_k, top_p) and bounds
	// every sample (max_new_tokens). Its stop_tokens are added to the
	// tokenizer's EOS and end-of-turn tokens, which always stop.
	Sampling model.Sampling `yaml:"sampling"`
	// Seed, with the question's ID and the sample's index, seeds each
	// sample: a sample does not depend on batching, sharding or resuming.
	Seed uint64 `yaml:"seed"`
	// Limit keeps the first Limit questions (per benchmark for evaluate),
	// for small runs; 0 keeps all.
	Limit int `yaml:"limit"`
	// Batch is the number of sequences decoded together, rounded up to a
	// power of two; it changes speed and memory, never the samples (so it
	// is not in the fingerprint).
	Batch int `yaml:"batch"`
	// PartQuestions is how many questions are answered between the stage's
	// checkpoints (its parts/ files): a restarted task answers again at
	// most one part. Larger parts keep the continuous batch fuller (it
	// drains at the end of each part); never changes the samples.
	PartQuestions int `yaml:"part_questions" json:",omitempty"`
	// Precision is the dtype of the matrix products: "f32" ("", the
	// default) or "bf16", as GPUs run them fastest; with bf16 the answers
	// differ slightly from f32's. Left out of the fingerprint when empty,
	// so specs without it keep their stages.
	Precision string `yaml:"precision,omitempty" json:",omitempty"`
}

// defaultGeneration is k samples at temperature 1.0, top_p 1, sample 0
// greedy, 2,048 new tokens at most.
func defaultGeneration(k int) GenerationConfig {
	return GenerationConfig{
		Samples:  k,
		Sampling: model.Sampling{Temperature: 1.0, TopP: 1.0, MaxNewTokens: 2048},
		Batch:    32,

		PartQuestions: 256,
	}
}

// Validate names the first bad field.
func (c *GenerationConfig) Validate() error {
	switch {
	case c.Samples < 1:
		return fmt.Errorf("samples: %d, want at least 1", c.Samples)
	case c.Pass1Temperature < 0:
		return fmt.Errorf("pass1_temperature: %g, want >= 0 (0 is greedy)", c.Pass1Temperature)
	case c.Limit < 0:
		return fmt.Errorf("limit: %d is negative (0 keeps every question)", c.Limit)
	case c.Batch < 1:
		return fmt.Errorf("batch: %d, want at least 1", c.Batch)
	case c.PartQuestions < 1:
		return fmt.Errorf("part_questions: %d, want at least 1", c.PartQuestions)
	case c.Precision != "" && c.Precision != sft.PrecisionF32 && c.Precision != sft.PrecisionBF16:
		return fmt.Errorf("precision: %q, want %q or %q", c.Precision, sft.PrecisionF32, sft.PrecisionBF16)
	}
	return c.Sampling.Validate() // names "sampling.<field>"
}

// fingerprinted is c without what does not change the samples.
func (c GenerationConfig) fingerprinted() GenerationConfig {
	c.Batch, c.PartQuestions = 0, 0
	if c.Precision == sft.PrecisionF32 {
		c.Precision = "" // the default, spelt out
	}
	return c
}

// limit returns the first Limit problems (all when Limit is 0).
func (c *GenerationConfig) limit(ps []problems.Problem) []problems.Problem {
	if c.Limit > 0 && len(ps) > c.Limit {
		return ps[:c.Limit]
	}
	return ps
}

// sampleSeed is the seed of sample i of question id.
func sampleSeed(seed uint64, id string, i int) uint64 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], seed)
	binary.LittleEndian.PutUint64(b[8:], uint64(i))
	h := sha256.Sum256(append(b[:], id...))
	return binary.LittleEndian.Uint64(h[:8])
}

// responder samples a student's answers to questions and grades them.
type responder struct {
	student *Student
	gen     *model.Generator
	grader  *mathgrade.Grader
	cfg     GenerationConfig
	chat    tokenizer.ChatOptions
	sc      *StudentConfig // the chat options and the system message
	stop    []int
}

// newResponder prepares generation for st on the backend and chat settings
// of sc, sampling under cfg and grading under grade.
func newResponder(st *Student, sc *StudentConfig, cfg GenerationConfig, grade mathgrade.Config) (*responder, error) {
	g, err := mathgrade.New(grade)
	if err != nil {
		return nil, fmt.Errorf("grade: %w", err)
	}
	be, err := backend.New(sc.Backend)
	if err != nil {
		return nil, fmt.Errorf("student.backend: %w", err)
	}
	gen, err := model.NewGenerator(be, st.Model)
	if err != nil {
		return nil, fmt.Errorf("student %s: generator: %w", st.Where, err)
	}
	gen.MaxBatch = cfg.Batch
	gen.ComputeDType, _ = sft.ComputeDType(cfg.Precision) // Validate checked the name
	stop := st.StopIDs()
	for _, id := range cfg.Sampling.StopTokens {
		if !slices.Contains(stop, id) {
			stop = append(stop, id)
		}
	}
	if len(stop) == 0 {
		return nil, fmt.Errorf("student %s: the tokenizer has no EOS or end-of-turn token and no sampling.stop_tokens are set", st.Where)
	}
	return &responder{student: st, gen: gen, grader: g, cfg: cfg, chat: sc.ChatOptions(), sc: sc, stop: stop}, nil
}

// prompt renders question as the student's chat prompt and encodes it.
func (r *responder) prompt(question string) ([]int, error) {
	msgs := r.sc.withSystem([]tokenizer.Message{{Role: "user", Content: fmt.Sprintf(QuestionPrompt, question)}})
	text, err := r.student.Tok.RenderChat(msgs, r.chat)
	if err != nil {
		return nil, err
	}
	ids := r.student.Tok.Encode(text)
	if len(ids) == 0 {
		return nil, errors.New("the prompt encodes to no tokens")
	}
	return ids, nil
}

// genStats counts what a generation did.
type genStats struct {
	Samples int
	Tokens  int
	Elapsed time.Duration
}

func (s *genStats) add(o genStats) {
	s.Samples += o.Samples
	s.Tokens += o.Tokens
	s.Elapsed += o.Elapsed
}

// respond answers every problem with cfg.Samples graded samples, in the
// order given. Sample 0 is drawn at Pass1Temperature, the others under
// Sampling; each with its own seed (sampleSeed), so the answers to a
// problem are the same whatever else is asked with it. All samples of all
// problems go to the sampler at once, so its batch stays full.
func (r *responder) respond(ctx context.Context, ps []problems.Problem) ([]Response, genStats, error) {
	k := r.cfg.Samples
	pass1 := r.cfg.Pass1Temperature
	reqs := make([]model.Request, 0, len(ps)*k) // problem q's sample i at q*k+i
	for _, p := range ps {
		ids, err := r.prompt(p.Question)
		if err != nil {
			return nil, genStats{}, fmt.Errorf("question %s: %w", p.ID, err)
		}
		for i := range k {
			req := model.Request{Prompt: ids, Seed: sampleSeed(r.cfg.Seed, p.ID, i)}
			if i == 0 {
				req.Temperature = &pass1
			}
			reqs = append(reqs, req)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, genStats{}, err
	}
	start := time.Now()
	s := r.cfg.Sampling
	s.StopTokens = r.stop
	res, err := r.gen.Generate(reqs, s)
	if err != nil {
		return nil, genStats{}, fmt.Errorf("generate: %w", err)
	}
	stats := genStats{Elapsed: time.Since(start)}
	out := make([]Response, len(ps))
	for q, p := range ps {
		out[q] = Response{Problem: p, Samples: make([]Sample, k)}
		for i := range k {
			out[q].Samples[i] = r.sample(res[q*k+i], p.Answer)
			stats.Samples++
			stats.Tokens += len(res[q*k+i].Tokens)
		}
	}
	return out, stats, nil
}

// sample decodes and grades one continuation against gold.
func (r *responder) sample(res model.Result, gold string) Sample {
	ids := res.Tokens
	if res.Stopped && len(ids) > 0 {
		ids = ids[:len(ids)-1] // the stop token is not part of the answer
	}
	text := r.student.Tok.Decode(ids)
	g := r.grader.Grade(text, gold)
	return Sample{Text: text, Answer: g.Extracted, Correct: g.Correct, Tokens: len(res.Tokens), Stopped: res.Stopped}
}

// accuracy is the fraction of rs's samples graded correct, and of its
// first samples (pass@1).
func accuracy(rs []Response) (avg, pass1 float64) {
	n := 0
	for _, r := range rs {
		for i, s := range r.Samples {
			if s.Correct {
				avg++
				if i == 0 {
					pass1++
				}
			}
			n++
		}
	}
	if n > 0 {
		avg /= float64(n)
	}
	if len(rs) > 0 {
		pass1 /= float64(len(rs))
	}
	return avg, pass1
}

// respondInParts answers ps in parts of cfg.PartQuestions questions and keeps each
// finished part in this stage's (or shard's) folder as
// parts/<name>-<i>.jsonl, so a task restarted after preemption resumes
// after the last finished part instead of starting over.
func respondInParts(ctx context.Context, env *job.Env, r *responder, name string, ps []problems.Problem) ([]Response, genStats, error) {
	var (
		out   []Response
		stats genStats
	)
	prog := env.Progress("questions", int64(len(ps)))
	step := r.cfg.PartQuestions
	for i := 0; i*step < len(ps); i++ {
		part := ps[i*step : min((i+1)*step, len(ps))]
		key := fmt.Sprintf("parts/%s-%05d.jsonl", name, i)
		if done, err := readRows[Response](ctx, env, env.Name(), key); err == nil && samePart(done, part, r.cfg.Samples) {
			out = append(out, done...)
			prog.Add(int64(len(part)))
			continue
		} else if err != nil && !errors.Is(err, storage.ErrNotExist) {
			env.Log().Warn("unreadable part, answering again", "part", key, "err", err)
		}
		rs, st, err := r.respond(ctx, part)
		if err != nil {
			return nil, genStats{}, err
		}
		if err := writeRows(ctx, env, key, rs); err != nil {
			return nil, genStats{}, err
		}
		out = append(out, rs...)
		stats.add(st)
		prog.Add(int64(len(part)))
	}
	return out, stats, nil
}

// samePart reports whether rs answers exactly part with k samples each.
func samePart(rs []Response, part []problems.Problem, k int) bool {
	if len(rs) != len(part) {
		return false
	}
	for i := range rs {
		if rs[i].ID != part[i].ID || len(rs[i].Samples) != k {
			return false
		}
	}
	return true
}

// shardOf returns the problems of shard i of n: every n-th, from i.
func shardOf[T any](xs []T, i, n int) []T {
	var out []T
	for j := i; j < len(xs); j += n {
		out = append(out, xs[j])
	}
	return out
}

// mergeShards reads every shard's rows of name and interleaves them back
// into the order shardOf took them from.
func mergeShards[T any](ctx context.Context, env *job.Env, name string) ([]T, error) {
	n := len(env.Shards())
	parts := make([][]T, n)
	total := 0
	for i := range n {
		rc, err := env.OpenShard(ctx, i, name)
		if err != nil {
			return nil, err
		}
		parts[i], err = decodeRows[T](rc, fmt.Sprintf("shard %d's %s", i, name))
		rc.Close()
		if err != nil {
			return nil, err
		}
		total += len(parts[i])
	}
	out := make([]T, 0, total)
	for j := 0; len(out) < total; j++ {
		for i := range n {
			if j < len(parts[i]) {
				out = append(out, parts[i][j])
			}
		}
	}
	return out, nil
}

// genSections are the spec sections a generating stage reads.
type genSections struct {
	spec    *job.Spec
	student *StudentConfig
	data    *problems.Config
	grade   *mathgrade.Config
}

// sectionsOf returns spec's sections that generation reads.
func sectionsOf(spec *job.Spec) genSections {
	return genSections{spec: spec, student: spec.Section("student").(*StudentConfig),
		data: spec.Section("data").(*problems.Config), grade: spec.Section("grade").(*mathgrade.Config)}
}

// genFingerprint hashes what every generating stage's output depends on:
// the prompt, generation's code version, the student, data and grade
// sections, the generation settings, and the student itself (from, an
// upstream stage's fingerprint, or the base model's hash).
func (g genSections) fingerprint(version string, cfg GenerationConfig, from string, upstream map[string]string, extra ...any) (string, error) {
	sections, err := g.spec.Canonical("student", "data", "grade")
	if err != nil {
		return "", err
	}
	who := upstream[from]
	if from == "" {
		if who, err = studentHash(context.Background(), g.student); err != nil {
			return "", err
		}
	}
	return job.Hash(append([]any{version, generateVersion, QuestionPrompt, sections, cfg.fingerprinted(), who}, extra...)...)
}

// answer loads the student (from an upstream stage, or the base when from
// is "") and answers each set of problems, by name, under cfg.
func (g genSections) answer(ctx context.Context, env *job.Env, from string, cfg GenerationConfig, sets map[string][]problems.Problem) (map[string][]Response, genStats, error) {
	var stats genStats
	out := map[string][]Response{}
	total := 0
	for _, ps := range sets {
		total += len(ps)
	}
	if total == 0 { // an empty shard: no need to load the student
		for name := range sets {
			out[name] = []Response{}
		}
		return out, stats, nil
	}
	st, err := openStudent(ctx, env, g.student, from)
	if err != nil {
		return nil, stats, err
	}
	r, err := newResponder(st, g.student, cfg, *g.grade)
	if err != nil {
		return nil, stats, err
	}
	names := make([]string, 0, len(sets))
	for name := range sets {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		rs, s, err := respondInParts(ctx, env, r, name, sets[name])
		if err != nil {
			return nil, stats, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = rs
		stats.add(s)
	}
	return out, stats, nil
}

// metrics are a generation's counts for a manifest: samples and tokens
// generated in this attempt, and the decoding speed.
func (s genStats) metrics() job.Metrics {
	m := job.Metrics{"generated_samples": s.Samples, "generated_tokens": s.Tokens, "generate_seconds": s.Elapsed.Seconds()}
	if s.Elapsed > 0 {
		m["tokens_per_second"] = float64(s.Tokens) / s.Elapsed.Seconds()
	}
	return m
}

// shardStats adds up the shards' generation metrics (in Merge).
func shardStats(env *job.Env) genStats {
	var s genStats
	num := func(v any) float64 {
		switch v := v.(type) {
		case float64:
			return v
		case int:
			return float64(v)
		}
		return 0
	}
	for _, m := range env.Shards() {
		s.Samples += int(num(m.Metrics["generated_samples"]))
		s.Tokens += int(num(m.Metrics["generated_tokens"]))
		s.Elapsed += time.Duration(num(m.Metrics["generate_seconds"]) * float64(time.Second))
	}
	return s
}
