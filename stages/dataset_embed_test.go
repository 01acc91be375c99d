package stages

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/statjob/statjob/internal/torchref"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher/teachertest"
)

// esVectors plants the embeddings of dsTrain's questions and two difficult
// questions. Cosine similarity, not the dot product, decides: "Alg four?"
// is long and would win "Hard geo?" by dot product.
var esVectors = map[string][]float32{
	"Alg one?":   {1, 0, 0},
	"Alg two?":   {0.9, 0.1, 0},
	"Alg three?": {0, 1, 0},
	"Alg four?":  {0, 3, 3},
	"Geo one?":   {0, 0, 1},
	"Geo two?":   {0, 0.1, 5},
	"Pre one?":   {-1, 0, 0},
	"Hard alg?":  {1, 0.2, 0},
	"Hard geo?":  {0, 0.1, 1},
}

// esNearest are the planted 2 nearest, nearest first.
var esNearest = map[string][]string{
	"test/algebra/7.json":  {"Alg two?", "Alg one?"},
	"test/geometry/8.json": {"Geo two?", "Geo one?"},
}

// esHard are difficulty's rows (one listed twice).
var esHard = []Difficult{
	{Response: Response{Problem: problems.Problem{ID: "test/geometry/8.json", Question: "Hard geo?", Subject: "geometry"}}},
	{Response: Response{Problem: problems.Problem{ID: "test/algebra/7.json", Question: "Hard alg?", Subject: "algebra"}}},
	{Response: Response{Problem: problems.Problem{ID: "test/algebra/7.json", Question: "Hard alg?", Subject: "algebra"}}},
}

// esUpstream fakes label and difficulty.
func esUpstream(train []problems.Problem, hard []Difficult) []job.Stage {
	return []job.Stage{fixed{name: "label", files: map[string]any{LabelledFile: train}},
		fixed{name: "difficulty", files: map[string]any{DifficultFile: hard}}}
}

// esEmbedServer answers with the planted vectors.
func esEmbedServer(t *testing.T) *teachertest.EmbedServer {
	srv := teachertest.NewEmbed(t)
	srv.Vector = func(text string) []float32 {
		v, ok := esVectors[text]
		if !ok {
			t.Errorf("embedded an unexpected text %q", text)
			return []float32{0, 0, 0}
		}
		return v
	}
	return srv
}

// esSpec is a dataset spec whose teacher is srv and embedder emb
// (OpenAI's wire format), 2 neighbours.
func esSpec(t *testing.T, srv *teachertest.Server, emb *teachertest.EmbedServer, sets ...string) *job.Spec {
	base := []string{"dataset.embed.k=2", "dataset.embed.provider=openai", "dataset.embed.model=embed-model",
		"dataset.embed.base_url=" + emb.URL + "/v1", "dataset.embed.retry.base_delay=1ms", "dataset.embed.retry.max_delay=2ms"}
	return dsSpec(t, srv, append(base, sets...)...)
}

