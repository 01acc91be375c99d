package mathgrade

import (
	"regexp"
	"strings"
)

var (
	reLeftRight   = regexp.MustCompile(`\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big)(?:\.|([^a-zA-Z]))`)
	reThousands   = regexp.MustCompile(`^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$`)
	reDegrees     = regexp.MustCompile(`\^\s*\{?\s*\\circ\s*\}?|\\circ|°|\\degree|\^\s*\{\s*\\text\{\s*o\s*\}\s*\}`)
	reSpaces      = regexp.MustCompile(`\s+`)
	reTrailUnit   = regexp.MustCompile(`(?i)([\d}).\s])\s*(?:square|sq\.?|cubic)?\s*\b(?:units?|cm|mm|km|meters?|metres?|inch(?:es)?|feet|foot|ft|yards?|yd|miles?|mph|hours?|hrs?|minutes?|mins?|seconds?|secs?|days?|weeks?|years?|degrees?|radians?|dollars?|cents?|percent|points?|people|students?|ways?|pounds?|lbs?|ounces?|oz|grams?|kg|liters?|litres?|ml|gallons?|cups?|sq)\.?(?:\s*\^\s*\{?\s*[23]\s*\}?)?\s*$`)
	reAndOr       = regexp.MustCompile(`([\d})\]])\s+(?:and|or)\s+`)
	reNumWords    = regexp.MustCompile(`^\s*(-?[\d.,]+)\s+[A-Za-z]+(?:\s+[A-Za-z]+)*\s*$`)
	reTrailOp     = regexp.MustCompile(`(?:\s*(?:/|\\cdot|\\times|\*))+\s*$`)
	reLeadVarIn   = regexp.MustCompile(`^[a-zA-Z]\s*\\in\s*`)
	reUnitPower   = regexp.MustCompile(`^\s*\^\s*\{?\s*[23]\s*\}?`)
	reTextCommand = regexp.MustCompile(`\\(?:text|textbf|textit|textrm|textnormal|mbox|mathrm|mathbf|mathit|operatorname\*?)\s*\{`)
)

