package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
	"github.com/statjob/statjob/train/grpo"
	"github.com/statjob/statjob/train/sft"
)

// reportVersion is bumped when the report's content changes for the same
// inputs.
// v2: the profile's questions judged correct.
// v3: GRPO reward (and KL) curves; the process reward model's verdicts.
const reportVersion = "report v3"

// ReportSummary is the report's machine-readable output: the numbers the
// page shows.
const ReportSummary = "summary.json"

// reportMathDRule is how MATH_D is chosen, as the page states it.
const reportMathDRule = "a MATH test question is in MATH_D when the base student's accuracy over its samples is below 0.5 " +
	"(with one sample: when its pass@1 answer is wrong)"

// reportTopSkills is how many skills of the Missing-Skill-Profile are drawn.
const reportTopSkills = 15

// reportStage writes the run's report: a self-contained HTML page, the same
// in Markdown, and summary.json.
type reportStage struct {
	evals []string // "evaluate/base", "evaluate/<arm>", ...
}

// NewReport returns the report stage over the named evaluate stages. It also
// reads difficulty, diagnose, the sft/<arm> stage of every evaluate/<arm>
// but the base, and the grpo/<arm> stage of every evaluate/grpo/<arm>.
func NewReport(evals ...string) job.Stage { return &reportStage{evals: evals} }

func (r *reportStage) Name() string { return "report" }

func (r *reportStage) Needs() []string {
	needs := append([]string{"difficulty", "diagnose"}, r.evals...)
	return append(append(needs, r.sfts()...), r.grpos()...)
}

// grpos are the GRPO stages of the evaluated arms (grpo/<arm>).
func (r *reportStage) grpos() []string {
	var out []string
	for _, e := range r.evals {
		if a := reportArm(e); strings.HasPrefix(a, GRPOArm("")) {
			out = append(out, a)
		}
	}
	return out
}

// arm is an evaluate stage's arm name ("base", "stat-sel").
func reportArm(eval string) string { return strings.TrimPrefix(eval, "evaluate/") }

// sfts are the training stages of the evaluated arms.
func (r *reportStage) sfts() []string {
	var out []string
	for _, e := range r.evals {
		// An arm after GRPO (grpo/<arm>) was trained by sft/<arm> first.
		if a := strings.TrimPrefix(reportArm(e), GRPOArm("")); a != "base" && !slices.Contains(out, "sft/"+a) {
			out = append(out, "sft/"+a)
		}
	}
	return out
}

// Fingerprint covers the sections the page quotes and the upstream results.
func (r *reportStage) Fingerprint(spec *job.Spec, up map[string]string) (string, error) {
	canon, err := spec.Canonical("student", "teacher", "sft", "pipeline")
	if err != nil {
		return "", err
	}
	return job.Hash(reportVersion, r.evals, canon, up)
}

