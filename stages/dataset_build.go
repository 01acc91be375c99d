package stages

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
)

// datasetBuild is one dataset stage's work: its settings, teacher, grader
// and the counts that become its metrics.
type datasetBuild struct {
	cfg  *DatasetConfig
	name string
	t    *teacher.Teacher  // nil for the strategies without a teacher
	g    *mathgrade.Grader // nil with t
	m    job.Metrics
}

// add increases the count metric name by n.
func (b *datasetBuild) add(name string, n int) {
	v, _ := b.m[name].(int)
	b.m[name] = v + n
}

// summary lists the count metrics, for an error that says why nothing was
// kept.
func (b *datasetBuild) summary() string {
	var parts []string
	for k, v := range b.m {
		if n, ok := v.(int); ok {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "no input"
	}
	return strings.Join(parts, ", ")
}

// datasetKey joins the parts naming one example into its unique key.
func datasetKey(parts ...any) string {
	s := make([]string, len(parts))
	for i, p := range parts {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, "\x1f")
}

// reference is the training questions of at least minLevel with their
// reference solutions (the train and hard baselines).
func (b *datasetBuild) reference(train []problems.Problem, minLevel int) []datasetItem {
	var pool []datasetItem
	for _, p := range train {
		switch {
		case p.Level < minLevel:
			continue
		case strings.TrimSpace(p.Solution) == "":
			b.add("no_solution", 1)
			continue
		}
		pool = append(pool, datasetItem{key: p.ID, ex: Example{
			Messages: datasetMessages(p.Question, p.Solution), Source: p.ID, Subject: p.Subject}})
	}
	b.add("questions", len(pool))
	return pool
}

// augment is the augment baseline: the teacher's answers to every training
// question.
func (b *datasetBuild) augment(ctx context.Context, train []problems.Problem) ([]datasetItem, error) {
	qs := make([]string, len(train))
	for i, p := range train {
		qs[i] = p.Question
	}
	b.add("questions", len(train))
	sols, err := b.solve(ctx, qs, b.cfg.Augment.Answers)
	if err != nil {
		return nil, err
	}
	var pool []datasetItem
	for i, p := range train {
		for k, s := range b.correct(sols[i], p.Answer, b.cfg.Augment.FilterCorrect) {
			if s != "" {
				pool = append(pool, datasetItem{key: datasetKey(p.ID, k), ex: Example{
					Messages: datasetMessages(p.Question, s), Source: p.ID, Subject: p.Subject}})
			}
		}
	}
	return pool, nil
}

// datasetPair is one (difficult question, missing skill) pair with the
// training questions labelled with the skill in the question's subject
// (indices into the training questions, in ID order).
type datasetPair struct {
	q, subject, skill string
	cands             []int
}

// pairs enumerates the (difficult question, missing skill) pairs of the
// kept diagnoses in question order. Skills belong to subjects, so a pair's
// candidates are the training questions of the question's subject labelled
// with the skill.
func (b *datasetBuild) pairs(diags []Diagnosed, train []problems.Problem) []datasetPair {
	bySkill := map[[2]string][]int{}
	for i, p := range train {
		for _, s := range p.Skills {
			k := [2]string{p.Subject, s}
			if l := bySkill[k]; len(l) == 0 || l[len(l)-1] != i {
				bySkill[k] = append(l, i)
			}
		}
	}
	diags = append([]Diagnosed(nil), diags...)
	sort.SliceStable(diags, func(i, j int) bool { return diags[i].ID < diags[j].ID })
	for _, name := range []string{"diagnoses", "diagnoses_failed", "diagnoses_judged_correct", "pairs", "pairs_without_candidates"} {
		b.add(name, 0)
	}
	var out []datasetPair
	seen := map[[2]string]bool{}
	for _, d := range diags {
		b.add("diagnoses", 1)
		if d.Error != "" {
			b.add("diagnoses_failed", 1)
			continue
		}
		if d.Diagnosis.Correct { // the teacher found nothing missing
			b.add("diagnoses_judged_correct", 1)
			continue
		}
		for _, s := range d.Diagnosis.Missing {
			if seen[[2]string{d.ID, s}] {
				continue
			}
			seen[[2]string{d.ID, s}] = true
			b.add("pairs", 1)
			cands := bySkill[[2]string{d.Subject, s}]
			if len(cands) == 0 {
				b.add("pairs_without_candidates", 1)
				continue
			}
			out = append(out, datasetPair{q: d.ID, subject: d.Subject, skill: s, cands: cands})
		}
	}
	return out
}

// sel is STAT-Sel: per pair, per_pair training questions drawn with
// replacement, each with the teacher's answers.
func (b *datasetBuild) sel(ctx context.Context, pairs []datasetPair, train []problems.Problem) ([]datasetItem, error) {
	c := b.cfg.Sel
	type pick struct{ pair, j, q int }
	var picks []pick
	slot := map[int]int{} // training question → its place in qs
	var qs []string
	for pi, p := range pairs {
		for j := range c.PerPair {
			q := p.cands[itemRand(b.cfg.Seed, "sel", p.q, p.subject, p.skill, strconv.Itoa(j))%uint64(len(p.cands))]
			if _, ok := slot[q]; !ok {
				slot[q] = len(qs)
				qs = append(qs, train[q].Question)
			}
			picks = append(picks, pick{pi, j, q})
		}
	}
	b.add("picks", len(picks))
	b.add("questions", len(qs))
	sols, err := b.solve(ctx, qs, c.Answers)
	if err != nil {
		return nil, err
	}
	kept := make([][]string, len(qs))
	for q, i := range slot {
		kept[i] = b.correct(sols[i], train[q].Answer, c.FilterCorrect)
	}
	var pool []datasetItem
	for _, pk := range picks {
		p, q := pairs[pk.pair], train[pk.q]
		for k, s := range kept[slot[pk.q]] {
			if s != "" {
				pool = append(pool, datasetItem{key: datasetKey(p.q, p.skill, pk.j, k), ex: Example{
					Messages: datasetMessages(q.Question, s), Source: q.ID, Subject: p.subject,
					Skill: p.skill, For: p.q}})
			}
		}
	}
	return pool, nil
}

// syn is STAT-Syn: per pair, the teacher writes new questions from
// examples labelled with the skill and solves each several times; a
// question is kept with its agreeing solutions.
func (b *datasetBuild) syn(ctx context.Context, pairs []datasetPair, train []problems.Problem) ([]datasetItem, error) {
	c := b.cfg.Syn
	type written struct{ pair, i int }
	var reqs []*teacher.Request
	var meta []written
	for pi, p := range pairs {
		// The examples: the first few candidates in a seeded order, without
		// replacement.
		order := append([]int(nil), p.cands...)
		r := make(map[int]uint64, len(order))
		for _, q := range order {
			r[q] = itemRand(b.cfg.Seed, "syn", p.q, p.subject, p.skill, train[q].ID)
		}
		sort.SliceStable(order, func(i, j int) bool { return r[order[i]] < r[order[j]] })
		var examples []string
		for _, q := range order[:min(c.Examples, len(order))] {
			examples = append(examples, train[q].Question)
		}
		data := map[string]any{"Subject": p.subject, "Skill": p.skill, "Examples": examples}
		for i := range c.Questions {
			req, err := b.t.Request(teacher.WriteQuestion, data, b.params(c.QuestionMaxTokens), i)
			if err != nil {
				return nil, err
			}
			reqs = append(reqs, req)
			meta = append(meta, written{pi, i})
		}
	}
	b.add("questions_requested", len(reqs))
	rs := teacher.Run(ctx, b.t, b.name+"/questions", reqs, teacher.ParseQuestion)
	if err := b.check("questions", rs); err != nil {
		return nil, err
	}
	var qs []string
	var from []written
	for i, r := range rs {
		if r.Err == nil {
			qs = append(qs, r.Value)
			from = append(from, meta[i])
		}
	}
	sols, err := b.solve(ctx, qs, c.Solutions)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"questions_kept", "questions_disagree", "solutions_disagree"} {
		b.add(name, 0)
	}
	var pool []datasetItem
	for n, q := range qs {
		var answers []string
		var idx []int
		for k, s := range sols[n] {
			if s != "" {
				a, _ := mathgrade.Extract(s)
				answers, idx = append(answers, a), append(idx, k)
			}
		}
		clusters := b.g.Cluster(answers)
		if len(clusters) == 0 || len(clusters[0]) < c.MinAgree {
			b.add("questions_disagree", 1)
			b.add("solutions_disagree", len(answers))
			continue
		}
		b.add("questions_kept", 1)
		b.add("solutions_disagree", len(answers)-len(clusters[0]))
		p, w := pairs[from[n].pair], from[n]
		members := append([]int(nil), clusters[0]...)
		sort.Ints(members)
		for _, m := range members {
			k := idx[m]
			pool = append(pool, datasetItem{key: datasetKey(p.q, p.skill, w.i, k), ex: Example{
				Messages: datasetMessages(q, sols[n][k]), Source: "synthetic", Subject: p.subject,
				Skill: p.skill, For: p.q}})
		}
	}
	return pool, nil
}

