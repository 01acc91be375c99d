package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/statjob/statjob/stages"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
)

// errRegression is compare's answer when --fail-below finds an arm that got
// worse: the nightly gate.
var errRegression = errors.New("regression")

// exitRegression is statjob's exit status for errRegression, apart from
// the 1 of a command that could not do its work.
const exitRegression = 3

// The comparison of two runs, as compare --format json prints it.
type (
	comparison struct {
		A       compareRun   `json:"a"`
		B       compareRun   `json:"b"`
		Rows    []compareRow `json:"rows"`
		OnlyInA []string     `json:"only_in_a,omitempty"` // "arm X", "benchmark Y"
		OnlyInB []string     `json:"only_in_b,omitempty"`
		Notes   []string     `json:"notes,omitempty"`
		// FailBelow is the --fail-below margin; Regressions the rows whose
		// paired interval lies entirely below -FailBelow.
		FailBelow   *float64 `json:"fail_below,omitempty"`
		Regressions []string `json:"regressions,omitempty"`
	}
	compareRun struct {
		ID      string   `json:"id"`
		Student string   `json:"student"`
		Teacher string   `json:"teacher"`
		Arms    []string `json:"arms"`
		// TeacherUSD is the teacher cost the run's report recorded.
		TeacherUSD *float64 `json:"teacher_usd,omitempty"`
	}
	// compareRow is one benchmark × arm; A or B is nil when only one run
	// has it.
	compareRow struct {
		Benchmark string        `json:"benchmark"`
		Arm       string        `json:"arm"`
		A         *compareScore `json:"a,omitempty"`
		B         *compareScore `json:"b,omitempty"`
		Delta     *float64      `json:"delta,omitempty"` // B's pass@1 minus A's
		// Paired is the delta's bootstrap interval over the questions both
		// runs answered; Unpaired says why there is none.
		Paired     *comparePaired `json:"paired,omitempty"`
		Unpaired   string         `json:"unpaired,omitempty"`
		Regression bool           `json:"regression,omitempty"`
	}
	compareScore struct {
		Problems int     `json:"problems"`
		Pass1    float64 `json:"pass@1"`
		Lo       float64 `json:"lo"` // bootstrap 95% interval of pass@1
		Hi       float64 `json:"hi"`
	}
	comparePaired struct {
		Questions int     `json:"questions"`
		Delta     float64 `json:"delta"`
		Lo        float64 `json:"lo"`
		Hi        float64 `json:"hi"`
	}
)