// The summary's shape (summary.json).
type (
	reportSummary struct {
		RunID      string            `json:"run_id"`
		Settings   reportSettings    `json:"settings"`
		Arms       []string          `json:"arms"`
		Benchmarks []reportBenchmark `json:"benchmarks"`
		MathD      *reportMathD      `json:"math_d,omitempty"`
		// Paired are each arm's differences to the base on MATH, paired by
		// question.
		Paired    []reportPaired           `json:"paired,omitempty"`
		Difficult *reportDifficult         `json:"difficult,omitempty"`
		Profile   *Profile                 `json:"profile,omitempty"`
		Training  []reportTraining         `json:"training,omitempty"`
		Cost      []reportCost             `json:"teacher_cost,omitempty"`
		CostTotal *reportCost              `json:"teacher_cost_total,omitempty"`
		GRPO      []reportGRPO             `json:"grpo,omitempty"`
		PRM       *reportPRM               `json:"prm,omitempty"`
		Notes     []string                 `json:"notes,omitempty"`
		Curves    map[string][]reportPoint `json:"-"` // SFT loss per step, by arm
		// Reward and KL are each GRPO arm's reward_mean and KL per step;
		// KL only for an arm that logged a nonzero kl.
		Reward map[string][]reportPoint `json:"-"`
		KL     map[string][]reportPoint `json:"-"`
	}
	reportSettings struct {
		Student    string   `json:"student"`
		Teacher    string   `json:"teacher"`
		Strategies []string `json:"strategies"`
		Recipe     string   `json:"recipe"`
	}
	reportBenchmark struct {
		Name     string        `json:"name"`
		Problems int           `json:"problems"`
		Arms     []reportScore `json:"arms"`
	}
	reportScore struct {
		Arm      string   `json:"arm"`
		Problems int      `json:"problems"`
		Pass1    float64  `json:"pass@1"`
		Lo       float64  `json:"lo"`
		Hi       float64  `json:"hi"`
		Delta    *float64 `json:"delta_vs_base,omitempty"` // pass@1 minus the base's
	}
	reportMathD struct {
		Rule      string         `json:"rule"`
		Questions int            `json:"questions"` // in MATH_D
		Of        int            `json:"of"`        // MATH test questions the base answered
		Arms      []reportScore  `json:"arms"`
		Paired    []reportPaired `json:"paired,omitempty"`
	}
	reportPaired struct {
		Arm       string  `json:"arm"`
		Benchmark string  `json:"benchmark"`
		Questions int     `json:"questions"`
		Delta     float64 `json:"delta"`
		Lo        float64 `json:"lo"`
		Hi        float64 `json:"hi"`
	}
	reportDifficult struct {
		Questions int            `json:"questions"`
		BySubject map[string]int `json:"by_subject"`
	}
	reportTraining struct {
		Arm          string   `json:"arm"`
		Steps        int      `json:"steps"`
		FirstLoss    *float64 `json:"first_loss,omitempty"`
		FinalLoss    *float64 `json:"final_loss,omitempty"`
		Kept         int      `json:"examples_kept"`
		Dropped      int      `json:"examples_dropped"`
		Truncated    int      `json:"examples_truncated"`
		TokensPerSec *float64 `json:"tokens_per_s,omitempty"`
	}
	reportCost struct {
		Stage        string  `json:"stage"`
		InputTokens  int64   `json:"input_tokens"`
		OutputTokens int64   `json:"output_tokens"`
		USD          float64 `json:"usd"`
	}
	// reportGRPO is one GRPO arm's run (grpo/<arm>'s metrics.jsonl).
	reportGRPO struct {
		Arm            string   `json:"arm"` // grpo/<arm>
		Steps          int      `json:"steps"`
		FirstReward    float64  `json:"first_reward_mean"`
		FinalReward    float64  `json:"final_reward_mean"`
		SignalFraction float64  `json:"mean_signal_fraction"`
		FinalKL        *float64 `json:"final_kl,omitempty"`
	}
	// reportPRM is how the process reward model chose the difficult
	// validation questions (difficulty.method prm).
	reportPRM struct {
		Questions int     `json:"questions"`
		Difficult int     `json:"difficult"` // judged right on fewer than Threshold of their samples
		Threshold float64 `json:"threshold"`
		Tau1      float64 `json:"tau1"`
		Tau2      float64 `json:"tau2"`
		Samples   int     `json:"samples"`
		NotScored int     `json:"samples_not_scored"`
		// Right summarises the per-question fraction of samples judged
		// right.
		Right reportQuantiles `json:"right"`
		// Histogram counts the questions at each fraction judged right,
		// lowest first.
		Histogram []reportPRMBin `json:"histogram"`
	}
	reportQuantiles struct {
		Min    float64 `json:"min"`
		Q25    float64 `json:"q25"`
		Median float64 `json:"median"`
		Q75    float64 `json:"q75"`
		Max    float64 `json:"max"`
		Mean   float64 `json:"mean"`
	}
	reportPRMBin struct {
		Right     float64 `json:"right"`
		Questions int     `json:"questions"`
		Difficult bool    `json:"difficult"`
	}
	reportPoint struct{ Step, Value float64 }
)

func (r *reportStage) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	s, rep, err := r.render(ctx, env)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{ReportHTML, rep.HTML}, {ReportMD, rep.Markdown}, {ReportSummary, rep.Summary}} {
		if err := env.WriteFile(ctx, f.name, f.data); err != nil {
			return nil, err
		}
	}
	m := job.Metrics{"arms": len(s.Arms), "benchmarks": len(s.Benchmarks)}
	if s.MathD != nil {
		m["math_d_questions"] = s.MathD.Questions
	}
	if s.CostTotal != nil {
		m["teacher_usd"] = s.CostTotal.USD
	}
	return m, nil
}

// Report is a rendered report: the page (report.html), the same in
// Markdown (report.md) and summary.json.
type Report struct {
	HTML, Markdown, Summary []byte
}

