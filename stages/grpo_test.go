package stages

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/task/skillsworld"
	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/grpo"
	"github.com/statjob/statjob/train/model"
)

// grpoTestSetup writes the skills world (its questions in the MATH layout)
// and its pre-trained student, keeping as train questions only those of
// addition, which the student half knows (about half its samples at
// temperature 1 are right), so that rollouts of one question disagree and
// GRPO has a signal. It returns the student's folder, the data folder and
// an empty store.
func grpoTestSetup(t *testing.T) (student, data string, st storage.Store) {
	t.Helper()
	dir := t.TempDir()
	student, data = filepath.Join(dir, "student"), filepath.Join(dir, "data")
	if err := skillsworld.WriteStudent(student); err != nil {
		t.Fatal(err)
	}
	if err := skillsworld.Write(data, skillsworld.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	trainFile := filepath.Join(data, skillsworld.TrainFile)
	b, err := os.ReadFile(trainFile)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var row problems.MATHRow
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatal(err)
		}
		if it, ok := skillsworld.Parse(row.Problem); ok && it.Skill.Name == "addition" {
			kept = append(kept, line)
		}
	}
	if len(kept) == 0 {
		t.Fatal("no addition question in the skills world")
	}
	if err := os.WriteFile(trainFile, []byte(strings.Join(kept, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err = storage.Open(context.Background(), filepath.Join(dir, "root"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return student, data, st
}

// grpoFixedSFT stands in for sft/<arm>: it outputs student as its
// StudentDir.
func grpoFixedSFT(t *testing.T, arm, student string) fixed {
	t.Helper()
	files := map[string]any{}
	entries, err := os.ReadDir(student)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(student, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[StudentDir+"/"+e.Name()] = b
	}
	return fixed{name: "sft/" + arm, files: files}
}

// TestGRPOResumesAndExports runs grpo/x through the job runner on the
// skills world, with a KL term: the first attempt is stopped after its
// first checkpoint, the resumed one continues from it, trains (some steps
// have signal and update), writes a metrics row per step (with the KL to
// the starting student, which the resumed attempt still measures against
// the student it started from, so it is above 0 once an update moved the
// weights), and exports a student that loads, differs from the one it
// started from, and is what evaluate/grpo/x evaluates.
func TestGRPOResumesAndExports(t *testing.T) {
	ctx := context.Background()
	student, data, st := grpoTestSetup(t)
	const steps = 2
	spec := testSpec(t, student, "data.dir="+data, "grpo.steps=2", "grpo.questions=2", "grpo.group=4",
		"grpo.mini_batch=8", "grpo.micro_batch=8", "grpo.sampling.max_new_tokens=40", "grpo.lr=1e-4",
		"grpo.kl_coef=0.05", "grpo.checkpoint_every=1", "grpo.keep=1", "job.grace=0s",
		"data.validation=60", "data.exclude=[]", "evaluate.benchmarks=[math]", "evaluate.limit=2",
		"evaluate.skill_map=", "evaluate.catalogue=", "evaluate.sampling.max_new_tokens=8")
	g, err := job.NewGraph(grpoFixedSFT(t, "x", student), NewGRPO("x"), NewEvaluate(GRPOArm("x"), GRPOArm("x")))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, err = job.Run(runCtx, st, spec, g, job.Options{RunID: "r1", Holder: "test",
		Reporter: job.NewReporter(sftCancelAt{needle: "checkpoint step 1 ", cancel: cancel}, false)})
	if err == nil {
		t.Fatal("the stopped run reports success")
	}
	if _, err := job.ReadManifest(ctx, st, "r1", "grpo/x"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("stopped stage has a manifest (err %v)", err)
	}

	sum, err := job.Run(ctx, st, spec, g, job.Options{RunID: "r1", Resume: true, Holder: "test",
		Reporter: job.NewReporter(io.Discard, false)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(sum.Ran, "grpo/x") || !slices.Contains(sum.Ran, "evaluate/grpo/x") {
		t.Fatalf("resumed run did not run grpo/x: %+v", sum)
	}
	man, err := job.ReadManifest(ctx, st, "r1", "grpo/x")
	if err != nil {
		t.Fatal(err)
	}
	if from, _ := man.Metrics["resumed_from"].(string); !strings.HasPrefix(from, "checkpoints/step-00000000") {
		t.Fatalf("resumed_from = %q: want a checkpoint", from)
	}
	t.Logf("grpo/x metrics: %v", man.Metrics)
	if man.Metrics["steps"] != float64(steps) {
		t.Fatalf("metrics %v: want %d steps", man.Metrics, steps)
	}
	if u, _ := man.Metrics["updates"].(float64); u < 1 {
		t.Fatalf("metrics %v: no update; the test has no GRPO signal", man.Metrics)
	}
	rows, err := decodeRows[grpo.Metric](strings.NewReader(string(readOutput(t, st, "grpo/x", MetricsFile))), MetricsFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != steps || rows[steps-1].Step != steps {
		t.Fatalf("%d metrics rows, want %d", len(rows), steps)
	}
	if rows[0].Updates == 0 || rows[1].Updates == 0 {
		t.Fatalf("metrics %+v: a step without update leaves the KL unexercised", rows)
	}
	if !(rows[1].KL > 0) || man.Metrics["final_kl"] != rows[1].KL {
		t.Fatalf("step 2 of a run with kl_coef > 0: kl %g (stage metric %v), want > 0 after step 1's update",
			rows[1].KL, man.Metrics["final_kl"])
	}

	// The export loads like sft's, and GRPO changed the student.
	trained, err := model.Load(ctx, st, job.OutputKey("r1", "grpo/x", StudentDir))
	if err != nil {
		t.Fatal(err)
	}
	src, err := storage.Open(ctx, student)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	base, err := model.Load(ctx, src, "")
	if err != nil {
		t.Fatal(err)
	}
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	seq := [][]int{{1, 2, 3, 4, 5}}
	a, err := model.Logits(be, base, seq)
	if err != nil {
		t.Fatal(err)
	}
	b, err := model.Logits(be, trained, seq)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(a[0][4], b[0][4]) {
		t.Fatal("the exported student computes the same logits as the one GRPO started from")
	}
	for _, f := range tokenizerFiles {
		readOutput(t, st, "grpo/x", StudentDir+"/"+f)
	}
	var ev Evaluation
	if err := json.Unmarshal(readOutput(t, st, "evaluate/grpo/x", EvaluationFile), &ev); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(strings.TrimSuffix(ev.Model, "/"), "grpo/x/"+StudentDir) || ev.Benchmarks["math"].Problems != 2 {
		t.Fatalf("evaluate/grpo/x evaluated %q on %+v", ev.Model, ev.Benchmarks["math"])
	}
}

// TestPipelineGRPOArms checks that pipeline.grpo adds grpo/<arm> and
// evaluate/grpo/<arm>, that the report reads them, and that an arm that is
// neither base nor a strategy is refused by name.
func TestPipelineGRPOArms(t *testing.T) {
	spec := testSpec(t, "models/base", "pipeline.strategies=[stat-sel, train]", "pipeline.grpo=[stat-sel, base]")
	g, err := Graph(spec)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]job.Stage{}
	for _, s := range g.Stages() {
		names[s.Name()] = s
	}
	for _, want := range []string{"grpo/stat-sel", "grpo/base", "evaluate/grpo/stat-sel", "evaluate/grpo/base"} {
		if names[want] == nil {
			t.Fatalf("graph has no %s", want)
		}
	}
	if n := names["grpo/stat-sel"].Needs(); !slices.Equal(n, []string{"sft/stat-sel"}) {
		t.Fatalf("grpo/stat-sel needs %v", n)
	}
	if n := names["evaluate/grpo/base"].Needs(); !slices.Equal(n, []string{"grpo/base"}) {
		t.Fatalf("evaluate/grpo/base needs %v", n)
	}
	if n := names["report"].Needs(); !slices.Contains(n, "evaluate/grpo/stat-sel") || !slices.Contains(n, "evaluate/grpo/base") {
		t.Fatalf("report needs %v", n)
	}

	p := DefaultPipelineConfig()
	p.GRPO = []string{"base", "hard"}
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "grpo[1]") {
		t.Fatalf("grpo arm outside the strategies: err = %v", err)
	}
	p.GRPO = []string{"base", "base"}
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "grpo[1]") {
		t.Fatalf("grpo arm twice: err = %v", err)
	}
}