// Normalize rewrites a LaTeX answer into the form the parser reads and the
// text comparison uses. It is exported so that callers (and the
// command) can show what was compared.
func Normalize(s string) string {
	s = strings.TrimSpace(s)
	s = stripDelims(s)
	s = strings.ReplaceAll(s, `\\`, "\x00") // row breaks survive the spacing rules below
	s = strings.ReplaceAll(s, `\displaystyle`, "")
	s = strings.ReplaceAll(s, `\!`, "")
	s = strings.ReplaceAll(s, `{,}`, ",")
	for _, sp := range []string{`\,`, `\;`, `\:`, `\ `, `\quad`, `\qquad`, `~`, `\space`, `\thinspace`} {
		s = strings.ReplaceAll(s, sp, " ")
	}
	s = reLeftRight.ReplaceAllString(s, "$1")
	for _, f := range []string{`\dfrac`, `\tfrac`, `\cfrac`} {
		s = strings.ReplaceAll(s, f, `\frac`)
	}
	for _, f := range []string{`\dbinom`, `\tbinom`} {
		s = strings.ReplaceAll(s, f, `\binom`)
	}
	s = strings.NewReplacer("−", "-", "–", "-", "∞", `\infty `, "π", `\pi `, "√", `\sqrt`, "×", `\times `, "·", `\cdot `,
		"≠", `\ne `, `\mathbb{R}`, `(-\infty,\infty)`, `\mathbb R`, `(-\infty,\infty)`, `\leqslant`, `\le`, `\geqslant`, `\ge`, `\leq`, `\le`, `\geq`, `\ge`, `\neq`, `\ne`, `≤`, `\le`, `≥`, `\ge`,
		`\langle`, "(", `\rangle`, ")", `\colon`, ":", `\lt`, `<`, `\gt`, `>`, `\%`, "", `%`, "", `\$`, "", `$`, "", `\emptyset`, `\{\}`, `\varnothing`, `\{\}`).Replace(s)
	s = reDegrees.ReplaceAllString(s, "")
	s = unwrapText(s)
	s = reSpaces.ReplaceAllString(strings.TrimSpace(s), " ")
	if !strings.HasPrefix(s, `\text{`) { // "2 and 3", "x=2 or x=3" outside \text: two answers
		s = reAndOr.ReplaceAllString(s, "$1, ")
	}
	s = strings.TrimRight(s, " .")
	s = strings.TrimSuffix(s, `\`)
	for i := 0; i < 3; i++ { // "864 square inches", "5 cm^2"
		t := reTrailUnit.ReplaceAllString(s, "$1")
		t = strings.TrimSpace(t)
		if t == s || t == "" {
			break
		}
		s = t
	}
	s = reLeadVarIn.ReplaceAllString(s, "")
	s = strings.TrimRight(s, " .")
	s = strings.ReplaceAll(s, "\x00", `\\`)
	if reThousands.MatchString(s) {
		s = strings.ReplaceAll(s, ",", "")
	}
	return s
}

func stripDelims(s string) string {
	for {
		t := strings.TrimSpace(s)
		switch {
		case len(t) >= 2 && t[0] == '$' && t[len(t)-1] == '$':
			t = strings.Trim(t, "$")
		case strings.HasPrefix(t, `\(`) && strings.HasSuffix(t, `\)`):
			t = t[2 : len(t)-2]
		case strings.HasPrefix(t, `\[`) && strings.HasSuffix(t, `\]`):
			t = t[2 : len(t)-2]
		}
		if t == s {
			return t
		}
		s = t
	}
}

// unwrapText replaces \text{...} (and \mbox, \mathrm, ...) by its content.
// Words after something else (a number, an expression) are units or
// commentary and are dropped: "162\text{ minutes}" is 162. A phrase that
// is the whole answer is kept as text: \text{Evelyn}, \text{(C)}.
// "and"/"or" between answers become commas.
func unwrapText(s string) string {
	if loc := reTextCommand.FindStringIndex(s); loc != nil && loc[0] == 0 {
		if end := matchBrace(s, loc[1]-1); end == len(s)-1 && isPhrase(s[loc[1]:end]) {
			return `\text{` + strings.TrimSpace(s[loc[1]:end]) + "}" // a word answer stays marked as text
		}
	}
	for k := 0; k < 50; k++ {
		loc := reTextCommand.FindStringIndex(s)
		if loc == nil {
			return s
		}
		end := matchBrace(s, loc[1]-1)
		if end < 0 {
			return s
		}
		content := s[loc[1]:end]
		before := strings.TrimSpace(s[:loc[0]])
		trimmed := strings.TrimSpace(content)
		repl := content
		switch {
		case trimmed == "and" || trimmed == "or" || trimmed == ",":
			repl = ","
		case before == "" && reNumWords.MatchString(content): // \text{5 apples}
			repl = reNumWords.FindStringSubmatch(content)[1]
		case before != "" && isWords(trimmed) && !strings.HasSuffix(before, ",") && !strings.HasSuffix(before, "=") && !strings.HasSuffix(before, "(") &&
			!strings.HasSuffix(before, "{") && !strings.HasSuffix(before, "_") && !strings.HasSuffix(before, "^"):
			repl = " "
		}
		head, after := s[:loc[0]], s[end+1:]
		if repl == " " { // a unit's power: \mbox{ inches}^2; the / in \mathrm{~km} / \mathrm{s}
			after = reUnitPower.ReplaceAllString(after, "")
			head = reTrailOp.ReplaceAllString(head, "")
		}
		s = head + repl + after
	}
	return s
}

// isWords reports whether s is a run of words (a unit or a phrase), which
// may carry a power (inches^2) or a slash (km/h).
func isWords(s string) bool {
	if s == "" {
		return true
	}
	letters := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isLetter(c):
			letters++
		case c == ' ' || c == '^' || c == '/' || c == '.' || isDigit(c) || c == '{' || c == '}' || c == '-' || c == '(' || c == ')':
		default:
			return false
		}
	}
	return letters >= 1
}

// matchBrace returns the index of the brace closing the one at open, or -1.
func matchBrace(s string, open int) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++ // skip escaped char such as \{ or \}
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// isPhrase reports whether s is words only: letters and spaces, at least
// two letters.
func isPhrase(s string) bool {
	letters := 0
	for i := 0; i < len(s); i++ {
		switch {
		case isLetter(s[i]):
			letters++
		case s[i] == ' ':
		default:
			return false
		}
	}
	return letters >= 2
}