func TestDatasetEmbedSelPlantedNeighbours(t *testing.T) {
	srv, emb := selTeacher(t), esEmbedServer(t)
	st := dsStore(t)
	spec := esSpec(t, srv, emb, "dataset.embed.batch_size=4")
	if err := dsRun(t, st, spec, job.Options{}, append(esUpstream(dsTrain, esHard), NewDataset("embed-sel"))...); err != nil {
		t.Fatal(err)
	}
	raw1, exs, m := dsOutput(t, st, "r1", "dataset/embed-sel")
	byQ := map[string]problems.Problem{}
	for _, p := range dsTrain {
		byQ[p.Question] = p
	}
	got := map[string][]string{}
	for _, ex := range exs {
		q := question(t, ex)
		p := byQ[q]
		if ex.Source != p.ID || ex.Subject != p.Subject || ex.Skill != "" {
			t.Errorf("example %+v does not match its training question %s", ex, p.ID)
		}
		if !strings.Contains(ex.Messages[1].Content, `\boxed{`+p.Answer+`}`) {
			t.Errorf("kept a wrong answer: %q", ex.Messages[1].Content)
		}
		if !slices.Contains(got[ex.For], q) {
			got[ex.For] = append(got[ex.For], q)
		}
	}
	for id, want := range esNearest {
		g := slices.Clone(got[id])
		slices.Sort(g)
		w := slices.Clone(want)
		slices.Sort(w)
		if !slices.Equal(g, w) {
			t.Errorf("%s: neighbours %v, want %v", id, got[id], want)
		}
	}
	// Answers as STAT-Sel gives them: 3 per question, the right ones kept
	// ("Alg one?" always right, the others in sample 0 only).
	for name, want := range map[string]int{"difficult": 2, "picks": 4, "questions": 4, "embedded": 9,
		"embed_cache_hits": 0, "solutions_requested": 12, "examples": 6} {
		if g := metric(t, m, name); g != want {
			t.Errorf("metric %s = %d, want %d", name, g, want)
		}
	}
	if m["embedder"] != "openai:embed-model:0" {
		t.Errorf("embedder metric %v", m["embedder"])
	}
	for _, r := range emb.Requests() {
		if len(r.Texts) > 4 {
			t.Errorf("a request of %d texts, batch_size is 4", len(r.Texts))
		}
	}

	// A new run of the same spec takes every vector and answer from the
	// caches and writes the same set.
	calls, texts := srv.Calls(), emb.Texts()
	if err := dsRun(t, st, spec, job.Options{RunID: "r2", From: "dataset/embed-sel"}, append(esUpstream(dsTrain, esHard), NewDataset("embed-sel"))...); err != nil {
		t.Fatal(err)
	}
	raw2, _, m2 := dsOutput(t, st, "r2", "dataset/embed-sel")
	if srv.Calls() != calls || emb.Texts() != texts || metric(t, m2, "embed_cache_hits") != 9 {
		t.Errorf("rerun: %d teacher calls, %d texts embedded, %d cache hits; want 0, 0, 9",
			srv.Calls()-calls, emb.Texts()-texts, metric(t, m2, "embed_cache_hits"))
	}
	if !bytes.Equal(raw1, raw2) {
		t.Error("the rerun wrote another training set")
	}
}

// embedNearest against a brute-force float64 ranking on random vectors
// with planted ties.
func TestEmbedNearestBruteForce(t *testing.T) {
	rnd := func(i, d int) float32 { return float32(math.Sin(float64(i*7919+d*104729)) * 3) }
	var cands, queries [][]float32
	for i := range 200 {
		v := make([]float32, 16)
		for d := range v {
			v[d] = rnd(i, d)
		}
		cands = append(cands, v)
	}
	cands[150] = slices.Clone(cands[20]) // a tie: the lower index ranks first
	cands[151] = make([]float32, 16)     // a zero vector
	for i := range 30 {
		v := make([]float32, 16)
		for d := range v {
			v[d] = rnd(1000+i, d)
		}
		queries = append(queries, v)
	}
	queries[3] = slices.Clone(cands[20])
	got := embedNearest(queries, cands, 7)
	for i, q := range queries {
		type s struct {
			sim float64
			j   int
		}
		var all []s
		for j, c := range cands {
			var dot, nq, nc float64
			for d := range q {
				dot += float64(q[d]) * float64(c[d])
				nq += float64(q[d]) * float64(q[d])
				nc += float64(c[d]) * float64(c[d])
			}
			sim := 0.0
			if nc > 0 {
				sim = dot / math.Sqrt(nq*nc)
			}
			all = append(all, s{sim, j})
		}
		slices.SortStableFunc(all, func(a, b s) int {
			if math.Abs(a.sim-b.sim) < 1e-6 {
				return a.j - b.j
			}
			if a.sim > b.sim {
				return -1
			}
			return 1
		})
		var want []int
		for _, x := range all[:7] {
			want = append(want, x.j)
		}
		if !slices.Equal(got[i], want) {
			t.Errorf("query %d: nearest %v, want %v", i, got[i], want)
		}
	}
	if got[3][0] != 20 || got[3][1] != 150 {
		t.Errorf("tie: %v, want 20 then 150", got[3][:2])
	}
	if n := embedNearest(queries[:1], cands[:3], 5); len(n[0]) != 3 {
		t.Errorf("k above the candidates: %v", n)
	}
}

