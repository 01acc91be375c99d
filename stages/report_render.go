package stages

import (
	"bytes"
	_ "embed"
	"fmt"
	htmltemplate "html/template"
	"math"
	"sort"
	"strings"
	texttemplate "text/template"
)

//go:embed report_tmpl.html
var reportHTMLTemplate string

//go:embed report_tmpl.md
var reportMDTemplate string

// reportView is what the templates draw: the summary, its tables with
// formatted cells, and the charts.
type reportView struct {
	S        *reportSummary
	Cards    []reportCard
	Accuracy reportTable
	Paired   reportTable
	MathD    reportTable
	Subjects reportTable
	Skills   reportTable
	Training reportTable
	GRPO     reportTable
	PRM      reportTable
	Cost     reportTable
	Charts   map[string]*svgChart
	// SkillBars are the profile's top skills as text bars (Markdown).
	SkillBars []string
	// GRPOLines are each GRPO arm's reward (and KL) per step as text
	// sparklines (Markdown); PRMBars the PRM histogram as text bars.
	GRPOLines []string
	PRMBars   []string
	// PRMText is the PRM section's prose, one paragraph per string.
	PRMText []string
}

type reportCard struct {
	Arm, Color      string
	Math, MathDelta string
	Hard, HardDelta string
	Verdict         string
	// Class colours the MATH and MATH_D differences by what their paired
	// intervals say: up, down or flat.
	Class, HardClass string
}

type reportTable struct {
	Head []string
	Rows [][]reportCell
}

type reportCell struct {
	Text  string
	Sub   string // a second, smaller line (an interval, a delta)
	Class string // up, down or ""
}

func reportPct(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) }

func reportPP(d float64) string {
	if math.Abs(d) < 5e-4 {
		return "0 pp"
	}
	return fmt.Sprintf("%+.1f pp", 100*d)
}

func reportCI(lo, hi float64) string { return fmt.Sprintf("[%.1f, %.1f]", 100*lo, 100*hi) }

func reportClass(d float64) string {
	switch {
	case d > 0:
		return "up"
	case d < 0:
		return "down"
	}
	return ""
}

// reportVerdict reads a paired interval.
func reportVerdict(p reportPaired) (string, string) {
	switch {
	case p.Lo > 0:
		return "better than base", "up"
	case p.Hi < 0:
		return "worse than base", "down"
	}
	return "no clear difference", "flat"
}

