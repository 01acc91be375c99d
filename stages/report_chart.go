package stages

import (
	"fmt"
	"math"
	"strings"
)

// The report's charts are inline SVG drawn from a few primitives; the page
// template writes them out, so every label goes through html/template's
// escaping.
type (
	svgChart struct {
		W, H  float64
		Title string // the chart's accessible name
		Rects []svgRect
		Lines []svgLine
		Polys []svgPoly
		Texts []svgText
	}
	svgRect struct {
		X, Y, W, H float64
		Fill, Tip  string
	}
	svgLine struct {
		X1, Y1, X2, Y2 float64
		Stroke         string
		Dash           bool
	}
	svgPoly struct {
		Points      string
		Stroke, Tip string
	}
	svgText struct {
		X, Y   float64
		Text   string
		Anchor string // start, middle, end
		Fill   string
		Bold   bool
		Tip    string // the full text when Text is shortened
	}
)

// Colours: the base student in grey, arms and subjects from fixed palettes.
var (
	reportArmColors     = []string{"#2563eb", "#ea580c", "#16a34a", "#dc2626", "#9333ea", "#0891b2"}
	reportSubjectColors = []string{"#0ea5e9", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#ec4899", "#84cc16", "#64748b"}
)

const reportBaseColor = "#9ca3af"

// reportArmColor is arm i's colour among arms (the base first).
func reportArmColor(arms []string, arm string) string {
	i := 0
	for _, a := range arms {
		if a == arm {
			break
		}
		if a != "base" {
			i++
		}
	}
	if arm == "base" {
		return reportBaseColor
	}
	return reportArmColors[i%len(reportArmColors)]
}

// svgShort cuts s to n runes with an ellipsis.
func svgShort(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// hbar is one bar of a horizontal bar chart; a row with only Group set
// starts a group.
type hbar struct {
	Group  string
	Label  string
	Value  float64
	Lo, Hi float64 // whisker; Hi <= Lo draws none
	Color  string
	Text   string // printed after the bar
}

type legendItem struct{ Color, Label string }

// hbarChart draws rows as horizontal bars on [0, max], with an axis at the
// given ticks (formatted by tick) and a legend on top.
func hbarChart(title string, rows []hbar, max float64, ticks []float64, tick func(float64) string, legend []legendItem) svgChart {
	const left, width, right, rowH, barH = 250.0, 420.0, 110.0, 20.0, 14.0
	c := svgChart{W: left + width + right, Title: title}
	y := 8.0
	if len(legend) > 0 {
		x := left
		for _, l := range legend {
			c.Rects = append(c.Rects, svgRect{X: x, Y: y, W: 12, H: 12, Fill: l.Color})
			c.Texts = append(c.Texts, svgText{X: x + 16, Y: y + 10, Text: svgShort(l.Label, 28), Tip: l.Label, Anchor: "start"})
			x += 24 + 7*float64(len([]rune(svgShort(l.Label, 28))))
		}
		y += 24
	}
	if max <= 0 {
		max = 1
	}
	scale := func(v float64) float64 { return left + width*math.Max(0, math.Min(v, max))/max }
	top := y
	for _, r := range rows {
		if r.Label == "" {
			c.Texts = append(c.Texts, svgText{X: 4, Y: y + 15, Text: svgShort(r.Group, 40), Tip: r.Group, Anchor: "start", Bold: true})
			y += rowH + 2
			continue
		}
		tip := r.Label + ": " + r.Text
		c.Texts = append(c.Texts, svgText{X: left - 6, Y: y + 14, Text: svgShort(r.Label, 38), Tip: r.Label, Anchor: "end"})
		c.Rects = append(c.Rects, svgRect{X: left, Y: y + (rowH-barH)/2, W: scale(r.Value) - left, H: barH, Fill: r.Color, Tip: tip})
		end := scale(r.Value)
		if r.Hi > r.Lo {
			mid := y + rowH/2
			c.Lines = append(c.Lines,
				svgLine{X1: scale(r.Lo), Y1: mid, X2: scale(r.Hi), Y2: mid, Stroke: "#111827"},
				svgLine{X1: scale(r.Lo), Y1: mid - 4, X2: scale(r.Lo), Y2: mid + 4, Stroke: "#111827"},
				svgLine{X1: scale(r.Hi), Y1: mid - 4, X2: scale(r.Hi), Y2: mid + 4, Stroke: "#111827"})
			end = math.Max(end, scale(r.Hi))
		}
		c.Texts = append(c.Texts, svgText{X: end + 6, Y: y + 14, Text: r.Text, Anchor: "start"})
		y += rowH
	}
	for _, t := range ticks {
		x := scale(t)
		c.Lines = append(c.Lines, svgLine{X1: x, Y1: top, X2: x, Y2: y, Stroke: "#e5e7eb", Dash: t != 0})
		c.Texts = append(c.Texts, svgText{X: x, Y: y + 14, Text: tick(t), Anchor: "middle", Fill: "#6b7280"})
	}
	c.H = y + 22
	return c
}

// forestRow is one difference with its interval.
type forestRow struct {
	Label          string
	Delta, Lo, Hi  float64
	Color, Caption string
}

// forestChart draws differences and their intervals around a zero line,
// in percentage points.
func forestChart(title string, rows []forestRow) svgChart {
	const left, width, right, rowH = 250.0, 420.0, 110.0, 24.0
	span := 0.01
	for _, r := range rows {
		span = math.Max(span, math.Max(math.Abs(r.Lo), math.Abs(r.Hi)))
	}
	span *= 1.1
	scale := func(v float64) float64 { return left + width*(v+span)/(2*span) }
	c := svgChart{W: left + width + right, Title: title}
	y := 8.0
	for _, r := range rows {
		mid := y + rowH/2
		c.Texts = append(c.Texts, svgText{X: left - 6, Y: mid + 4, Text: svgShort(r.Label, 38), Tip: r.Label, Anchor: "end"})
		c.Lines = append(c.Lines, svgLine{X1: scale(r.Lo), Y1: mid, X2: scale(r.Hi), Y2: mid, Stroke: r.Color})
		c.Rects = append(c.Rects, svgRect{X: scale(r.Delta) - 5, Y: mid - 5, W: 10, H: 10, Fill: r.Color, Tip: r.Label + ": " + r.Caption})
		c.Texts = append(c.Texts, svgText{X: left + width + 6, Y: mid + 4, Text: r.Caption, Anchor: "start"})
		y += rowH
	}
	c.Lines = append(c.Lines, svgLine{X1: scale(0), Y1: 4, X2: scale(0), Y2: y, Stroke: "#6b7280"})
	for _, t := range []float64{-span / 1.1, 0, span / 1.1} {
		c.Texts = append(c.Texts, svgText{X: scale(t), Y: y + 14, Text: reportPP(t), Anchor: "middle", Fill: "#6b7280"})
	}
	c.Texts = append(c.Texts, svgText{X: scale(-span / 1.1), Y: y + 30, Text: "← worse than base", Anchor: "start", Fill: "#6b7280"},
		svgText{X: scale(span / 1.1), Y: y + 30, Text: "better than base →", Anchor: "end", Fill: "#6b7280"})
	c.H = y + 40
	return c
}

// lineSeries is one curve of a line chart.
type lineSeries struct {
	Label  string
	Color  string
	Points []reportPoint
}

// lineChart draws curves over steps: x the step (xlabel names it), y the
// value.
func lineChart(title, xlabel string, series []lineSeries) svgChart {
	const left, width, top, height, right = 60.0, 560.0, 12.0, 240.0, 160.0
	c := svgChart{W: left + width + right, H: top + height + 44, Title: title}
	xmax, ylo, yhi := 1.0, math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, p := range s.Points {
			xmax = math.Max(xmax, p.Step)
			ylo, yhi = math.Min(ylo, p.Value), math.Max(yhi, p.Value)
		}
	}
	if math.IsInf(ylo, 0) {
		ylo, yhi = 0, 1
	}
	if yhi-ylo < 1e-9 {
		ylo, yhi = ylo-0.5, yhi+0.5
	}
	pad := (yhi - ylo) * 0.05
	ylo, yhi = ylo-pad, yhi+pad
	sx := func(v float64) float64 { return left + width*(v-1)/math.Max(1, xmax-1) }
	sy := func(v float64) float64 { return top + height*(yhi-v)/(yhi-ylo) }
	for i := 0; i <= 4; i++ {
		v := ylo + (yhi-ylo)*float64(i)/4
		c.Lines = append(c.Lines, svgLine{X1: left, Y1: sy(v), X2: left + width, Y2: sy(v), Stroke: "#e5e7eb", Dash: i > 0})
		c.Texts = append(c.Texts, svgText{X: left - 6, Y: sy(v) + 4, Text: fmt.Sprintf("%.3g", v), Anchor: "end", Fill: "#6b7280"})
	}
	last := 0.0
	for i := 0; i <= 4; i++ {
		v := math.Round(1 + (xmax-1)*float64(i)/4)
		if v == last {
			continue
		}
		last = v
		c.Texts = append(c.Texts, svgText{X: sx(v), Y: top + height + 16, Text: fmt.Sprintf("%.0f", v), Anchor: "middle", Fill: "#6b7280"})
	}
	c.Texts = append(c.Texts, svgText{X: left + width/2, Y: top + height + 36, Text: xlabel, Anchor: "middle", Fill: "#6b7280"})
	for i, s := range series {
		var pts []string
		for _, p := range s.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", sx(p.Step), sy(p.Value)))
		}
		c.Polys = append(c.Polys, svgPoly{Points: strings.Join(pts, " "), Stroke: s.Color, Tip: s.Label})
		ly := top + 8 + 20*float64(i)
		c.Lines = append(c.Lines, svgLine{X1: left + width + 12, Y1: ly, X2: left + width + 32, Y2: ly, Stroke: s.Color})
		c.Texts = append(c.Texts, svgText{X: left + width + 38, Y: ly + 4, Text: svgShort(s.Label, 16), Tip: s.Label, Anchor: "start"})
	}
	return c
}