// The draw is seeded: the same at any concurrency of the embedder and the
// teacher, and another seed draws another set.
func TestDatasetEmbedSelDrawIsSeededAndIndependentOfConcurrency(t *testing.T) {
	run := func(sets ...string) ([]byte, int) {
		st := dsStore(t)
		srv, emb := selTeacher(t), esEmbedServer(t)
		if err := dsRun(t, st, esSpec(t, srv, emb, sets...), job.Options{}, append(esUpstream(dsTrain, esHard), NewDataset("embed-sel"))...); err != nil {
			t.Fatal(err)
		}
		raw, exs, _ := dsOutput(t, st, "r1", "dataset/embed-sel")
		return raw, len(exs)
	}
	a, n := run("dataset.size=4", "dataset.embed.batch_size=1", "dataset.embed.concurrency=1", "teacher.limits.concurrency=1")
	if n != 4 {
		t.Fatalf("size 4 drew %d", n)
	}
	b, _ := run("dataset.size=4", "dataset.embed.batch_size=2", "dataset.embed.concurrency=8", "teacher.limits.concurrency=16")
	if !bytes.Equal(a, b) {
		t.Error("the draw depends on batching or concurrency")
	}
	if c, _ := run("dataset.size=4", "dataset.seed=5"); bytes.Equal(a, c) {
		t.Error("another seed drew the same set")
	}
}

// A bad embed block is refused before any stage runs; a missing key fails
// the stage before the teacher is asked anything.
func TestDatasetEmbedSelRefusesBadConfig(t *testing.T) {
	for set, field := range map[string]string{
		"dataset.embed.k=0": "embed.k:", "dataset.embed.provider=cohere": "embed.provider:",
		`dataset.embed.model=""`: "embed.model:", "dataset.embed.base_url=localhost": "embed.base_url:",
		"dataset.embed.api_key_env=sk-abc": "embed.api_key_env:", "dataset.embed.batch_size=0": "embed.batch_size:",
		"dataset.embed.concurrency=0": "embed.concurrency:", "dataset.embed.retry.attempts=0": "embed.retry.attempts:",
	} {
		srv, emb := selTeacher(t), esEmbedServer(t)
		st := dsStore(t)
		err := dsRun(t, st, esSpec(t, srv, emb, set), job.Options{}, append(esUpstream(dsTrain, esHard), NewDataset("embed-sel"))...)
		if err == nil || !strings.Contains(err.Error(), "dataset."+field) {
			t.Errorf("%s: %v", set, err)
		}
		if srv.Calls() != 0 || len(emb.Requests()) != 0 {
			t.Errorf("%s: calls were made", set)
		}
		if _, err := job.ReadManifest(context.Background(), st, "r1", "label"); err == nil {
			t.Errorf("%s: a stage ran", set)
		}
	}
	for set, field := range map[string]string{
		"dataset.embed.pooling=max": "embed.pooling:", "dataset.embed.max_tokens=0": "embed.max_tokens:",
		"dataset.embed.batch_size=0": "embed.batch_size:",
	} {
		spec := dsSpec(t, nil, set)
		if err := spec.Validate(); err == nil || !strings.Contains(err.Error(), "dataset."+field) {
			t.Errorf("local %s: %v", set, err)
		}
	}

	srv, emb := selTeacher(t), esEmbedServer(t)
	t.Setenv("STATJOB_TEST_EMBED_UNSET", "")
	err := dsRun(t, dsStore(t), esSpec(t, srv, emb, "dataset.embed.api_key_env=STATJOB_TEST_EMBED_UNSET"), job.Options{},
		append(esUpstream(dsTrain, esHard), NewDataset("embed-sel"))...)
	if err == nil || !strings.Contains(err.Error(), "dataset.embed: api_key_env STATJOB_TEST_EMBED_UNSET") || srv.Calls() != 0 {
		t.Errorf("missing key: %v (teacher calls %d)", err, srv.Calls())
	}
}