// render collects the upstream results and renders the three files.
func (r *reportStage) render(ctx context.Context, env reportInputs) (*reportSummary, *Report, error) {
	s, err := r.collect(ctx, env)
	if err != nil {
		return nil, nil, err
	}
	rep := &Report{}
	if rep.HTML, err = reportRenderHTML(s); err != nil {
		return nil, nil, err
	}
	if rep.Markdown, err = reportRenderMD(s); err != nil {
		return nil, nil, err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, nil, fmt.Errorf("encode %s: %w", ReportSummary, err)
	}
	rep.Summary = append(b, '\n')
	return s, rep, nil
}

// RenderReport renders a run's report again from its stage outputs, with
// this build's report code, without running anything: the report stage of
// the run's frozen spec over the run's finished stages. Every stage the
// report reads must be done.
func RenderReport(ctx context.Context, run *FinishedRun) (*Report, error) {
	g, err := Graph(run.Spec())
	if err != nil {
		return nil, err
	}
	r, ok := g.Stage("report").(*reportStage)
	if !ok {
		return nil, fmt.Errorf("run %s: its spec has no report stage", run.RunID())
	}
	var missing []string
	for _, n := range r.Needs() {
		if !run.Done(n) {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("run %s: the report reads stages that are not done: %s (statjob resume %s finishes them)",
			run.RunID(), strings.Join(missing, ", "), run.RunID())
	}
	_, rep, err := r.render(ctx, run)
	return rep, err
}

// reportInputs is where the report reads its upstream results: the running
// stage's *job.Env, or a FinishedRun when statjob report re-renders a run.
type reportInputs interface {
	outputReader
	RunID() string
	Spec() *job.Spec
	Store() storage.Store
	Upstream(stage string) (*job.Manifest, error)
}

// collect reads every upstream result into the summary.
func (r *reportStage) collect(ctx context.Context, env reportInputs) (*reportSummary, error) {
	s := &reportSummary{RunID: env.RunID(), Curves: map[string][]reportPoint{}, Reward: map[string][]reportPoint{},
		KL: map[string][]reportPoint{}}
	r.settings(env.Spec(), s)
	evals := map[string]*Evaluation{}
	for _, e := range r.evals {
		var ev Evaluation
		if err := readJSON(ctx, env, e, EvaluationFile, &ev); err != nil {
			return nil, err
		}
		a := reportArm(e)
		s.Arms = append(s.Arms, a)
		evals[a] = &ev
	}
	reportBenchmarks(s, evals)
	if err := r.mathD(ctx, env, s); err != nil {
		return nil, err
	}
	if err := r.profile(ctx, env, s); err != nil {
		return nil, err
	}
	if err := r.prm(ctx, env, s); err != nil {
		return nil, err
	}
	if err := r.training(ctx, env, s); err != nil {
		return nil, err
	}
	if err := r.grpoRuns(ctx, env, s); err != nil {
		return nil, err
	}
	r.cost(ctx, env, s)
	return s, nil
}

func (r *reportStage) settings(spec *job.Spec, s *reportSummary) {
	st := spec.Section("student").(*StudentConfig)
	tc := spec.Section("teacher").(*teacher.Config)
	tr := spec.Section("sft").(*sft.Config)
	p := spec.Section("pipeline").(*PipelineConfig)
	recipe := fmt.Sprintf("%d epochs, lr %g, batch %d×%d, max_len %d", tr.Epochs, tr.LR, tr.MicroBatch, tr.Accumulation, tr.MaxLen)
	if tr.LoRA.Enabled() {
		recipe = fmt.Sprintf("LoRA r%d α%g, ", tr.LoRA.Rank, tr.LoRA.Alpha) + recipe
	} else {
		recipe = "full fine-tuning, " + recipe
	}
	s.Settings = reportSettings{Student: st.Model, Teacher: tc.Model + " (" + tc.Provider + ")",
		Strategies: append([]string(nil), p.Strategies...), Recipe: recipe}
}

// reportBenchmarks fills the benchmark × arm table: MATH first, then by name.
func reportBenchmarks(s *reportSummary, evals map[string]*Evaluation) {
	names := map[string]bool{}
	for _, ev := range evals {
		for b := range ev.Benchmarks {
			names[b] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for b := range names {
		sorted = append(sorted, b)
	}
	sort.Slice(sorted, func(i, j int) bool {
		if (sorted[i] == problems.MATH) != (sorted[j] == problems.MATH) {
			return sorted[i] == problems.MATH
		}
		return sorted[i] < sorted[j]
	})
	for _, b := range sorted {
		rb := reportBenchmark{Name: b}
		base, hasBase := evals["base"].benchmark(b)
		for _, a := range s.Arms {
			res, ok := evals[a].benchmark(b)
			if !ok {
				continue
			}
			sc := reportScore{Arm: a, Problems: res.Problems, Pass1: res.Pass1, Lo: res.Interval.Lo, Hi: res.Interval.Hi}
			if hasBase && a != "base" {
				d := res.Pass1 - base.Pass1
				sc.Delta = &d
			}
			rb.Problems = max(rb.Problems, res.Problems)
			rb.Arms = append(rb.Arms, sc)
		}
		s.Benchmarks = append(s.Benchmarks, rb)
	}
}

func (e *Evaluation) benchmark(name string) (BenchmarkResult, bool) {
	if e == nil {
		return BenchmarkResult{}, false
	}
	b, ok := e.Benchmarks[name]
	return b, ok
}

// reportHas reports whether upstream stage wrote output name.
func reportHas(env reportInputs, stage, name string) bool {
	m, err := env.Upstream(stage)
	if err != nil {
		return false
	}
	_, ok := m.Output(name)
	return ok
}

// mathD finds the MATH test questions the base student finds difficult and
// scores every arm on them; it also compares each arm with the base on
// the whole MATH test, question by question.
func (r *reportStage) mathD(ctx context.Context, env reportInputs, s *reportSummary) error {
	file := problems.MATH + ".jsonl"
	if !slices.Contains(r.evals, "evaluate/base") || !reportHas(env, "evaluate/base", file) {
		s.Notes = append(s.Notes, "MATH_D and the paired comparison need evaluate/base's "+file+": not available.")
		return nil
	}
	rows := map[string]map[string]bool{} // arm → question → pass@1 correct
	var order []string                   // the base's questions, in its order
	var hard []string
	for _, e := range r.evals {
		a := reportArm(e)
		if !reportHas(env, e, file) {
			s.Notes = append(s.Notes, fmt.Sprintf("%s wrote no %s: left out of MATH_D and the paired comparison.", e, file))
			continue
		}
		resp, err := readRows[Response](ctx, env, e, file)
		if err != nil {
			return err
		}
		rows[a] = map[string]bool{}
		for _, q := range resp {
			if len(q.Samples) == 0 {
				return fmt.Errorf("%s/%s: question %s has no samples", e, file, q.ID)
			}
			rows[a][q.ID] = q.Samples[0].Correct
			if a != "base" {
				continue
			}
			order = append(order, q.ID)
			correct := 0
			for _, sm := range q.Samples {
				if sm.Correct {
					correct++
				}
			}
			if float64(correct)/float64(len(q.Samples)) < 0.5 {
				hard = append(hard, q.ID)
			}
		}
	}
	boot := mathgrade.DefaultBootstrapConfig()
	d := &reportMathD{Rule: reportMathDRule, Questions: len(hard), Of: len(order)}
	paired := func(a, bench string, ids []string) (*reportPaired, error) {
		var x, y []float64
		for _, id := range ids {
			v, ok := rows[a][id]
			if !ok {
				continue
			}
			x, y = append(x, reportOne(rows["base"][id])), append(y, reportOne(v))
		}
		if len(x) == 0 {
			return nil, nil
		}
		delta, iv, err := mathgrade.PairedBootstrap(x, y, boot)
		if err != nil {
			return nil, fmt.Errorf("paired bootstrap of %s vs base on %s: %w", a, bench, err)
		}
		return &reportPaired{Arm: a, Benchmark: bench, Questions: len(x), Delta: delta, Lo: iv.Lo, Hi: iv.Hi}, nil
	}
	for _, a := range s.Arms {
		if rows[a] == nil {
			continue
		}
		var scores []float64
		for _, id := range hard {
			if v, ok := rows[a][id]; ok {
				scores = append(scores, reportOne(v))
			}
		}
		if len(scores) > 0 {
			mean, iv, err := mathgrade.Bootstrap(scores, boot)
			if err != nil {
				return fmt.Errorf("bootstrap of %s on MATH_D: %w", a, err)
			}
			d.Arms = append(d.Arms, reportScore{Arm: a, Problems: len(scores), Pass1: mean, Lo: iv.Lo, Hi: iv.Hi})
		}
		if a == "base" {
			continue
		}
		for _, c := range []struct {
			bench string
			ids   []string
			into  *[]reportPaired
		}{{"MATH_D", hard, &d.Paired}, {problems.MATH, order, &s.Paired}} {
			p, err := paired(a, c.bench, c.ids)
			if err != nil {
				return err
			}
			if p != nil {
				*c.into = append(*c.into, *p)
			}
		}
	}
	if len(d.Arms) > 0 && d.Arms[0].Arm == "base" {
		for i := range d.Arms[1:] {
			delta := d.Arms[i+1].Pass1 - d.Arms[0].Pass1
			d.Arms[i+1].Delta = &delta
		}
	}
	s.MathD = d
	return nil
}

func reportOne(ok bool) float64 {
	if ok {
		return 1
	}
	return 0
}

// profile reads the Missing-Skill-Profile and the difficult validation
// questions.
func (r *reportStage) profile(ctx context.Context, env reportInputs, s *reportSummary) error {
	if reportHas(env, "diagnose", ProfileFile) {
		var p Profile
		if err := readJSON(ctx, env, "diagnose", ProfileFile, &p); err != nil {
			return err
		}
		sort.SliceStable(p.Skills, func(i, j int) bool {
			a, b := p.Skills[i], p.Skills[j]
			if a.Count != b.Count {
				return a.Count > b.Count
			}
			if a.Subject != b.Subject {
				return a.Subject < b.Subject
			}
			return a.Skill < b.Skill
		})
		s.Profile = &p
	} else {
		s.Notes = append(s.Notes, "diagnose wrote no "+ProfileFile+": no Missing-Skill-Profile.")
	}
	if reportHas(env, "difficulty", DifficultFile) {
		rows, err := readRows[Difficult](ctx, env, "difficulty", DifficultFile)
		if err != nil {
			return err
		}
		d := &reportDifficult{Questions: len(rows), BySubject: map[string]int{}}
		for _, q := range rows {
			subj := q.Subject
			if subj == "" {
				subj = "(none)"
			}
			d.BySubject[subj]++
		}
		s.Difficult = d
	}
	return nil
}

// training reads each arm's training metrics: the manifest's totals and the
// per-step loss curve.
func (r *reportStage) training(ctx context.Context, env reportInputs, s *reportSummary) error {
	for _, st := range r.sfts() {
		arm := strings.TrimPrefix(st, "sft/")
		man, err := env.Upstream(st)
		if err != nil {
			return err
		}
		// The manifest's metrics carry the same keys as reportTraining.
		t := reportTraining{Arm: arm}
		if err := reportMetrics(man.Metrics, &t); err != nil {
			return fmt.Errorf("metrics of %s: %w", st, err)
		}
		t.Arm = arm
		if reportHas(env, st, MetricsFile) {
			steps, err := readRows[sft.Metric](ctx, env, st, MetricsFile)
			if err != nil {
				return err
			}
			for _, p := range steps {
				s.Curves[arm] = append(s.Curves[arm], reportPoint{Step: float64(p.Step), Value: p.Loss})
			}
		}
		if c := s.Curves[arm]; len(c) > 0 {
			// A stage that wrote its steps but not the totals.
			if t.Steps == 0 {
				t.Steps = int(c[len(c)-1].Step)
			}
			if t.FirstLoss == nil {
				t.FirstLoss = &c[0].Value
			}
			if t.FinalLoss == nil {
				t.FinalLoss = &c[len(c)-1].Value
			}
		}
		if t.Steps == 0 {
			s.Notes = append(s.Notes, st+" recorded no training metrics.")
			continue
		}
		s.Training = append(s.Training, t)
	}
	return nil
}

// grpoRuns reads each GRPO arm's per-step metrics: the reward curve, and the
// KL curve of an arm that logged a nonzero kl.
func (r *reportStage) grpoRuns(ctx context.Context, env reportInputs, s *reportSummary) error {
	for _, st := range r.grpos() {
		var steps []grpo.Metric
		if reportHas(env, st, MetricsFile) {
			var err error
			if steps, err = readRows[grpo.Metric](ctx, env, st, MetricsFile); err != nil {
				return err
			}
		}
		if len(steps) == 0 {
			s.Notes = append(s.Notes, st+" recorded no GRPO steps.")
			continue
		}
		g := reportGRPO{Arm: st, Steps: steps[len(steps)-1].Step, FirstReward: steps[0].RewardMean, FinalReward: steps[len(steps)-1].RewardMean}
		var kl []reportPoint
		hasKL := false
		for _, p := range steps {
			s.Reward[st] = append(s.Reward[st], reportPoint{Step: float64(p.Step), Value: p.RewardMean})
			kl = append(kl, reportPoint{Step: float64(p.Step), Value: p.KL})
			g.SignalFraction += p.SignalFraction / float64(len(steps))
			hasKL = hasKL || p.KL != 0
		}
		if hasKL {
			s.KL[st] = kl
			g.FinalKL = &kl[len(kl)-1].Value
		}
		s.GRPO = append(s.GRPO, g)
	}
	return nil
}

// prm summarises the process reward model's verdicts on the validation
// questions when difficulty used the prm method.
func (r *reportStage) prm(ctx context.Context, env reportInputs, s *reportSummary) error {
	c := env.Spec().Section("difficulty").(*DifficultyConfig)
	if c.Method != ByPRM {
		return nil
	}
	if !reportHas(env, "difficulty", PRMScoresFile) {
		s.Notes = append(s.Notes, "difficulty used the prm method but wrote no "+PRMScoresFile+": no PRM summary.")
		return nil
	}
	rows, err := readRows[PRMScored](ctx, env, "difficulty", PRMScoresFile)
	if err != nil {
		return err
	}
	p := &reportPRM{Questions: len(rows), Threshold: c.Threshold, Tau1: c.PRM.Tau1, Tau2: c.PRM.Tau2, Histogram: []reportPRMBin{}}
	right := make([]float64, len(rows))
	bins := map[float64]int{}
	for i, q := range rows {
		right[i] = q.Right
		bins[q.Right]++
		if q.Right < c.Threshold {
			p.Difficult++
		}
		for _, sm := range q.Samples {
			p.Samples++
			if !sm.Scored {
				p.NotScored++
			}
		}
	}
	p.Right = reportQuantilesOf(right)
	for v, n := range bins {
		p.Histogram = append(p.Histogram, reportPRMBin{Right: v, Questions: n, Difficult: v < c.Threshold})
	}
	sort.Slice(p.Histogram, func(i, j int) bool { return p.Histogram[i].Right < p.Histogram[j].Right })
	s.PRM = p
	return nil
}

// reportQuantilesOf summarises xs (quantiles interpolated between order
// statistics, as numpy's default); zeros when xs is empty.
func reportQuantilesOf(xs []float64) reportQuantiles {
	if len(xs) == 0 {
		return reportQuantiles{}
	}
	x := slices.Clone(xs)
	slices.Sort(x)
	q := func(p float64) float64 {
		h := p * float64(len(x)-1)
		lo := int(math.Floor(h))
		if lo+1 >= len(x) {
			return x[len(x)-1]
		}
		return x[lo] + (h-float64(lo))*(x[lo+1]-x[lo])
	}
	mean := 0.0
	for _, v := range x {
		mean += v / float64(len(x))
	}
	return reportQuantiles{Min: x[0], Q25: q(0.25), Median: q(0.5), Q75: q(0.75), Max: x[len(x)-1], Mean: mean}
}

// reportMetrics decodes manifest metrics (as written, or as a manifest
// read back from JSON) into v.
func reportMetrics(m job.Metrics, v any) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// cost sums the teacher usage the pipeline's stages recorded under the
// metrics key "teacher" (a teacher.Stats).
func (r *reportStage) cost(ctx context.Context, env reportInputs, s *reportSummary) {
	names := map[string]bool{"skills": true, "label": true}
	for _, n := range r.Needs() {
		names[n] = true
	}
	for _, a := range s.Arms {
		if a != "base" {
			names["dataset/"+a] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	total := reportCost{Stage: "total"}
	for _, n := range sorted {
		man, err := env.Upstream(n)
		if err != nil {
			// Not a need: an earlier stage of the pipeline, read from the
			// run's folder when it is there.
			if man, err = job.ReadManifest(ctx, env.Store(), env.RunID(), n); err != nil {
				if !errors.Is(err, storage.ErrNotExist) {
					s.Notes = append(s.Notes, fmt.Sprintf("teacher cost of %s unknown: %v", n, err))
				}
				continue
			}
		}
		var m struct {
			Teacher *teacher.Stats `json:"teacher"`
		}
		if err := reportMetrics(man.Metrics, &m); err != nil || m.Teacher == nil {
			continue
		}
		c := reportCost{Stage: n, InputTokens: m.Teacher.InputTokens, OutputTokens: m.Teacher.OutputTokens, USD: m.Teacher.Budget.SpentUSD}
		s.Cost = append(s.Cost, c)
		total.InputTokens += c.InputTokens
		total.OutputTokens += c.OutputTokens
		total.USD += c.USD
	}
	if len(s.Cost) > 0 {
		s.CostTotal = &total
	}
}