func newCompareCmd() *cobra.Command {
	var f rootFlag
	var format string
	var failBelow float64
	cmd := &cobra.Command{
		Use:   "compare RUN_A RUN_B",
		Short: "Compare two runs' accuracies per benchmark and arm, with paired intervals",
		Long: `Compare the evaluations of two runs under one storage root: for every
benchmark × arm, pass@1 of run A and run B, the difference B − A, and, where
both runs answered the same questions, a paired bootstrap 95% interval of
that difference (resampling questions, so that what both runs get right or
wrong alike does not widen it). Arms and benchmarks that only one run has
are listed as such. The runs may use different specs and base models.

--fail-below X is the nightly regression gate: statjob exits with status 3
when some benchmark × arm's paired interval lies entirely below -X (X is a
fraction: 0.02 is 2 percentage points).`,
		Example: `  statjob compare nightly-41 nightly-42 --root gs://my-bucket/statjob
  statjob compare nightly-41 nightly-42 --format markdown >> "$GITHUB_STEP_SUMMARY"
  statjob compare nightly-41 nightly-42 --fail-below 0.02 || echo "accuracy dropped"`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var fb *float64
			if cmd.Flags().Changed("fail-below") {
				if failBelow < 0 || failBelow >= 1 || math.IsNaN(failBelow) {
					return fmt.Errorf("--fail-below %g: want a fraction from 0 to 1 (0.02 is 2 percentage points)", failBelow)
				}
				fb = &failBelow
			}
			switch format {
			case "text", "markdown", "json":
			default:
				return fmt.Errorf("--format %q: want text, markdown or json", format)
			}
			ctx := cmd.Context()
			_, st, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			a, err := stages.OpenRun(ctx, st, args[0])
			if err != nil {
				return err
			}
			b, err := stages.OpenRun(ctx, st, args[1])
			if err != nil {
				return err
			}
			c, err := compareRuns(ctx, a, b, fb)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch format {
			case "json":
				err = writeJSON(out, c)
			case "markdown":
				err = c.markdown(out)
			default:
				err = c.text(out)
			}
			if err != nil {
				return err
			}
			if len(c.Regressions) > 0 {
				return fmt.Errorf("%w: %s is worse than %s by more than %s (paired 95%% interval entirely below): %s",
					errRegression, c.B.ID, c.A.ID, compareMargin(*fb), strings.Join(c.Regressions, "; "))
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&format, "format", "text", "output: text, markdown or json")
	cmd.Flags().Float64Var(&failBelow, "fail-below", 0, "exit with status 3 when an arm's paired interval of B − A lies entirely below -`X` (a fraction: 0.02 = 2 pp)")
	return cmd
}

// compareEvals reads a run's evaluations, by arm; an evaluate stage that is
// not done is noted and left out.
func compareEvals(ctx context.Context, r *stages.FinishedRun, notes *[]string) (compareRun, map[string]*stages.Evaluation, error) {
	spec := r.Spec()
	tc := spec.Section("teacher").(*teacher.Config)
	cr := compareRun{ID: r.RunID(), Student: spec.Section("student").(*stages.StudentConfig).Model,
		Teacher: tc.Model + " (" + tc.Provider + ")"}
	usd, ok, err := r.ReportCost(ctx)
	if err != nil {
		return cr, nil, err
	}
	if ok {
		cr.TeacherUSD = &usd
	}
	evals := map[string]*stages.Evaluation{}
	for _, st := range r.Stages() {
		arm, ok := strings.CutPrefix(st, "evaluate/")
		if !ok {
			continue
		}
		if !r.Done(st) {
			*notes = append(*notes, fmt.Sprintf("%s of run %s is not done: left out.", st, r.RunID()))
			continue
		}
		ev, err := r.Evaluation(ctx, st)
		if err != nil {
			return cr, nil, err
		}
		cr.Arms = append(cr.Arms, arm)
		evals[arm] = ev
	}
	return cr, evals, nil
}

// compareRuns lines up the two runs' evaluations.
func compareRuns(ctx context.Context, a, b *stages.FinishedRun, failBelow *float64) (*comparison, error) {
	c := &comparison{FailBelow: failBelow}
	var err error
	var evA, evB map[string]*stages.Evaluation
	if c.A, evA, err = compareEvals(ctx, a, &c.Notes); err != nil {
		return nil, err
	}
	if c.B, evB, err = compareEvals(ctx, b, &c.Notes); err != nil {
		return nil, err
	}
	if len(evA) == 0 || len(evB) == 0 {
		return nil, fmt.Errorf("nothing to compare: run %s has %d finished evaluate stages, run %s has %d",
			a.RunID(), len(evA), b.RunID(), len(evB))
	}
	if c.A.Student != c.B.Student {
		c.Notes = append(c.Notes, fmt.Sprintf("the runs train different students: %s (A) and %s (B).", c.A.Student, c.B.Student))
	}

	// Arms in A's order, then B's own; benchmarks MATH first, then by name.
	arms := slices.Clone(c.A.Arms)
	for _, arm := range c.B.Arms {
		if evA[arm] == nil {
			arms = append(arms, arm)
			c.OnlyInB = append(c.OnlyInB, "arm "+arm)
		}
	}
	for _, arm := range c.A.Arms {
		if evB[arm] == nil {
			c.OnlyInA = append(c.OnlyInA, "arm "+arm)
		}
	}
	benchA, benchB := compareBenchmarks(evA), compareBenchmarks(evB)
	var benches []string
	for bench := range benchA {
		benches = append(benches, bench)
		if !benchB[bench] {
			c.OnlyInA = append(c.OnlyInA, "benchmark "+bench)
		}
	}
	for bench := range benchB {
		if !benchA[bench] {
			benches = append(benches, bench)
			c.OnlyInB = append(c.OnlyInB, "benchmark "+bench)
		}
	}
	sort.Slice(benches, func(i, j int) bool {
		if (benches[i] == problems.MATH) != (benches[j] == problems.MATH) {
			return benches[i] == problems.MATH
		}
		return benches[i] < benches[j]
	})
	sort.Strings(c.OnlyInA)
	sort.Strings(c.OnlyInB)

	var ungated []string
	for _, bench := range benches {
		for _, arm := range arms {
			row := compareRow{Benchmark: bench, Arm: arm, A: compareScoreOf(evA[arm], bench), B: compareScoreOf(evB[arm], bench)}
			if row.A == nil && row.B == nil {
				continue
			}
			if row.A != nil && row.B != nil {
				d := row.B.Pass1 - row.A.Pass1
				row.Delta = &d
				if err := comparePair(ctx, a, b, &row); err != nil {
					return nil, err
				}
				switch {
				case row.Paired == nil:
					ungated = append(ungated, bench+" × "+arm)
				case failBelow != nil && row.Paired.Hi < -*failBelow:
					row.Regression = true
					c.Regressions = append(c.Regressions, fmt.Sprintf("%s × %s: %s, interval %s",
						bench, arm, comparePP(row.Paired.Delta), compareCI(row.Paired.Lo, row.Paired.Hi)))
				}
			}
			c.Rows = append(c.Rows, row)
		}
	}
	if failBelow != nil && len(ungated) > 0 {
		c.Notes = append(c.Notes, "not gated by --fail-below (no paired interval): "+strings.Join(ungated, ", ")+".")
	}
	return c, nil
}

func compareBenchmarks(evals map[string]*stages.Evaluation) map[string]bool {
	out := map[string]bool{}
	for _, ev := range evals {
		for bench := range ev.Benchmarks {
			out[bench] = true
		}
	}
	return out
}

func compareScoreOf(ev *stages.Evaluation, bench string) *compareScore {
	if ev == nil {
		return nil
	}
	res, ok := ev.Benchmarks[bench]
	if !ok {
		return nil
	}
	return &compareScore{Problems: res.Problems, Pass1: res.Pass1, Lo: res.Interval.Lo, Hi: res.Interval.Hi}
}

// comparePair sets row.Paired when both runs answered the same questions
// (the same IDs with the same text), else row.Unpaired. A question's score
// is its pass@1 sample (sample 0), as in the evaluation's pass@1.
func comparePair(ctx context.Context, a, b *stages.FinishedRun, row *compareRow) error {
	stage, file := "evaluate/"+row.Arm, row.Benchmark+".jsonl"
	for _, r := range []*stages.FinishedRun{a, b} {
		if !r.Has(stage, file) {
			row.Unpaired = fmt.Sprintf("%s of run %s kept no per-question %s", stage, r.RunID(), file)
			return nil
		}
	}
	type answer struct {
		question string
		correct  bool
	}
	read := func(r *stages.FinishedRun) (map[string]answer, []string, error) {
		rows, err := r.Responses(ctx, stage, row.Benchmark)
		if err != nil {
			return nil, nil, err
		}
		m := make(map[string]answer, len(rows))
		var order []string
		for _, q := range rows {
			if len(q.Samples) == 0 {
				return nil, nil, fmt.Errorf("run %s: %s/%s: question %s has no samples", r.RunID(), stage, file, q.ID)
			}
			if _, dup := m[q.ID]; !dup {
				order = append(order, q.ID)
			}
			m[q.ID] = answer{q.Question, q.Samples[0].Correct}
		}
		return m, order, nil
	}
	qa, order, err := read(a)
	if err != nil {
		return err
	}
	qb, _, err := read(b)
	if err != nil {
		return err
	}
	shared, differ := 0, 0
	var x, y []float64
	for _, id := range order {
		ansB, ok := qb[id]
		if !ok {
			continue
		}
		shared++
		if ansB.question != qa[id].question {
			differ++
		}
		x, y = append(x, compareOne(qa[id].correct)), append(y, compareOne(ansB.correct))
	}
	switch {
	case differ > 0:
		row.Unpaired = fmt.Sprintf("%d questions share an ID but not their text", differ)
		return nil
	case shared != len(qa) || shared != len(qb):
		row.Unpaired = fmt.Sprintf("different questions: A answered %d, B %d, %d of them the same", len(qa), len(qb), shared)
		return nil
	}
	delta, iv, err := mathgrade.PairedBootstrap(x, y, mathgrade.DefaultBootstrapConfig())
	if err != nil {
		return fmt.Errorf("paired bootstrap of %s on %s: %w", row.Arm, row.Benchmark, err)
	}
	row.Paired = &comparePaired{Questions: shared, Delta: delta, Lo: iv.Lo, Hi: iv.Hi}
	return nil
}

func compareOne(ok bool) float64 {
	if ok {
		return 1
	}
	return 0
}

func comparePct(s *compareScore) string {
	if s == nil {
		return "—"
	}
	return fmt.Sprintf("%.1f%%", 100*s.Pass1)
}

func comparePP(d float64) string {
	if math.Abs(d) < 5e-4 {
		return "0 pp"
	}
	return fmt.Sprintf("%+.1f pp", 100*d)
}

// compareMargin is --fail-below in percentage points.
func compareMargin(x float64) string { return fmt.Sprintf("%.1f pp", 100*x) }

func compareCI(lo, hi float64) string { return fmt.Sprintf("[%+.1f, %+.1f] pp", 100*lo, 100*hi) }

// cells are a row's columns after benchmark and arm: A, B, Δ, interval,
// questions paired, reading.
func (r compareRow) cells() []string {
	delta, ci, n, reading := "—", "—", "—", ""
	if r.Delta != nil {
		delta = comparePP(*r.Delta)
	}
	switch {
	case r.A == nil:
		reading = "only in B"
	case r.B == nil:
		reading = "only in A"
	case r.Paired != nil:
		ci, n = compareCI(r.Paired.Lo, r.Paired.Hi), fmt.Sprint(r.Paired.Questions)
		switch {
		case r.Paired.Lo > 0:
			reading = "better"
		case r.Paired.Hi < 0:
			reading = "worse"
		default:
			reading = "no clear difference"
		}
		if r.Regression {
			reading += " (REGRESSION)"
		}
	default:
		reading = "not paired: " + r.Unpaired
	}
	return []string{comparePct(r.A), comparePct(r.B), delta, ci, n, reading}
}

var compareHead = []string{"BENCHMARK", "ARM", "A", "B", "Δ B−A", "PAIRED 95% CI", "PAIRED", "READING"}

func (c *comparison) header() []string {
	line := func(name string, r compareRun) string {
		l := fmt.Sprintf("%s: run %s, student %s, teacher %s", name, r.ID, r.Student, r.Teacher)
		if r.TeacherUSD != nil {
			l += fmt.Sprintf(", teacher cost $%.2f", *r.TeacherUSD)
		}
		return l
	}
	return []string{line("A", c.A), line("B", c.B)}
}

func (c *comparison) footer() []string {
	var out []string
	if len(c.OnlyInA) > 0 {
		out = append(out, fmt.Sprintf("Only in A (%s): %s", c.A.ID, strings.Join(c.OnlyInA, ", ")))
	}
	if len(c.OnlyInB) > 0 {
		out = append(out, fmt.Sprintf("Only in B (%s): %s", c.B.ID, strings.Join(c.OnlyInB, ", ")))
	}
	out = append(out, c.Notes...)
	if c.FailBelow != nil {
		if len(c.Regressions) == 0 {
			out = append(out, fmt.Sprintf("Gate: no paired interval lies entirely below -%s.", compareMargin(*c.FailBelow)))
		} else {
			out = append(out, fmt.Sprintf("Gate: %d regressions beyond -%s: %s", len(c.Regressions),
				compareMargin(*c.FailBelow), strings.Join(c.Regressions, "; ")))
		}
	}
	return out
}

func (c *comparison) text(w io.Writer) error {
	for _, l := range c.header() {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(compareHead, "\t"))
	for _, r := range c.Rows {
		fmt.Fprintln(tw, strings.Join(append([]string{r.Benchmark, r.Arm}, r.cells()...), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if f := c.footer(); len(f) > 0 {
		fmt.Fprintln(w)
		for _, l := range f {
			fmt.Fprintln(w, l)
		}
	}
	return nil
}

// compareMD escapes text for a Markdown table cell.
var compareMD = strings.NewReplacer(`\`, `\\`, "|", `\|`, "<", "&lt;", ">", "&gt;", "*", `\*`, "_", `\_`, "`", "\\`", "\n", " ")

func (c *comparison) markdown(w io.Writer) error {
	fmt.Fprintf(w, "## statjob compare: run %s → run %s\n\n", compareMD.Replace(c.A.ID), compareMD.Replace(c.B.ID))
	for _, l := range c.header() {
		fmt.Fprintf(w, "- %s\n", compareMD.Replace(l))
	}
	fmt.Fprintf(w, "\n| %s |\n|%s\n", strings.Join(compareHead, " | "), strings.Repeat(" --- |", len(compareHead)))
	for _, r := range c.Rows {
		cells := append([]string{r.Benchmark, r.Arm}, r.cells()...)
		for i := range cells {
			cells[i] = compareMD.Replace(cells[i])
		}
		if r.Regression {
			cells[7] = "**" + cells[7] + "**"
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	if f := c.footer(); len(f) > 0 {
		fmt.Fprintln(w)
		for _, l := range f {
			fmt.Fprintf(w, "- %s\n", compareMD.Replace(l))
		}
	}
	_, err := fmt.Fprintln(w)
	return err
}
