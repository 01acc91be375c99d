package mathgrade

import (
	"regexp"
	"strings"
)

type valueKind uint8

const (
	vText   valueKind = iota // unparsed text, compared as a normalised string
	vExpr                    // one expression
	vChoice                  // a multiple-choice letter A–E
	vTuple                   // ordered: point, vector, interval (brackets kept)
	vSet                     // unordered: \{...\}, a comma list, a union, ±
	vMatrix                  // rows × cols of values
	vRel                     // equation or inequality chain: items with ops between
)

// value is a parsed answer.
type value struct {
	kind        valueKind
	text        string // normalised source (all kinds)
	expr        *Node
	open, close byte // tuple brackets: ( [ and ) ]
	items       []*value
	rows, cols  int
	ops         []string // vRel: "=", "<", "<=", ">", ">=", "!="
}

// A choice is a lone letter A–E, bare or in parentheses, or "(C)" followed
// by the option's text.
var reChoice = regexp.MustCompile(`^(?:\(?([A-E])\)?$|\(([A-E])\)\s)`)

var (
	reLoneVar  = regexp.MustCompile(`^(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?$`)
	reVarTuple = regexp.MustCompile(`^\((?:\s*[a-zA-Z](?:_\{?\w+\}?)?\s*,)+\s*[a-zA-Z](?:_\{?\w+\}?)?\s*\)$`)
)

// maxItems bounds the number of items in a list, tuple or matrix.
const maxItems = 64

// parseValue reads a normalised answer.
func parseValue(s string, depth int) *value {
	v := &value{kind: vText, text: s}
	if depth > 8 || s == "" {
		return v
	}
	if strings.HasPrefix(s, `\text{`) { // a word answer (Normalize keeps only those)
		return v
	}
	if m := reChoice.FindStringSubmatch(s); m != nil {
		return &value{kind: vChoice, text: m[1] + m[2]}
	}
	if strings.HasPrefix(s, `\begin{`) {
		if m := parseMatrix(s, depth); m != nil {
			return m
		}
		return v
	}
	// \left(\begin{array}{cc}...\end{array}\right): brackets around a matrix
	if (s[0] == '(' || s[0] == '[') && closerOf(s, 0) == len(s)-1 {
		if inner := strings.TrimSpace(s[1 : len(s)-1]); strings.HasPrefix(inner, `\begin{`) {
			if m := parseMatrix(inner, depth); m != nil {
				return m
			}
		}
	}
	if parts := splitTop(s, `\cup`); len(parts) > 1 {
		return parseList(s, parts, vSet, depth)
	}
	if strings.Count(s, `\pm`) == 1 && !strings.Contains(s, ",") {
		return parseList(s, []string{strings.Replace(s, `\pm`, "+", 1), strings.Replace(s, `\pm`, "-", 1)}, vSet, depth)
	}
	if strings.HasPrefix(s, `\{`) && strings.HasSuffix(s, `\}`) && closerOf(s, 0) == len(s)-2 {
		inner := strings.TrimSpace(s[2 : len(s)-2])
		if inner == "" {
			return &value{kind: vSet, text: s}
		}
		return parseList(s, splitTop(inner, ","), vSet, depth)
	}
	if (s[0] == '(' || s[0] == '[') && (s[len(s)-1] == ')' || s[len(s)-1] == ']') && closerOf(s, 0) == len(s)-1 {
		parts := splitTop(s[1:len(s)-1], ",")
		if len(parts) > 1 {
			t := parseList(s, parts, vTuple, depth)
			t.open, t.close = s[0], s[len(s)-1]
			return t
		}
	}
	if parts := splitTop(s, ","); len(parts) > 1 {
		return parseList(s, parts, vSet, depth)
	}
	// "\frac{\sqrt3}{2} \approx 0.866": the exact value is the answer
	if i := strings.LastIndex(s, `\approx`); i > 0 {
		if head := strings.TrimSpace(s[:i]); !reLoneVar.MatchString(head) {
			if _, ops := splitRel(head); len(ops) == 0 {
				return parseValue(head, depth+1)
			}
		}
	}
	if parts, ops := splitRel(s); len(ops) > 0 {
		if len(ops) == 1 && ops[0] == "=" && reVarTuple.MatchString(parts[0]) { // (x, y) = (2, 4)
			return parseValue(parts[1], depth+1)
		}
		r := &value{kind: vRel, text: s, ops: ops}
		for _, p := range parts {
			e, err := ParseExpr(p)
			if err != nil {
				return v
			}
			r.items = append(r.items, &value{kind: vExpr, text: p, expr: e})
		}
		return r
	}
	e, err := ParseExpr(s)
	if err != nil {
		return v
	}
	return &value{kind: vExpr, text: s, expr: e}
}