// params are the teacher's sampling parameters for a call of up to
// maxTokens output tokens.
func (b *datasetBuild) params(maxTokens int) teacher.Params {
	temp, seed := b.cfg.Temperature, int64(b.cfg.Seed)
	return teacher.Params{Temperature: &temp, MaxTokens: maxTokens, Seed: &seed}
}

// datasetSolution is the ParseFunc of a Solve reply: the whole text, when it
// ends in a \boxed{} final answer.
func datasetSolution(text string) (string, error) {
	if _, rule := mathgrade.Extract(text); rule != mathgrade.RuleBoxed {
		return "", errors.New(`no \boxed{} final answer; put the final answer within \boxed{}`)
	}
	return text, nil
}

// solve asks the teacher for n solutions of each question (Solve, samples
// 0..n-1: n calls, n replies); sols[i][k] is question i's sample k, "" when
// it was malformed or failed. A question asked twice is asked once.
func (b *datasetBuild) solve(ctx context.Context, questions []string, n int) ([][]string, error) {
	first := map[string]int{}
	var reqs []*teacher.Request
	for _, q := range questions {
		if _, ok := first[q]; ok {
			continue
		}
		first[q] = len(reqs)
		for k := range n {
			req, err := b.t.Request(teacher.Solve, map[string]any{"Question": q}, b.params(b.cfg.MaxTokens), k)
			if err != nil {
				return nil, err
			}
			reqs = append(reqs, req)
		}
	}
	b.add("solutions_requested", len(reqs))
	rs := teacher.Run(ctx, b.t, b.name+"/solutions", reqs, datasetSolution)
	if err := b.check("solutions", rs); err != nil {
		return nil, err
	}
	sols := make([][]string, len(questions))
	for i, q := range questions {
		sols[i] = make([]string, n)
		for k := range n {
			if r := rs[first[q]+k]; r.Err == nil {
				sols[i][k] = r.Value
			}
		}
	}
	return sols, nil
}

