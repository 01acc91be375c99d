package stages

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/train/model"
)

// TestEvaluateScores: the scores of fixed responses, overall and by
// subject, skill and level.
func TestEvaluateScores(t *testing.T) {
	s := func(ok bool, ans string) Sample { return Sample{Answer: ans, Correct: ok} }
	q := func(id, subject string, level int, skills []string, samples ...Sample) Response {
		return Response{Problem: problems.Problem{ID: id, Subject: subject, Level: level, Skills: skills}, Samples: samples}
	}
	rs := []Response{
		q("a", "algebra", 1, []string{"x"}, s(true, "1"), s(true, "1"), s(false, "2"), s(true, "1")),        // 3/4, maj right
		q("b", "algebra", 5, []string{"x", "y"}, s(false, "3"), s(false, "3"), s(true, "2"), s(false, "4")), // 1/4, maj wrong
		q("c", "geometry", 5, nil, s(false, ""), s(false, ""), s(false, ""), s(false, "")),                  // 0/4
		q("d", "geometry", 2, []string{"y"}, s(true, "9"), s(true, "9"), s(true, "9"), s(true, "9")),        // 4/4
	}
	res, err := score(mathgrade.Default(), rs, 4, mathgrade.DefaultBootstrapConfig())
	if err != nil {
		t.Fatal(err)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-12 }
	if res.Problems != 4 || res.Samples != 16 || !near(res.Pass1, 0.5) || !near(res.AvgK, 0.5) || !near(res.PassK, 0.75) || !near(res.MajK, 0.5) || res.K != 4 {
		t.Errorf("summary %+v", res.Summary)
	}
	if !(res.Interval.Lo < 0.5 && res.Interval.Hi > 0.5 && res.Interval.Lo >= 0 && res.Interval.Hi <= 1) {
		t.Errorf("interval %+v does not straddle pass@1 0.5", res.Interval)
	}
	if a := res.BySubject["algebra"]; a.Problems != 2 || !near(a.Pass1, 0.5) || !near(a.AvgK, 0.5) {
		t.Errorf("algebra %+v", a)
	}
	if x, y := res.BySkill["x"], res.BySkill["y"]; x.Problems != 2 || y.Problems != 2 || !near(y.AvgK, 5.0/8) || len(res.BySkill) != 2 {
		t.Errorf("by skill %+v", res.BySkill)
	}
	if l5 := res.ByLevel["5"]; l5.Problems != 2 || l5.Pass1 != 0 || len(res.ByLevel) != 3 {
		t.Errorf("by level %+v", res.ByLevel)
	}
	// Questions without subjects, skills or levels get no breakdowns.
	plain := []Response{{Problem: problems.Problem{ID: "gsm8k/1"}, Samples: []Sample{s(true, "3")}}}
	if res, err := score(mathgrade.Default(), plain, 1, mathgrade.DefaultBootstrapConfig()); err != nil || res.BySubject != nil || res.BySkill != nil || res.ByLevel != nil || res.Pass1 != 1 {
		t.Errorf("plain: %+v, %v", res, err)
	}
}

// TestEvaluateMathExcludesValidation: "math" is MATH test without the
// probe's validation questions; MATH questions carry reference skills.
func TestEvaluateMathExcludesValidation(t *testing.T) {
	spec := testSpec(t, "m", "data.dir=../data", "evaluate.benchmarks=[math,math500,aime24]")
	data := spec.Section("data").(*problems.Config)
	sets, err := benchmarks(spec.Section("evaluate").(*EvaluateConfig), data)
	if err != nil {
		t.Fatal(err)
	}
	val, _, err := problems.SplitMATH(data.Dir, *data)
	if err != nil {
		t.Fatal(err)
	}
	inVal := map[string]bool{}
	for _, p := range val {
		inVal[p.ID] = true
	}
	if len(sets["math"]) != 5000-len(val) {
		t.Errorf("math: %d questions, want %d", len(sets["math"]), 5000-len(val))
	}
	skilled := 0
	for _, p := range sets["math"] {
		if inVal[p.ID] {
			t.Fatalf("validation question %s is in the math benchmark", p.ID)
		}
		if len(p.Skills) > 0 {
			skilled++
		}
	}
	if skilled < len(sets["math"])*9/10 || len(sets["math500"]) != 500 || len(sets["math500"][0].Skills) == 0 || len(sets["aime24"]) != 30 {
		t.Errorf("skills on %d of %d math questions; math500 %d (skills %v); aime24 %d", skilled, len(sets["math"]), len(sets["math500"]), sets["math500"][0].Skills, len(sets["aime24"]))
	}
}