func reportBuildView(s *reportSummary) *reportView {
	v := &reportView{S: s, Charts: map[string]*svgChart{}}
	color := func(arm string) string { return reportArmColor(s.Arms, arm) }

	// Accuracy per benchmark.
	v.Accuracy.Head = append([]string{"benchmark", "questions"}, s.Arms...)
	var bars []hbar
	var legend []legendItem
	for _, a := range s.Arms {
		legend = append(legend, legendItem{color(a), a})
	}
	for _, b := range s.Benchmarks {
		row := []reportCell{{Text: b.Name}, {Text: fmt.Sprint(b.Problems)}}
		bars = append(bars, hbar{Group: b.Name})
		for _, a := range s.Arms {
			i := reportScoreOf(b.Arms, a)
			if i < 0 {
				row = append(row, reportCell{Text: "—"})
				continue
			}
			sc := b.Arms[i]
			cell := reportCell{Text: reportPct(sc.Pass1), Sub: "CI " + reportCI(sc.Lo, sc.Hi)}
			if sc.Delta != nil {
				cell.Sub = reportPP(*sc.Delta) + " vs base, CI " + reportCI(sc.Lo, sc.Hi)
				cell.Class = reportClass(*sc.Delta)
			}
			row = append(row, cell)
			bars = append(bars, hbar{Label: a, Value: sc.Pass1, Lo: sc.Lo, Hi: sc.Hi, Color: color(a), Text: reportPct(sc.Pass1)})
		}
		v.Accuracy.Rows = append(v.Accuracy.Rows, row)
	}
	if len(s.Benchmarks) > 0 {
		c := hbarChart("pass@1 per benchmark and arm, with 95% bootstrap intervals", bars, 1,
			[]float64{0, .25, .5, .75, 1}, reportPctTick, legend)
		v.Charts["accuracy"] = &c
	}

	// Paired differences on MATH and MATH_D.
	v.Paired.Head = []string{"arm", "questions", "Δ pass@1 vs base", "95% interval", "reading"}
	var forest []forestRow
	all := append([]reportPaired(nil), s.Paired...)
	if s.MathD != nil {
		all = append(all, s.MathD.Paired...)
	}
	for _, p := range all {
		verdict, class := reportVerdict(p)
		label := p.Arm + " · " + p.Benchmark
		v.Paired.Rows = append(v.Paired.Rows, []reportCell{{Text: label}, {Text: fmt.Sprint(p.Questions)},
			{Text: reportPP(p.Delta), Class: reportClass(p.Delta)}, {Text: reportCI(p.Lo, p.Hi) + " pp"}, {Text: verdict, Class: class}})
		forest = append(forest, forestRow{Label: label, Delta: p.Delta, Lo: p.Lo, Hi: p.Hi, Color: color(p.Arm),
			Caption: reportPP(p.Delta)})
	}
	if len(forest) > 0 {
		c := forestChart("difference to the base student, paired by question, with 95% bootstrap intervals", forest)
		v.Charts["paired"] = &c
	}

	// MATH_D.
	if d := s.MathD; d != nil && len(d.Arms) > 0 {
		v.MathD.Head = []string{"arm", "questions", "pass@1", "95% interval", "Δ vs base"}
		var bars []hbar
		for _, sc := range d.Arms {
			delta := reportCell{Text: "—"}
			if sc.Delta != nil {
				delta = reportCell{Text: reportPP(*sc.Delta), Class: reportClass(*sc.Delta)}
			}
			v.MathD.Rows = append(v.MathD.Rows, []reportCell{{Text: sc.Arm}, {Text: fmt.Sprint(sc.Problems)},
				{Text: reportPct(sc.Pass1)}, {Text: reportCI(sc.Lo, sc.Hi)}, delta})
			bars = append(bars, hbar{Label: sc.Arm, Value: sc.Pass1, Lo: sc.Lo, Hi: sc.Hi, Color: color(sc.Arm), Text: reportPct(sc.Pass1)})
		}
		c := hbarChart("pass@1 on MATH_D per arm, with 95% bootstrap intervals", bars, 1,
			[]float64{0, .25, .5, .75, 1}, reportPctTick, nil)
		v.Charts["mathd"] = &c
	}

	// The Missing-Skill-Profile.
	subjects := map[string]bool{}
	named := map[string]int{}
	if p := s.Profile; p != nil {
		for _, sk := range p.Skills {
			subjects[sk.Subject] = true
			named[sk.Subject] += sk.Count
		}
	}
	difficult := map[string]int{}
	if s.Difficult != nil {
		for subj, n := range s.Difficult.BySubject {
			subjects[subj] = true
			difficult[subj] = n
		}
	}
	subjList := make([]string, 0, len(subjects))
	for subj := range subjects {
		subjList = append(subjList, subj)
	}
	sort.Strings(subjList)
	subjColor := map[string]string{}
	for i, subj := range subjList {
		subjColor[subj] = reportSubjectColors[i%len(reportSubjectColors)]
	}
	v.Subjects.Head = []string{"subject", "difficult validation questions", "missing skills named"}
	for _, subj := range subjList {
		v.Subjects.Rows = append(v.Subjects.Rows, []reportCell{{Text: subj}, {Text: fmt.Sprint(difficult[subj])}, {Text: fmt.Sprint(named[subj])}})
	}
	if p := s.Profile; p != nil && len(p.Skills) > 0 {
		top := p.Skills[:min(reportTopSkills, len(p.Skills))]
		var bars []hbar
		var legend []legendItem
		seen := map[string]bool{}
		v.Skills.Head = []string{"#", "skill", "subject", "times named missing"}
		for i, sk := range top {
			bars = append(bars, hbar{Label: sk.Skill, Value: float64(sk.Count), Color: subjColor[sk.Subject], Text: fmt.Sprint(sk.Count)})
			if !seen[sk.Subject] {
				seen[sk.Subject] = true
				legend = append(legend, legendItem{subjColor[sk.Subject], sk.Subject})
			}
			v.Skills.Rows = append(v.Skills.Rows, []reportCell{{Text: fmt.Sprint(i + 1)}, {Text: sk.Skill}, {Text: sk.Subject}, {Text: fmt.Sprint(sk.Count)}})
			v.SkillBars = append(v.SkillBars, fmt.Sprintf("%-30s %4d  %s (%s)", strings.Repeat("█", max(1, 30*sk.Count/top[0].Count)),
				sk.Count, strings.ReplaceAll(sk.Skill, "`", "'"), strings.ReplaceAll(sk.Subject, "`", "'")))
		}
		sort.SliceStable(legend, func(i, j int) bool { return legend[i].Label < legend[j].Label })
		c := hbarChart(fmt.Sprintf("the %d skills most often named missing, coloured by subject", len(top)), bars,
			float64(top[0].Count), nil, nil, legend)
		v.Charts["profile"] = &c
	}

	// Training.
	v.Training.Head = []string{"arm", "steps", "first loss", "final loss", "examples kept", "dropped", "truncated", "tokens/s"}
	opt := func(p *float64, format string) string {
		if p == nil {
			return "—"
		}
		return fmt.Sprintf(format, *p)
	}
	for _, t := range s.Training {
		v.Training.Rows = append(v.Training.Rows, []reportCell{{Text: t.Arm}, {Text: fmt.Sprint(t.Steps)},
			{Text: opt(t.FirstLoss, "%.4f")}, {Text: opt(t.FinalLoss, "%.4f")}, {Text: fmt.Sprint(t.Kept)},
			{Text: fmt.Sprint(t.Dropped)}, {Text: fmt.Sprint(t.Truncated)}, {Text: opt(t.TokensPerSec, "%.0f")}})
	}
	var series []lineSeries
	for _, a := range s.Arms {
		if pts := s.Curves[a]; len(pts) > 0 {
			series = append(series, lineSeries{Label: a, Color: color(a), Points: pts})
		}
	}
	if len(series) > 0 {
		c := lineChart("training loss per optimizer step, one line per arm", "optimizer step", series)
		v.Charts["loss"] = &c
	}
	reportBuildGRPO(v)
	reportBuildPRM(v)

	// Teacher cost.
	v.Cost.Head = []string{"stage", "input tokens", "output tokens", "cost (USD)"}
	costs := s.Cost
	if s.CostTotal != nil {
		costs = append(append([]reportCost(nil), costs...), *s.CostTotal)
	}
	for _, c := range costs {
		v.Cost.Rows = append(v.Cost.Rows, []reportCell{{Text: c.Stage}, {Text: fmt.Sprint(c.InputTokens)},
			{Text: fmt.Sprint(c.OutputTokens)}, {Text: fmt.Sprintf("$%.2f", c.USD)}})
	}

	// Headline cards: one per trained arm.
	for _, a := range s.Arms {
		if a == "base" {
			continue
		}
		card := reportCard{Arm: a, Color: color(a), Math: "—", Hard: "—", Class: "flat", HardClass: "flat"}
		for _, b := range s.Benchmarks {
			if i := reportScoreOf(b.Arms, a); b.Name == "math" && i >= 0 {
				card.Math = reportPct(b.Arms[i].Pass1)
				if d := b.Arms[i].Delta; d != nil {
					card.MathDelta = reportPP(*d)
				}
			}
		}
		if s.MathD != nil {
			if i := reportScoreOf(s.MathD.Arms, a); i >= 0 {
				card.Hard = reportPct(s.MathD.Arms[i].Pass1)
				if d := s.MathD.Arms[i].Delta; d != nil {
					card.HardDelta = reportPP(*d)
				}
			}
		}
		for _, p := range s.Paired {
			if p.Arm == a {
				card.Verdict, card.Class = reportVerdict(p)
				card.Verdict = "on MATH: " + card.Verdict
			}
		}
		if s.MathD != nil {
			for _, p := range s.MathD.Paired {
				if p.Arm == a {
					_, card.HardClass = reportVerdict(p)
				}
			}
		}
		v.Cards = append(v.Cards, card)
	}
	return v
}

