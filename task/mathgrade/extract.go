package mathgrade

import (
	"regexp"
	"sort"
	"strings"
)

// Rule names the extraction rule that found an answer.
type Rule string

// Extraction rules, tried in this order.
const (
	RuleBoxed      Rule = "boxed"       // last \boxed{...} / \boxed x / \fbox{...}
	RuleAnswerIs   Rule = "answer_is"   // last "the answer is" / "final answer is" / "answer:" / "####"
	RuleLastNumber Rule = "last_number" // last number in the text
	RuleNone       Rule = "none"        // nothing found
)

// maxExtractInput: longer responses are read from their last MiB.
const maxExtractInput = 1 << 20

var (
	reAnswerIs   = regexp.MustCompile(`(?i)(?:(?:final answer|the answer|answer)\**\s*(?:is|:)\s*(?:[:=]\s*)?|####\s*)`)
	reLastNumber = regexp.MustCompile(`-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?(?:/\d+)?|-?\.\d+`)
)

// Extract finds the final answer in a model's response and reports which
// rule fired. The answer is returned as written (not normalised).
func Extract(response string) (string, Rule) {
	if len(response) > maxExtractInput {
		response = response[len(response)-maxExtractInput:]
	}
	if a, ok := lastBoxed(response); ok {
		return a, RuleBoxed
	}
	if locs := reAnswerIs.FindAllStringIndex(response, -1); locs != nil {
		if a := answerAfter(response[locs[len(locs)-1][1]:]); a != "" {
			return a, RuleAnswerIs
		}
	}
	if m := reLastNumber.FindAllString(response, -1); m != nil {
		return strings.TrimRight(m[len(m)-1], ","), RuleLastNumber
	}
	return "", RuleNone
}

// lastBoxed returns the content of the last \boxed or \fbox. When the last
// box is not closed, an earlier one is tried; an earlier box still open
// where a later unclosed one starts can never close, so each earlier box is
// scanned only up to the later one's start and the whole search is linear.
func lastBoxed(s string) (string, bool) {
	starts := append(indexAll(s, `\boxed`), indexAll(s, `\fbox`)...)
	sort.Ints(starts)
	limit := len(s)
	for n := len(starts) - 1; n >= 0; n-- {
		i := starts[n]
		rest := s[i:limit]
		name := `\boxed`
		if strings.HasPrefix(rest, `\fbox`) {
			name = `\fbox`
		}
		rest = rest[len(name):]
		trimmed := strings.TrimLeft(rest, " ")
		switch {
		case strings.HasPrefix(trimmed, "{"):
			off := len(rest) - len(trimmed)
			if end := matchBrace(rest, off); end > 0 {
				return strings.TrimSpace(rest[off+1 : end]), true
			}
		case len(trimmed) < len(rest) && trimmed != "": // \boxed 5
			end := strings.IndexAny(trimmed, " $\n")
			if end < 0 {
				end = len(trimmed)
			}
			return strings.TrimSpace(trimmed[:end]), true
		}
		limit = i
	}
	return "", false
}

// indexAll returns the start of every occurrence of sub in s.
func indexAll(s, sub string) []int {
	var out []int
	for off := 0; ; {
		j := strings.Index(s[off:], sub)
		if j < 0 {
			return out
		}
		out = append(out, off+j)
		off += j + len(sub)
	}
}

// answerAfter reads the answer that follows "the answer is": a $...$ or
// \(...\) span if it starts with one, else the text up to the end of the
// sentence or line.
func answerAfter(s string) string {
	s = strings.TrimLeft(s, " \t*") // Markdown bold: "**Final Answer:** 7", "is **7**"
	for _, d := range [][2]string{{"$$", "$$"}, {"$", "$"}, {`\(`, `\)`}, {`\[`, `\]`}} {
		if strings.HasPrefix(s, d[0]) {
			if end := indexUnescaped(s[len(d[0]):], d[1]); end >= 0 {
				return strings.TrimSpace(s[len(d[0]) : len(d[0])+end])
			}
		}
	}
	if nl := strings.IndexByte(s, '\n'); nl >= 0 {
		s = s[:nl]
	}
	// end of sentence: a period followed by a space or the end, not a decimal point
	for j := 0; j < len(s); j++ {
		if s[j] == '.' && (j+1 == len(s) || s[j+1] == ' ') {
			s = s[:j]
			break
		}
	}
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimSuffix(s, "I hope it is correct"), ".")
	return strings.TrimSpace(strings.TrimRight(s, "*"))
}

// Result is the grade of one response.
type Result struct {
	Correct   bool   `json:"correct"`
	Extracted string `json:"extracted"`
	Rule      Rule   `json:"rule"`
	How       string `json:"how"`
	Steps     int    `json:"steps"`
}

// Grade extracts the answer from response and compares it with gold.
func (g *Grader) Grade(response, gold string) Result {
	a, rule := Extract(response)
	if rule == RuleNone {
		return Result{Rule: rule, How: "no answer"}
	}
	v := g.Equal(a, gold)
	return Result{Correct: v.Equal, Extracted: a, Rule: rule, How: v.How, Steps: v.Steps}
}

// Grade grades with the default grader.
func Grade(response, gold string) Result { return std.Grade(response, gold) }

// indexUnescaped is strings.Index that skips matches preceded by a
// backslash (\$ is a dollar sign, not the end of math).
func indexUnescaped(s, sub string) int {
	for off := 0; ; {
		i := strings.Index(s[off:], sub)
		if i < 0 {
			return -1
		}
		if j := off + i; j == 0 || s[j-1] != '\\' {
			return j
		}
		off += i + 1
	}
}