// TestEvaluateBaseAndArm runs evaluate/base on the base student and
// evaluate/x on the same weights exported by an upstream sft/x: one
// responses file per benchmark, scores that match them, and the same
// answers from the same weights.
func TestEvaluateBaseAndArm(t *testing.T) {
	dir := writeTinyStudent(t, t.TempDir())
	files := map[string]any{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() { // the local store's own metadata
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[StudentDir+"/"+e.Name()] = b
	}
	st := storagetest.Local(t)
	sets := append(append([]string{}, genSets...), "evaluate.benchmarks=[math,gsm8k]", "evaluate.limit=3",
		"evaluate.samples=2", "evaluate.sampling.max_new_tokens=8")
	_, err = runStages(t, st, testSpec(t, dir, sets...), NewEvaluate("base", ""),
		fixed{name: "sft/x", files: files}, NewEvaluate("x", "sft/x"))
	if err != nil {
		t.Fatal(err)
	}
	for _, arm := range []string{"base", "x"} {
		var ev Evaluation
		if err := json.Unmarshal(readOutput(t, st, "evaluate/"+arm, EvaluationFile), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Stage != "evaluate/"+arm || len(ev.Benchmarks) != 2 {
			t.Errorf("%s: evaluation %+v", arm, ev)
		}
		if want := map[string]string{"base": dir + "/", "x": "runs/r1/sft/x/" + StudentDir}[arm]; !strings.HasSuffix(ev.Model, want) {
			t.Errorf("%s: model %q, want one ending in %q", arm, ev.Model, want)
		}
		for _, b := range []string{"math", "gsm8k"} {
			rs := decodeResponses(t, readOutput(t, st, "evaluate/"+arm, b+".jsonl"))
			if len(rs) != 3 || rs[0].Benchmark != b || len(rs[0].Samples) != 2 {
				t.Fatalf("%s %s: %d responses: %+v", arm, b, len(rs), rs)
			}
			want, err := score(mathgrade.Default(), rs, 2, mathgrade.DefaultBootstrapConfig())
			if err != nil {
				t.Fatal(err)
			}
			if got := ev.Benchmarks[b]; got.Problems != 3 || got.Samples != 6 || got.Pass1 != want.Pass1 || got.AvgK != want.AvgK {
				t.Errorf("%s %s: scores %+v, responses give %+v", arm, b, got.Summary, want.Summary)
			}
		}
	}
	for _, b := range []string{"math.jsonl", "gsm8k.jsonl"} {
		if base, x := readOutput(t, st, "evaluate/base", b), readOutput(t, st, "evaluate/x", b); !bytes.Equal(base, x) {
			t.Errorf("%s: the same weights answered differently as base and as sft/x's export", b)
		}
	}
	// Two tasks, one shard each, give the same files.
	two := storagetest.Local(t)
	runSharded(t, two, 2, func() *job.Spec { return testSpec(t, dir, sets...) },
		func() []job.Stage { return []job.Stage{NewEvaluate("base", "")} })
	for _, name := range []string{"math.jsonl", "gsm8k.jsonl", EvaluationFile} {
		if one, got := readOutput(t, st, "evaluate/base", name), readOutput(t, two, "evaluate/base", name); !bytes.Equal(one, got) {
			t.Errorf("%s: 2 shards merged differ from 1 task:\n%s\nvs\n%s", name, got, one)
		}
	}
}

// TestEvaluateHeldInBFloat16: a bfloat16 checkpoint evaluated with its
// weights held in bfloat16 (student.dtype) answers exactly as held in
// float32.
func TestEvaluateHeldInBFloat16(t *testing.T) {
	ctx := context.Background()
	src := storagetest.Open(t, storage.Config{Root: writeTinyStudent(t, t.TempDir())})
	m, err := model.Load(ctx, src, "")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range tokenizerFiles {
		files[f] = storagetest.ReadAll(t, src, f)
	}
	dir := t.TempDir()
	if err := m.Save(ctx, storagetest.Open(t, storage.Config{Root: dir}), "", model.SaveOptions{DType: "BF16", Files: files}); err != nil {
		t.Fatal(err)
	}
	sets := append(append([]string{}, genSets...), "evaluate.benchmarks=[math,gsm8k]", "evaluate.limit=3",
		"evaluate.samples=2", "evaluate.sampling.max_new_tokens=8")
	out := map[string]storage.Store{}
	for _, dt := range []string{"float32", "bfloat16"} {
		out[dt] = storagetest.Local(t)
		if _, err := runStages(t, out[dt], testSpec(t, dir, append(sets, "student.dtype="+dt)...), NewEvaluate("base", "")); err != nil {
			t.Fatalf("student.dtype=%s: %v", dt, err)
		}
	}
	for _, b := range []string{"math.jsonl", "gsm8k.jsonl"} {
		if f32, bf16 := readOutput(t, out["float32"], "evaluate/base", b), readOutput(t, out["bfloat16"], "evaluate/base", b); !bytes.Equal(f32, bf16) {
			t.Errorf("%s: answers differ with the weights held in bfloat16", b)
		}
	}
	if err := testSpec(t, dir, "student.dtype=float16").Validate(); err == nil || !strings.Contains(err.Error(), "dtype") {
		t.Errorf("student.dtype=float16: %v", err)
	}
}

// TestGenerationPrecision: evaluate.precision (and probe.precision) bf16
// runs the student's matrix products in bfloat16 and the stage answers
// every question; an unknown precision is refused, naming the key; only a
// precision other than the default changes the fingerprint, so specs
// without the key keep their stages.
func TestGenerationPrecision(t *testing.T) {
	dir := writeTinyStudent(t, t.TempDir())
	sets := append(append([]string{}, genSets...), "evaluate.benchmarks=[gsm8k]", "evaluate.limit=3",
		"evaluate.samples=2", "evaluate.sampling.max_new_tokens=8", "evaluate.precision=bf16")
	spec := testSpec(t, dir, sets...)
	st, err := openStudent(context.Background(), nil, spec.Section("student").(*StudentConfig), "")
	if err != nil {
		t.Fatal(err)
	}
	for precision, want := range map[string]dtypes.DType{"": dtypes.Float32, "f32": dtypes.Float32, "bf16": dtypes.BFloat16} {
		cfg := spec.Section("evaluate").(*EvaluateConfig).GenerationConfig
		cfg.Precision = precision
		r, err := newResponder(st, spec.Section("student").(*StudentConfig), cfg, *spec.Section("grade").(*mathgrade.Config))
		if err != nil {
			t.Fatal(err)
		}
		if r.gen.ComputeDType != want {
			t.Errorf("precision %q: the sampler computes in %s, want %s", precision, r.gen.ComputeDType, want)
		}
	}
	out := storagetest.Local(t)
	if _, err := runStages(t, out, spec, NewEvaluate("base", "")); err != nil {
		t.Fatal(err)
	}
	if rs := decodeResponses(t, readOutput(t, out, "evaluate/base", "gsm8k.jsonl")); len(rs) != 3 || len(rs[2].Samples) != 2 {
		t.Errorf("bf16 evaluation answered %d questions, want 3 with 2 samples", len(rs))
	}

	if err := testSpec(t, dir, "probe.precision=fp16").Validate(); err == nil || !strings.Contains(err.Error(), "probe.precision") {
		t.Errorf("probe.precision=fp16: %v", err)
	}
	fp := func(sets ...string) string {
		fp, err := NewProbe().Fingerprint(testSpec(t, dir, sets...), nil)
		if err != nil {
			t.Fatal(err)
		}
		return fp
	}
	if base := fp(); fp("probe.precision=f32") != base || fp("probe.precision=bf16") == base {
		t.Error("probe.precision: f32 must keep the default's fingerprint, bf16 change it")
	}
	if b, _ := json.Marshal(defaultGeneration(1).fingerprinted()); strings.Contains(string(b), "Precision") {
		t.Errorf("the default generation settings hash with a precision: %s", b)
	}
}

// TestGenerationMemory: statjob check's KV cache figure for a
// Qwen2.5-1.5B-shaped student (28 layers, 2 KV heads of 128) answering 32
// at a time with up to 2,048 new tokens: 4,096-token caches, 7 GiB in
// float32, half in bf16.
func TestGenerationMemory(t *testing.T) {
	mc := &model.Config{NumHiddenLayers: 28, NumKeyValueHeads: 2, HeadDim: 128}
	probe, eval := defaultGeneration(5), defaultGeneration(1)
	got := generationMemory(mc, map[string]*GenerationConfig{"probe": &probe, "evaluate": &eval})
	want := "probe: KV cache 7 GiB (batch 32 × 4096 tokens, float32; more for prompts over 2048 tokens), evaluate: the same; twice that while a decode step runs"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	eval.Precision = "bf16"
	if got := generationMemory(mc, map[string]*GenerationConfig{"probe": &probe, "evaluate": &eval}); !strings.Contains(got, "evaluate: KV cache 3.5 GiB (batch 32 × 4096 tokens, bfloat16;") {
		t.Errorf("bf16: %s", got)
	}
	probe.Batch = 20 // decoded 32 at a time
	if got := generationMemory(mc, map[string]*GenerationConfig{"probe": &probe, "evaluate": &eval}); !strings.HasPrefix(got, "probe: KV cache 7 GiB (batch 32 × 4096") {
		t.Errorf("batch 20: %s", got)
	}
	// Gemma 3 4B's language model: 29 of its 34 layers keep a ring of
	// their 1,024-token window, 5 the whole 4,096 tokens (12.25 GiB, not
	// the 34 GiB of full caches).
	gemma, err := model.ParseConfig([]byte(`{"model_type": "gemma3_text", "vocab_size": 262208, "hidden_size": 2560,
		"intermediate_size": 10240, "num_hidden_layers": 34, "num_attention_heads": 8, "num_key_value_heads": 4,
		"head_dim": 256, "sliding_window": 1024, "rope_scaling": {"rope_type": "linear", "factor": 8.0}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := generationMemory(gemma, map[string]*GenerationConfig{"probe": &probe, "evaluate": &probe}); !strings.HasPrefix(got, "probe: KV cache 12.2 GiB (batch 32 × 4096") {
		t.Errorf("gemma3: %s", got)
	}
}

// TestRespondSamplesAsBefore: the student's samples, asked in one batch, are
// those of the pass@1 samples generated at pass1_temperature and the others
// at sampling.temperature, each request alone with its own seed.
func TestRespondSamplesAsBefore(t *testing.T) {
	dir := writeTinyStudent(t, t.TempDir())
	spec := testSpec(t, dir, append(append([]string{}, genSets...), "evaluate.samples=3", "evaluate.sampling.max_new_tokens=8")...)
	sc := spec.Section("student").(*StudentConfig)
	st, err := openStudent(context.Background(), nil, sc, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := spec.Section("evaluate").(*EvaluateConfig).GenerationConfig
	r, err := newResponder(st, sc, cfg, *spec.Section("grade").(*mathgrade.Config))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := problems.LoadDir(problems.GSM8K, "../data")
	if err != nil {
		t.Fatal(err)
	}
	ps = ps[:4]
	got, _, err := r.respond(context.Background(), ps)
	if err != nil {
		t.Fatal(err)
	}
	for q, p := range ps {
		ids, err := r.prompt(p.Question)
		if err != nil {
			t.Fatal(err)
		}
		for i := range cfg.Samples {
			s := cfg.Sampling
			s.StopTokens = r.stop
			if i == 0 {
				s.Temperature = cfg.Pass1Temperature
			}
			res, err := r.gen.Generate([]model.Request{{Prompt: ids, Seed: sampleSeed(cfg.Seed, p.ID, i)}}, s)
			if err != nil {
				t.Fatal(err)
			}
			if want := r.sample(res[0], p.Answer); got[q].Samples[i] != want {
				t.Errorf("question %s sample %d: %+v, want %+v", p.ID, i, got[q].Samples[i], want)
			}
		}
	}
}