// reportBuildGRPO draws each GRPO arm's reward per step, and its KL per
// step where it logged one.
func reportBuildGRPO(v *reportView) {
	s := v.S
	if len(s.GRPO) == 0 {
		return
	}
	v.GRPO.Head = []string{"arm", "steps", "first reward", "final reward", "mean signal fraction", "final KL"}
	var reward, kl []lineSeries
	for _, g := range s.GRPO {
		finalKL := "—"
		if g.FinalKL != nil {
			finalKL = fmt.Sprintf("%.4g", *g.FinalKL)
		}
		v.GRPO.Rows = append(v.GRPO.Rows, []reportCell{{Text: g.Arm}, {Text: fmt.Sprint(g.Steps)}, {Text: fmt.Sprintf("%.3f", g.FirstReward)},
			{Text: fmt.Sprintf("%.3f", g.FinalReward)}, {Text: fmt.Sprintf("%.2f", g.SignalFraction)}, {Text: finalKL}})
		color := reportArmColor(s.Arms, g.Arm)
		reward = append(reward, lineSeries{Label: g.Arm, Color: color, Points: s.Reward[g.Arm]})
		v.GRPOLines = append(v.GRPOLines, reportSparkLine(g.Arm+" reward", s.Reward[g.Arm]))
		if pts := s.KL[g.Arm]; len(pts) > 0 {
			kl = append(kl, lineSeries{Label: g.Arm, Color: color, Points: pts})
			v.GRPOLines = append(v.GRPOLines, reportSparkLine(g.Arm+" KL", pts))
		}
	}
	c := lineChart("GRPO mean reward per step, one line per arm", "GRPO step", reward)
	v.Charts["reward"] = &c
	if len(kl) > 0 {
		c := lineChart("GRPO KL to the reference policy per step", "GRPO step", kl)
		v.Charts["kl"] = &c
	}
}

