package stages

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/train/tokenizer"
)

// genSets are the settings of the generating tests: the repository's data,
// a few questions, short answers, quick leases and polling.
var genSets = []string{"data.dir=../data", "job.poll=20ms", "job.heartbeat=100ms", "job.lease_ttl=2s", "job.grace=0s"}

// probeSets: 3 validation questions, 3 samples of at most 8 tokens, decoded
// 2 sequences at a time, in parts of 2 questions (so a run writes several parts).
var probeSets = []string{"probe.limit=3", "probe.samples=3", "probe.sampling.max_new_tokens=8", "probe.batch=2", "probe.part_questions=2"}

// runSharded runs stages as n tasks of one run side by side, shard i in
// task i, as a batch array does.
func runSharded(t *testing.T, st storage.Store, n int, newSpec func() *job.Spec, newStages func() []job.Stage) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		spec, stages := newSpec(), newStages()
		wg.Go(func() {
			g, err := job.NewGraph(stages...)
			if err != nil {
				errs[i] = err
				return
			}
			_, errs[i] = job.Run(context.Background(), st, spec, g, job.Options{RunID: "r1", Shard: i, Shards: n,
				Holder: fmt.Sprintf("task%d", i), Reporter: job.NewReporter(io.Discard, false)})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
	}
}

func decodeResponses(t *testing.T, b []byte) []Response {
	t.Helper()
	rs, err := decodeRows[Response](bytes.NewReader(b), "responses")
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestProbeShardsAgree: the probe answers the first validation questions
// k times each, in question order, graded against the gold answers; two
// shards merged give byte for byte what one task gives, since every sample
// has its own seed.
func TestProbeShardsAgree(t *testing.T) {
	model := writeTinyStudent(t, t.TempDir())
	sets := append(append([]string{}, genSets...), probeSets...)
	newSpec := func() *job.Spec { return testSpec(t, model, sets...) }

	one := storagetest.Local(t)
	if _, err := runStages(t, one, newSpec(), NewProbe()); err != nil {
		t.Fatal(err)
	}
	whole := readOutput(t, one, "probe", ResponsesFile)
	rs := decodeResponses(t, whole)

	spec := newSpec()
	data := spec.Section("data").(*problems.Config)
	val, _, err := problems.SplitMATH(data.Dir, *data)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("%d responses, want the first 3 validation questions", len(rs))
	}
	texts := map[string]bool{}
	for q, r := range rs {
		if r.ID != val[q].ID || r.Answer != val[q].Answer || r.Question != val[q].Question {
			t.Errorf("response %d is %s, want validation question %s with its gold answer", q, r.ID, val[q].ID)
		}
		if len(r.Samples) != 3 {
			t.Fatalf("%s: %d samples, want 3", r.ID, len(r.Samples))
		}
		for i, s := range r.Samples {
			texts[s.Text] = true
			if s.Tokens < 1 || s.Tokens > 8 || (!s.Stopped && s.Tokens != 8) {
				t.Errorf("%s sample %d: %d tokens, stopped %v; want 8, or fewer ending on a stop token", r.ID, i, s.Tokens, s.Stopped)
			}
			g := mathgrade.Grade(s.Text, r.Answer)
			if s.Answer != g.Extracted || s.Correct != g.Correct {
				t.Errorf("%s sample %d: answer %q correct %v, grading %q gives %q %v", r.ID, i, s.Answer, s.Correct, s.Text, g.Extracted, g.Correct)
			}
		}
	}
	if len(texts) < 5 {
		t.Errorf("only %d distinct texts among 9 samples: are the samples seeded apart?", len(texts))
	}
	m, err := job.ReadManifest(context.Background(), one, "r1", "probe")
	if err != nil {
		t.Fatal(err)
	}
	if m.Metrics["questions"] != 3.0 || m.Metrics["samples"] != 9.0 || m.Metrics["generated_tokens"] == 0.0 {
		t.Errorf("metrics %v", m.Metrics)
	}

	two := storagetest.Local(t)
	runSharded(t, two, 2, newSpec, func() []job.Stage { return []job.Stage{NewProbe()} })
	if got := readOutput(t, two, "probe", ResponsesFile); !bytes.Equal(got, whole) {
		t.Errorf("2 shards merged differ from 1 task:\n%s\nvs\n%s", got, whole)
	}
}

