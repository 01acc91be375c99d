package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/sft"
	"github.com/statjob/statjob/train/tokenizer"
)

// sftTestStore writes a tiny base student and opens an empty store beside
// it; it returns the student's folder and the store.
func sftTestStore(t testing.TB) (string, storage.Store) {
	t.Helper()
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	writeTinyStudent(t, base)
	st, err := storage.Open(context.Background(), filepath.Join(dir, "root"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return base, st
}

// sftTestRows is a small training set in the dataset stage's format.
func sftTestRows() []Example {
	qa := [][2]string{
		{"What is 2+3?", "2+3 = \\boxed{5}."},
		{"What is 4*4?", "4*4 = \\boxed{16}."},
		{"Half of 10?", "10/2 = \\boxed{5}."},
		{"Is 7 prime?", "Yes: \\boxed{7}."},
	}
	var rows []Example
	for i, p := range qa {
		rows = append(rows, Example{Source: fmt.Sprintf("train/%d", i), Skill: "arithmetic", Messages: []tokenizer.Message{
			{Role: "user", Content: p[0]}, {Role: "assistant", Content: p[1]}}})
	}
	return rows
}

// sftCancelAt cancels a run once the log shows needle.
type sftCancelAt struct {
	needle string
	cancel context.CancelFunc
}

func (w sftCancelAt) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.needle) {
		w.cancel()
	}
	return len(p), nil
}

// TestSFTResumesExportsAndReuses trains a tiny student through the job
// runner: the first attempt is stopped (as by SIGTERM) after its second
// checkpoint, the resumed run continues from a checkpoint, exports a student
// that loads and computes something else than the base, and a second run
// with the same spec takes the stage from the stage cache.
func TestSFTResumesExportsAndReuses(t *testing.T) {
	ctx := context.Background()
	base, st := sftTestStore(t)
	spec := testSpec(t, base, "sft.max_len=128", "sft.micro_batch=2", "sft.accumulation=1", "sft.epochs=3",
		"sft.checkpoint_every=1", "sft.keep_checkpoints=2", "sft.lr=0.01", "sft.warmup_ratio=0", "job.grace=0s")
	g, err := job.NewGraph(fixed{name: "dataset/x", files: map[string]any{DatasetFile: sftTestRows()}}, NewSFT("x"))
	if err != nil {
		t.Fatal(err)
	}
	const total = 6 // 4 examples / micro-batch 2 × 3 epochs

	// A first attempt, stopped after its second checkpoint.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, err = job.Run(runCtx, st, spec, g, job.Options{RunID: "r1", Holder: "test",
		Reporter: job.NewReporter(sftCancelAt{needle: "checkpoint step 2 ", cancel: cancel}, false)})
	if err == nil {
		t.Fatal("the stopped run reports success")
	}
	if _, err := job.ReadManifest(ctx, st, "r1", "sft/x"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("stopped stage has a manifest (err %v)", err)
	}

	// The resumed run continues from a checkpoint.
	sum, err := job.Run(ctx, st, spec, g, job.Options{RunID: "r1", Resume: true, Holder: "test",
		Reporter: job.NewReporter(io.Discard, false)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(sum.Ran, "sft/x") {
		t.Fatalf("resumed run did not run sft/x: %+v", sum)
	}
	man, err := job.ReadManifest(ctx, st, "r1", "sft/x")
	if err != nil {
		t.Fatal(err)
	}
	from, _ := man.Metrics["resumed_from"].(string)
	var step int
	if _, err := fmt.Sscanf(path.Base(strings.TrimSuffix(from, "/")), "step-%d", &step); err != nil || step < 2 || step >= total {
		t.Fatalf("resumed_from = %q: want a checkpoint between step 2 and %d", from, total-1)
	}
	if man.Metrics["steps"] != float64(total) || man.Metrics["examples_kept"] != float64(4) {
		t.Fatalf("metrics %v: want %d steps over 4 examples", man.Metrics, total)
	}
	first, final := man.Metrics["first_loss"].(float64), man.Metrics["final_loss"].(float64)
	if !(final < first) {
		t.Fatalf("loss went from %g to %g: training did not lower it", first, final)
	}
	for _, f := range []string{MetricsFile, "student/config.json", "student/model.safetensors", "student/tokenizer.json", "student/tokenizer_config.json"} {
		if _, ok := man.Output(f); !ok {
			t.Errorf("manifest outputs lack %s: %+v", f, man.Outputs)
		}
	}

	// The per-step metrics cover every step, those before the resume too.
	var steps []int
	for _, line := range strings.Split(strings.TrimSpace(string(readOutput(t, st, "sft/x", MetricsFile))), "\n") {
		var m sft.Metric
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if !(m.Loss > 0) || !(m.LR > 0) {
			t.Errorf("metric line %s: want loss and lr", line)
		}
		steps = append(steps, m.Step)
	}
	if !slices.Equal(steps, []int{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("metrics.jsonl steps %v", steps)
	}

	// The export loads and computes something else than the base student.
	baseStore, err := storage.Open(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer baseStore.Close()
	before, err := model.Load(ctx, baseStore, "")
	if err != nil {
		t.Fatal(err)
	}
	after, err := model.Load(ctx, st, job.OutputKey("r1", "sft/x", StudentDir))
	if err != nil {
		t.Fatal(err)
	}
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	seq := [][]int{{10, 20, 30, 40, 50}}
	lb, err := model.Logits(be, before, seq)
	if err != nil {
		t.Fatal(err)
	}
	la, err := model.Logits(be, after, seq)
	if err != nil {
		t.Fatal(err)
	}
	diff := 0.0
	for j := range lb[0] {
		for k := range lb[0][j] {
			diff = math.Max(diff, math.Abs(float64(la[0][j][k]-lb[0][j][k])))
		}
	}
	if diff < 1e-3 {
		t.Fatalf("exported student's logits differ from the base by at most %g: no training in the export", diff)
	}

	// Another run of the same spec takes the stage from the cache.
	sum, err = job.Run(ctx, st, spec, g, job.Options{RunID: "r2", Holder: "test", Reporter: job.NewReporter(io.Discard, false)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(sum.Reused, "sft/x") || slices.Contains(sum.Ran, "sft/x") {
		t.Fatalf("second run: %+v, want sft/x reused", sum)
	}
	if _, err := model.Load(ctx, st, job.OutputKey("r2", "sft/x", StudentDir)); err != nil {
		t.Fatalf("reused student: %v", err)
	}
}

func TestSFTBadDatasetLineNamesFile(t *testing.T) {
	base, st := sftTestStore(t)
	bad := "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n{\"messages\": 3}\n"
	_, err := runStages(t, st, testSpec(t, base), fixed{name: "dataset/x", files: map[string]any{DatasetFile: bad}}, NewSFT("x"))
	if err == nil || !strings.Contains(err.Error(), "dataset/x/train.jsonl:2") {
		t.Fatalf("err = %v, want it to name dataset/x/train.jsonl:2", err)
	}
}