// reportSparks are the levels of a text sparkline, lowest first.
var reportSparks = []rune("▁▂▃▄▅▆▇█")

// reportSparkLineWidth is the most characters a sparkline takes; longer
// curves are averaged over runs of steps.
const reportSparkLineWidth = 60

// reportSparkLine writes pts as "label  ▁▃▅█  first → last (min … max)".
func reportSparkLine(label string, pts []reportPoint) string {
	if len(pts) == 0 {
		return label
	}
	n := min(len(pts), reportSparkLineWidth)
	vals := make([]float64, n)
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range n {
		from, to := i*len(pts)/n, (i+1)*len(pts)/n
		for _, p := range pts[from:to] {
			vals[i] += p.Value / float64(to-from)
		}
	}
	for _, p := range pts {
		lo, hi = math.Min(lo, p.Value), math.Max(hi, p.Value)
	}
	var b strings.Builder
	for _, x := range vals {
		k := 0
		if hi > lo {
			k = int(math.Round((x - lo) / (hi - lo) * float64(len(reportSparks)-1)))
		}
		b.WriteRune(reportSparks[k])
	}
	return fmt.Sprintf("%-24s %s  %.4g → %.4g (min %.4g, max %.4g)", svgShort(label, 24), b.String(), pts[0].Value, pts[len(pts)-1].Value, lo, hi)
}