// correct blanks the solutions whose final answer is not gold, counting
// them, when filter is set.
func (b *datasetBuild) correct(sols []string, gold string, filter bool) []string {
	if !filter {
		return sols
	}
	b.add("solutions_wrong", 0)
	out := make([]string, len(sols))
	for k, s := range sols {
		if s == "" {
			continue
		}
		a, _ := mathgrade.Extract(s)
		if b.g.Equal(a, gold).Equal {
			out[k] = s
		} else {
			b.add("solutions_wrong", 1)
		}
	}
	return out
}

// check counts the failed calls of one fan-out by kind (<what>_malformed:
// no usable reply after the re-asks, truncated included; <what>_failed:
// the provider's errors). A budget stop or cancellation fails the stage so
// a resumed run finishes the work from the cache; so does a fan-out where
// every call failed.
func (b *datasetBuild) check(what string, rs []teacher.Result[string]) error {
	b.add(what+"_malformed", 0)
	b.add(what+"_failed", 0)
	var last error
	failed := 0
	for _, r := range rs {
		switch {
		case r.Err == nil:
			continue
		case errors.Is(r.Err, teacher.ErrBudget), errors.Is(r.Err, context.Canceled),
			errors.Is(r.Err, context.DeadlineExceeded):
			return fmt.Errorf("%s: %w", what, r.Err)
		case errors.Is(r.Err, teacher.ErrMalformed), errors.Is(r.Err, teacher.ErrTruncated):
			b.add(what+"_malformed", 1)
		default:
			b.add(what+"_failed", 1)
		}
		failed++
		last = r.Err
	}
	if failed > 0 && failed == len(rs) {
		return fmt.Errorf("every one of %d teacher calls for %s failed, the last with: %w", len(rs), what, last)
	}
	return nil
}