// The local embedder on the tiny student: the default embed block runs
// offline, and its neighbours are those of its own vectors.
func TestDatasetEmbedSelLocal(t *testing.T) {
	dir := writeTinyStudent(t, t.TempDir())
	srv := selTeacher(t)
	st := dsStore(t)
	spec := testSpec(t, dir, "teacher.provider=openai", "teacher.model=gpt-4o-mini", "teacher.base_url="+srv.URL+"/v1",
		"teacher.retry.reasks=0", "teacher.retry.base_delay=1ms", "teacher.retry.max_delay=2ms",
		"dataset.embed.k=3", "dataset.embed.batch_size=4")
	if err := dsRun(t, st, spec, job.Options{}, append(esUpstream(dsTrain, esHard), NewDataset("embed-sel"))...); err != nil {
		t.Fatal(err)
	}
	_, exs, m := dsOutput(t, st, "r1", "dataset/embed-sel")
	e, err := newLocalEmbedder(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	var texts []string
	for _, p := range dsTrain {
		texts = append(texts, p.Question)
	}
	vecs, err := e.Embed(context.Background(), append(texts, "Hard alg?", "Hard geo?"))
	if err != nil {
		t.Fatal(err)
	}
	near := embedNearest(vecs[len(texts):], vecs[:len(texts)], 3)
	for i, id := range []string{"test/algebra/7.json", "test/geometry/8.json"} {
		var want, got []string
		for _, j := range near[i] {
			want = append(want, dsTrain[j].ID)
		}
		for _, ex := range exs {
			if ex.For == id && !slices.Contains(got, ex.Source) {
				got = append(got, ex.Source)
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: sources %v, want the local embedder's 3 nearest %v", id, got, want)
		}
	}
	if id, _ := m["embedder"].(string); !strings.HasPrefix(id, "local:") || !strings.HasSuffix(id, ":mean:512") || metric(t, m, "embedded") != 9 {
		t.Errorf("embedder %v, embedded %v", m["embedder"], m["embedded"])
	}
}

// The fingerprint follows the embedder and k, and not the endpoint's
// batching or concurrency.
func TestDatasetEmbedSelFingerprint(t *testing.T) {
	dir := writeTinyStudent(t, t.TempDir())
	up := map[string]string{"label": "L", "difficulty": "D"}
	fp := func(sets ...string) string {
		t.Helper()
		s, err := NewDataset("embed-sel").Fingerprint(testSpec(t, dir, sets...), up)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	api := []string{"dataset.embed.provider=openai"}
	base, baseAPI := fp(), fp(api...)
	for _, c := range []struct {
		sets    []string
		changes bool
	}{
		{[]string{"dataset.embed.k=3"}, true},
		{[]string{"dataset.embed.pooling=last"}, true},
		{[]string{"dataset.embed.max_tokens=64"}, true},
		{[]string{"dataset.sel.answers=2"}, true},
		{[]string{"dataset.seed=2"}, true},
		{[]string{"teacher.model=gpt-4o"}, true},
		{[]string{"dataset.embed.batch_size=3"}, false},
		{[]string{"dataset.sel.per_pair=2"}, false},
		{[]string{"dataset.embed.model=" + dir}, false}, // the student, named
		{append(api, "dataset.embed.model=text-embedding-3-large"), true},
		{append(api, "dataset.embed.dimensions=256"), true},
		{append(api, "dataset.embed.concurrency=9"), false},
		{append(api, "dataset.embed.base_url=http://localhost:8000/v1"), false},
	} {
		want := base
		if c.sets[0] == api[0] {
			want = baseAPI
		}
		if changed := fp(c.sets...) != want; changed != c.changes {
			t.Errorf("%v: fingerprint changed %v", c.sets, changed)
		}
	}
	if base == baseAPI {
		t.Error("the fingerprint ignores the embedder")
	}
	// Other weights in the local model's directory are another embedder.
	other := writeTinyStudentSeed(t, t.TempDir(), 2)
	if fp("dataset.embed.model="+other) == base {
		t.Error("the fingerprint ignores the local model's weights")
	}
}

// writeTinyStudentSeed is writeTinyStudent with other random weights.
func writeTinyStudentSeed(t *testing.T, dir string, seed int) string {
	t.Helper()
	writeTinyStudent(t, dir)
	// Rewrite the weights file with one byte changed: another checksum.
	f := filepath.Join(dir, "model.safetensors")
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= byte(seed)
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The local embedder (batched, padded, sorted by length, cut at
// max_tokens) against PyTorch's hidden states of each text alone.
func TestEmbedLocalMatchesPyTorch(t *testing.T) {
	py := torchref.Python(t)
	dir := writeTinyStudent(t, t.TempDir())
	texts := []string{"What is 2 + 3?", "x", "Find all real x with x^2 - 5x + 6 = 0, then add them.",
		"A much longer question about triangles, circles and the many angles between them, cut short.", "Sum 1..10?"}
	got := map[string][][]float32{}
	var prompts [][]int
	for _, pooling := range []string{"mean", "last"} {
		spec := testSpec(t, dir, "dataset.embed.batch_size=2", "dataset.embed.max_tokens=20", "dataset.embed.pooling="+pooling)
		e, err := newLocalEmbedder(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		defer e.close()
		if got[pooling], err = e.Embed(context.Background(), texts); err != nil {
			t.Fatal(err)
		}
		prompts = prompts[:0]
		cut := false
		for _, text := range texts {
			ids := e.tok.Encode(text)
			cut = cut || len(ids) > 20
			prompts = append(prompts, ids[:min(len(ids), 20)])
		}
		if !cut {
			t.Fatal("no text is longer than max_tokens: the test does not cover the cut")
		}
	}
	req, _ := json.Marshal(map[string]any{"prompts": prompts})
	work := t.TempDir()
	reqPath, outPath := filepath.Join(work, "req.json"), filepath.Join(work, "out.json")
	if err := os.WriteFile(reqPath, req, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(py, "testdata/embed_reference.py", dir, reqPath, outPath).CombinedOutput(); err != nil {
		t.Fatalf("embed_reference.py: %v\n%s", err, out)
	}
	var ref map[string][][]float64
	b, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	for pooling, vecs := range got {
		var maxDiff float64
		for i := range texts {
			if len(vecs[i]) != len(ref[pooling][i]) {
				t.Fatalf("%s, text %d: %d dimensions, reference %d", pooling, i, len(vecs[i]), len(ref[pooling][i]))
			}
			for d, want := range ref[pooling][i] {
				maxDiff = max(maxDiff, math.Abs(float64(vecs[i][d])-want))
			}
		}
		t.Logf("%s pooling: max |difference| from PyTorch %.2e", pooling, maxDiff)
		if maxDiff > 1e-4 {
			t.Errorf("%s pooling differs from PyTorch by %.2e", pooling, maxDiff)
		}
	}
}

// BenchmarkEmbedLocal measures the local embedder on the tiny student over
// 256 MATH training questions (batch 16, mean pooling), reading at most
// 128 and 512 tokens of each (the tiny tokenizer is nearly byte-level:
// median 88 tokens, a quarter over 146).
func BenchmarkEmbedLocal(b *testing.B) {
	dir := writeTinyStudent(b, b.TempDir())
	train, err := problems.LoadMATH("../data/math/train.jsonl")
	if err != nil {
		b.Fatal(err)
	}
	var texts []string
	for _, p := range train[:256] {
		texts = append(texts, p.Question)
	}
	for _, maxTokens := range []int{128, 512} {
		b.Run(fmt.Sprintf("max_tokens=%d", maxTokens), func(b *testing.B) {
			e, err := newLocalEmbedder(context.Background(), testSpec(b, dir, fmt.Sprintf("dataset.embed.max_tokens=%d", maxTokens)))
			if err != nil {
				b.Fatal(err)
			}
			defer e.close()
			if _, err := e.Embed(context.Background(), texts); err != nil { // compile the graphs
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := e.Embed(context.Background(), texts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(texts))/b.Elapsed().Seconds(), "embeddings/s")
		})
	}
}