func parseList(s string, parts []string, kind valueKind, depth int) *value {
	if len(parts) > maxItems {
		return &value{kind: vText, text: s}
	}
	l := &value{kind: kind, text: s}
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" { // "7, -2, \text{ and } -5"
			l.items = append(l.items, parseValue(p, depth+1))
		}
	}
	if len(l.items) == 0 {
		return &value{kind: vText, text: s}
	}
	return l
}

func parseMatrix(s string, depth int) *value {
	i := strings.Index(s, "}")
	if i < 0 {
		return nil
	}
	env := s[len(`\begin{`):i]
	end := `\end{` + env + `}`
	if !strings.HasSuffix(s, end) || len(s) < i+1+len(end) {
		return nil
	}
	body := strings.TrimSpace(s[i+1 : len(s)-len(end)])
	if env == "array" && strings.HasPrefix(body, "{") { // column spec {cc}
		j := matchBrace(body, 0)
		if j < 0 {
			return nil
		}
		body = strings.TrimSpace(body[j+1:])
	}
	rows := splitTop(body, `\\`)
	if len(rows) > 0 && strings.TrimSpace(rows[len(rows)-1]) == "" {
		rows = rows[:len(rows)-1]
	}
	m := &value{kind: vMatrix, text: s, rows: len(rows)}
	for r, row := range rows {
		cells := splitTop(row, "&")
		if r == 0 {
			m.cols = len(cells)
		} else if len(cells) != m.cols {
			return nil
		}
		for _, c := range cells {
			if len(m.items) >= maxItems*maxItems {
				return nil
			}
			m.items = append(m.items, parseValue(strings.TrimSpace(c), depth+1))
		}
	}
	return m
}

// bracket reports how the byte at j changes the bracket depth and how many
// bytes it spans: ( [ { and \{ open, ) ] } and \} close, and any other
// escaped pair (\\, \,) is skipped whole. Any opener matches any closer, so
// the half-open interval [0,1) is one bracketed span.
func bracket(s string, j int) (delta, width int) {
	switch c := s[j]; c {
	case '\\':
		if j+1 < len(s) {
			switch s[j+1] {
			case '{':
				return 1, 2
			case '}':
				return -1, 2
			case '\\':
				return 0, 2
			}
		}
		return 0, 1
	case '(', '[', '{':
		return 1, 1
	case ')', ']', '}':
		return -1, 1
	}
	return 0, 1
}

// closerOf returns the index of the bracket closing the opener at i, or -1.
func closerOf(s string, i int) int {
	depth := 0
	for j := i; j < len(s); {
		d, w := bracket(s, j)
		depth += d
		if d < 0 && depth == 0 {
			return j
		}
		j += w
	}
	return -1
}

// splitTop splits s on sep outside brackets.
func splitTop(s, sep string) []string {
	var parts []string
	depth, start := 0, 0
	for j := 0; j < len(s); {
		if depth == 0 && strings.HasPrefix(s[j:], sep) {
			parts = append(parts, s[start:j])
			j += len(sep)
			start = j
			continue
		}
		d, w := bracket(s, j)
		depth += d
		j += w
	}
	return append(parts, s[start:])
}

var relOps = []struct{ tok, op string }{
	{`\le`, "<="}, {`\ge`, ">="}, {`\ne`, "!="}, {`\approx`, "="}, {"<=", "<="}, {">=", ">="}, {"=", "="}, {"<", "<"}, {">", ">"},
}

// splitRel splits s on relation symbols outside brackets.
func splitRel(s string) (parts, ops []string) {
	depth, start := 0, 0
	for j := 0; j < len(s); j++ {
		c := s[j]
		switch c {
		case '(', '[', '{':
			depth++
			continue
		case ')', ']', '}':
			depth--
			continue
		}
		if depth != 0 {
			continue
		}
		for _, r := range relOps {
			if strings.HasPrefix(s[j:], r.tok) {
				if r.tok[0] == '\\' && j+len(r.tok) < len(s) && isLetter(s[j+len(r.tok)]) {
					continue // \left, \geq handled by Normalize; \leftarrow is not a relation
				}
				parts = append(parts, strings.TrimSpace(s[start:j]))
				ops = append(ops, r.op)
				j += len(r.tok) - 1
				start = j + 1
				break
			}
		}
	}
	if len(ops) == 0 {
		return nil, nil
	}
	return append(parts, strings.TrimSpace(s[start:])), ops
}