// TestProbeResumesFromParts: parts a task finished before it was stopped
// are kept, not answered again.
func TestProbeResumesFromParts(t *testing.T) {
	model := writeTinyStudent(t, t.TempDir())
	sets := append(append([]string{}, genSets...), probeSets...)
	st := storagetest.Local(t)
	// A part left by an earlier attempt of shard 0 of 1, marked so that a
	// rerun that answered it again would show.
	spec := testSpec(t, model, sets...)
	data := spec.Section("data").(*problems.Config)
	val, _, err := problems.SplitMATH(data.Dir, *data)
	if err != nil {
		t.Fatal(err)
	}
	var part bytes.Buffer
	for _, p := range val[:2] {
		r := Response{Problem: p}
		for range 3 {
			r.Samples = append(r.Samples, Sample{Text: "kept from the first attempt", Tokens: 1})
		}
		b, _ := json.Marshal(r)
		part.Write(append(b, '\n'))
	}
	key := "runs/r1/probe/_shards/0-of-1/parts/validation-00000.jsonl"
	if _, err := st.Put(context.Background(), key, &part, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	sum, err := runStages(t, st, spec, NewProbe())
	if err != nil {
		t.Fatal(err)
	}
	rs := decodeResponses(t, readOutput(t, st, "probe", ResponsesFile))
	if len(rs) != 3 || rs[0].Samples[0].Text != "kept from the first attempt" || rs[1].Samples[2].Text != "kept from the first attempt" {
		t.Fatalf("resumed responses: %+v", rs)
	}
	if rs[2].Samples[0].Text == "kept from the first attempt" {
		t.Error("the unfinished part was not answered")
	}
	m, err := job.ReadManifest(context.Background(), st, "r1", "probe")
	if err != nil {
		t.Fatal(err)
	}
	if m.Metrics["generated_samples"] != 3.0 {
		t.Errorf("generated %v samples, want 3 (the one question not in the kept part); summary %+v", m.Metrics["generated_samples"], sum)
	}
}

func TestGenerationConfigValidate(t *testing.T) {
	for _, tc := range []struct{ set, want string }{
		{"probe.samples=0", "probe.samples"},
		{"probe.pass1_temperature=-1", "probe.pass1_temperature"},
		{"probe.limit=-2", "probe.limit"},
		{"probe.batch=0", "probe.batch"},
		{"probe.part_questions=0", "probe.part_questions"},
		{"probe.sampling.max_new_tokens=0", "probe.sampling.max_new_tokens"},
		{"probe.sampling.top_p=2", "probe.sampling.top_p"},
		{"evaluate.benchmarks=[math,nope]", "evaluate.benchmarks[1]"},
		{"evaluate.benchmarks=[gsm8k,gsm8k]", "evaluate.benchmarks[1]"},
		{"evaluate.benchmarks=[]", "evaluate.benchmarks"},
		{`evaluate.skill_map=""`, "evaluate: skill_map and catalogue"},
		{"evaluate.bootstrap.resamples=5", "evaluate.bootstrap.resamples"},
		{"difficulty.method=prm", "process reward model"},
		{"difficulty.method=vibes", "difficulty.method"},
		{"difficulty.threshold=0", "difficulty.threshold"},
		{"difficulty.method=consistency", ""},
		{"difficulty.min_agree=1", ""}, // only read by consistency
	} {
		spec := testSpec(t, "m", tc.set)
		err := spec.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.set, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", tc.set, err, tc.want)
		}
	}
}

// TestGenerationFingerprint: what changes the samples changes the
// fingerprint; the batch size and the part size do not.
func TestGenerationFingerprint(t *testing.T) {
	model := writeTinyStudent(t, t.TempDir())
	fp := func(sets ...string) string {
		fp, err := NewProbe().Fingerprint(testSpec(t, model, sets...), nil)
		if err != nil {
			t.Fatal(err)
		}
		return fp
	}
	base := fp()
	if fp("probe.batch=7") != base || fp("probe.part_questions=3") != base {
		t.Error("probe.batch or probe.part_questions changed the fingerprint")
	}
	for _, s := range []string{"probe.samples=4", "probe.seed=1", "probe.sampling.temperature=0.7", "student.system=Be brief.", "data.seed=3", "grade.rel_tol=1e-4"} {
		if fp(s) == base {
			t.Errorf("%s left the fingerprint unchanged", s)
		}
	}
}

// TestGeneratePrompt: the student reads the question in the 0-shot prompt
// through its chat template, after the configured system message.
func TestGeneratePrompt(t *testing.T) {
	tok, err := tokenizer.LoadDir(tinyTokDir)
	if err != nil {
		t.Fatal(err)
	}
	sc := DefaultStudentConfig()
	sc.System = "Be brief."
	r := &responder{student: &Student{Tok: tok}, chat: sc.ChatOptions(), sc: &sc}
	ids, err := r.prompt("What is 2+2?")
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?\n\n" +
		"Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n<|im_start|>assistant\n"
	if got := tok.Decode(ids); got != want {
		t.Errorf("prompt:\n%q\nwant\n%q", got, want)
	}
	sc.System = ""
	ids, _ = r.prompt("What is 2+2?")
	if got := tok.Decode(ids); !strings.HasPrefix(got, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?") {
		t.Errorf("without a system message: %q", got)
	}
}