// reportBuildPRM tabulates and draws the PRM's per-question fractions of
// samples judged right against the threshold.
func reportBuildPRM(v *reportView) {
	p := v.S.PRM
	if p == nil {
		return
	}
	const hardColor, easyColor = "#dc2626", reportBaseColor
	v.PRM.Head = []string{"samples judged right", "questions", "difficult"}
	var bars []hbar
	most := 0
	for _, b := range p.Histogram {
		most = max(most, b.Questions)
	}
	for _, b := range p.Histogram {
		hard, color := "no", easyColor
		if b.Difficult {
			hard, color = "yes", hardColor
		}
		label := reportPct(b.Right)
		v.PRM.Rows = append(v.PRM.Rows, []reportCell{{Text: label}, {Text: fmt.Sprint(b.Questions)}, {Text: hard}})
		bars = append(bars, hbar{Label: label, Value: float64(b.Questions), Color: color, Text: fmt.Sprint(b.Questions)})
		mark := " "
		if b.Difficult {
			mark = "*"
		}
		v.PRMBars = append(v.PRMBars, fmt.Sprintf("%6s %s %-30s %4d", label, mark, strings.Repeat("█", max(1, 30*b.Questions/max(most, 1))), b.Questions))
	}
	thr := reportPct(p.Threshold)
	v.PRMText = []string{
		fmt.Sprintf("A process reward model scored every step of each of the student's samples and judged the sample wrong when its last step "+
			"or the mean of its step scores was below τ1 = %.2f, or a step after the first was below τ2 = %.2f.", p.Tau1, p.Tau2),
		fmt.Sprintf("%d of %d validation questions were judged difficult: fewer than %s of their samples judged right.", p.Difficult, p.Questions, thr),
		fmt.Sprintf("Fraction of samples judged right per question: min %s, quartiles %s / %s / %s, max %s, mean %s.",
			reportPct(p.Right.Min), reportPct(p.Right.Q25), reportPct(p.Right.Median), reportPct(p.Right.Q75), reportPct(p.Right.Max), reportPct(p.Right.Mean)),
	}
	if p.NotScored > 0 {
		v.PRMText = append(v.PRMText, fmt.Sprintf("%d of %d samples were not scored (no steps, or longer than the PRM's max_length) and count as judged wrong.",
			p.NotScored, p.Samples))
	}
	c := hbarChart("validation questions by the fraction of their samples the PRM judged right", bars, float64(most), nil, nil,
		[]legendItem{{hardColor, "difficult (< " + thr + ")"}, {easyColor, "not difficult"}})
	v.Charts["prm"] = &c
}

func reportPctTick(v float64) string { return fmt.Sprintf("%.0f%%", 100*v) }

func reportScoreOf(scores []reportScore, arm string) int {
	for i, s := range scores {
		if s.Arm == arm {
			return i
		}
	}
	return -1
}

var reportFuncs = map[string]any{
	"f": func(v float64) string { return fmt.Sprintf("%.1f", v) },
}

// reportRenderHTML writes the page: one self-contained file, html/template
// escaping every name that came from upstream data.
func reportRenderHTML(s *reportSummary) ([]byte, error) {
	t, err := htmltemplate.New("report").Funcs(reportFuncs).Parse(reportHTMLTemplate)
	if err != nil {
		return nil, fmt.Errorf("report template: %w", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, reportBuildView(s)); err != nil {
		return nil, fmt.Errorf("render %s: %w", ReportHTML, err)
	}
	return buf.Bytes(), nil
}

// reportRenderMD writes the Markdown version.
func reportRenderMD(s *reportSummary) ([]byte, error) {
	t, err := texttemplate.New("report.md").Funcs(texttemplate.FuncMap{"md": reportMDEscape}).Parse(reportMDTemplate)
	if err != nil {
		return nil, fmt.Errorf("report template: %w", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, reportBuildView(s)); err != nil {
		return nil, fmt.Errorf("render %s: %w", ReportMD, err)
	}
	return buf.Bytes(), nil
}

// reportMDEscape makes text safe inside Markdown (tables included): no
// markup, no inline HTML.
var reportMDReplacer = strings.NewReplacer(`\`, `\\`, "|", `\|`, "<", "&lt;", ">", "&gt;", "&", "&amp;", "*", `\*`,
	"_", `\_`, "`", "\\`", "[", `\[`, "]", `\]`, "#", `\#`, "\n", " ", "\r", " ")

func reportMDEscape(s string) string { return reportMDReplacer.Replace(s) }
