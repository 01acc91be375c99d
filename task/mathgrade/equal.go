package mathgrade

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/big"
	"math/cmplx"
	"math/rand/v2"
	"sort"
	"strings"
)

// Config sets the tolerance and the work limits of the grader. The zero
// value is not usable; start from DefaultConfig.
type Config struct {
	// RelTol is the relative tolerance for numbers: a and b are equal when
	// |a-b| <= RelTol * max(|a|, |b|). 0 means exact for rationals (and
	// 1e-12 for floats). Zero equals only zero (up to float rounding,
	// 1e-12 absolute, for values computed in floating point). Default 1e-8.
	RelTol float64 `yaml:"rel_tol"`
	// Budget is the work allowed for one comparison, in steps (one per
	// expression node evaluated, plus big-number word operations). A
	// comparison that runs out is "not equal" with reason "budget". Default 200000.
	Budget int `yaml:"budget"`
	// Points is the number of random points at which expressions with
	// variables are compared. Default 6.
	Points int `yaml:"points"`
	// Seed seeds the sample points. The points also depend on the compared
	// variable names only, so a verdict never depends on call order.
	Seed uint64 `yaml:"seed"`
}

// DefaultConfig returns the settings the pipeline uses.
func DefaultConfig() Config {
	return Config{RelTol: 1e-8, Budget: 200000, Points: 6, Seed: 1}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.RelTol < 0 || c.RelTol >= 1 || math.IsNaN(c.RelTol):
		return fmt.Errorf("rel_tol: %v is not in [0, 1)", c.RelTol)
	case c.Budget < 100:
		return fmt.Errorf("budget: %d is below 100 steps", c.Budget)
	case c.Points < 2 || c.Points > 100:
		return fmt.Errorf("points: %d is not in [2, 100]", c.Points)
	}
	return nil
}

// Grader compares answers. It is safe for concurrent use.
type Grader struct{ cfg Config }

// New returns a grader for cfg.
func New(cfg Config) (*Grader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("grader config: %w", err)
	}
	return &Grader{cfg: cfg}, nil
}

var std = &Grader{cfg: DefaultConfig()}

// Default returns the grader with DefaultConfig.
func Default() *Grader { return std }

// Verdict is the outcome of comparing two answers.
type Verdict struct {
	Equal bool `json:"equal"`
	// How tells what decided: "string" (same normalised text), "tree"
	// (same expression tree), "exact"
	// (same rational), "numeric" (within tolerance), "sampled" (equal at
	// every random point), "structure" (tuples, sets, matrices, relations
	// element by element), "choice", "text", "different", "unparsed",
	// "budget" (out of work: not equal).
	How string `json:"how"`
	// Steps is the work the comparison used (see Config.Budget).
	Steps int `json:"steps"`
}

// Answer is an answer normalised and parsed once, for comparing it with
// many others (clustering, grading k samples against one gold).
type Answer struct {
	Raw  string
	norm string
	v    *value
}

// MaxAnswerLen bounds the answers that are normalised and parsed; a longer
// one (no real final answer is 4 KiB long) is compared as raw text only.
const MaxAnswerLen = 4096

// Prepare normalises and parses an answer.
func Prepare(s string) Answer {
	if len(s) > MaxAnswerLen {
		t := strings.TrimSpace(s)
		return Answer{Raw: s, norm: t, v: &value{kind: vText, text: t}}
	}
	n := Normalize(s)
	return Answer{Raw: s, norm: n, v: parseValue(n, 0)}
}

// Equal compares two answers (gold vs response, or two responses). It is
// symmetric.
func (g *Grader) Equal(a, b string) Verdict {
	return g.EqualPrepared(Prepare(a), Prepare(b))
}

// EqualPrepared is Equal on prepared answers.
func (g *Grader) EqualPrepared(a, b Answer) Verdict {
	if a.norm == "" || b.norm == "" {
		return Verdict{Equal: false, How: "empty"}
	}
	if a.norm == b.norm {
		return Verdict{Equal: true, How: "string"}
	}
	c := &cmp{cfg: g.cfg, b: budget{left: g.cfg.Budget}}
	eq, how, err := c.values(a.v, b.v)
	steps := min(g.cfg.Budget-c.b.left, g.cfg.Budget)
	if errors.Is(err, errBudget) {
		return Verdict{Equal: false, How: "budget", Steps: steps}
	}
	return Verdict{Equal: eq, How: how, Steps: steps}
}

// Equal compares two answers with the default grader.
func Equal(a, b string) bool { return std.Equal(a, b).Equal }

type cmp struct {
	cfg Config
	b   budget
}

func (c *cmp) values(x, y *value) (bool, string, error) {
	// "x = 5" against "5": a single variable on the left is a label.
	if x.kind == vRel && y.kind != vRel {
		if r := labelled(x); r != nil {
			x = r
		}
	}
	if y.kind == vRel && x.kind != vRel {
		if r := labelled(y); r != nil {
			y = r
		}
	}
	// an inequality in one variable against an interval
	if x.kind == vRel && y.kind == vTuple {
		if iv := interval(x); iv != nil {
			x = iv
		}
	}
	if y.kind == vRel && x.kind == vTuple {
		if iv := interval(y); iv != nil {
			y = iv
		}
	}
	// a one-row or one-column matrix against a tuple
	if x.kind == vMatrix && y.kind == vTuple && (x.rows == 1 || x.cols == 1) {
		x = &value{kind: vTuple, items: x.items, open: y.open, close: y.close}
	}
	if y.kind == vMatrix && x.kind == vTuple && (y.rows == 1 || y.cols == 1) {
		y = &value{kind: vTuple, items: y.items, open: x.open, close: x.close}
	}
	if x.kind != y.kind {
		if x.kind == vText || y.kind == vText {
			return squash(x.text) == squash(y.text), "text", nil
		}
		return false, "different", nil
	}
	switch x.kind {
	case vText:
		return squash(x.text) == squash(y.text), "text", nil
	case vChoice:
		return x.text == y.text, "choice", nil
	case vExpr:
		return c.exprs(x.expr, y.expr)
	case vTuple:
		if len(x.items) != len(y.items) {
			return false, "structure", nil
		}
		if !sameBracket(x.open, y.open, x.items[0]) || !sameBracket(x.close, y.close, x.items[len(x.items)-1]) {
			return false, "structure", nil
		}
		return c.pairwise(x.items, y.items)
	case vMatrix:
		if x.rows != y.rows || x.cols != y.cols {
			return false, "structure", nil
		}
		return c.pairwise(x.items, y.items)
	case vSet:
		if len(x.items) != len(y.items) {
			return false, "structure", nil
		}
		return c.matching(x.items, y.items)
	case vRel:
		return c.relations(x, y)
	}
	return false, "different", nil
}

// squash is the text comparison form: lower case, no spaces, no braces.
func squash(s string) string {
	return strings.ToLower(strings.NewReplacer(" ", "", "{", "", "}", "", `\text`, "", `\mathrm`, "").Replace(s))
}

// sameBracket: open and closed ends must match, except beside ±\infty.
func sameBracket(a, b byte, end *value) bool {
	if a == b {
		return true
	}
	return end.kind == vExpr && hasInf(end.expr)
}

func (c *cmp) pairwise(xs, ys []*value) (bool, string, error) {
	for i := range xs {
		eq, _, err := c.values(xs[i], ys[i])
		if err != nil || !eq {
			return false, "structure", err
		}
	}
	return true, "structure", nil
}

// matching finds a one-to-one pairing of two unordered lists by
// backtracking (lists hold at most maxItems items, and each comparison
// spends budget, so the search is bounded).
func (c *cmp) matching(xs, ys []*value) (bool, string, error) {
	used := make([]bool, len(ys))
	memo := map[[2]int]bool{}
	eq := func(i, j int) (bool, error) {
		k := [2]int{i, j}
		if v, ok := memo[k]; ok {
			return v, nil
		}
		v, _, err := c.values(xs[i], ys[j])
		memo[k] = v
		return v, err
	}
	var try func(i int) (bool, error)
	try = func(i int) (bool, error) {
		if i == len(xs) {
			return true, nil
		}
		for j := range ys {
			if used[j] {
				continue
			}
			ok, err := eq(i, j)
			if err != nil {
				return false, err
			}
			if ok {
				used[j] = true
				if done, err := try(i + 1); done || err != nil {
					return done, err
				}
				used[j] = false
			}
		}
		return false, nil
	}
	ok, err := try(0)
	return ok, "structure", err
}

// labelled returns the right side of "x = 5" (one variable on the left,
// not appearing on the right), or nil.
//
// A function name with its argument, f(x) = 2x, is a label too: the left
// side is a product of two variables whose first does not occur on the
// right (f) and whose second does (x).
func labelled(r *value) *value {
	if len(r.ops) != 1 || r.ops[0] != "=" {
		return nil
	}
	lhs := r.items[0].expr
	vs := map[string]bool{}
	vars(r.items[1].expr, vs)
	switch {
	case lhs.Kind == KSym && !vs[lhs.Name]:
		return r.items[1]
	case lhs.Kind == KMul && len(lhs.Args) == 2 && lhs.Args[0].Kind == KSym && lhs.Args[1].Kind == KSym &&
		!vs[lhs.Args[0].Name] && vs[lhs.Args[1].Name]:
		return r.items[1]
	}
	return nil
}

// interval turns "x > 3", "3 < x \le 5" into the interval it describes.
func interval(r *value) *value {
	ops := r.ops
	for _, o := range ops {
		if o == "=" || o == "!=" {
			return nil
		}
	}
	inf := &value{kind: vExpr, expr: &Node{Kind: KConst, Name: "inf"}}
	ninf := &value{kind: vExpr, expr: &Node{Kind: KNeg, Args: []*Node{{Kind: KConst, Name: "inf"}}}}
	isVar := func(v *value) bool { return v.expr.Kind == KSym }
	lower := func(op string) byte {
		if op == "<" || op == ">" {
			return '('
		}
		return '['
	}
	upper := func(op string) byte {
		if op == "<" || op == ">" {
			return ')'
		}
		return ']'
	}
	switch len(ops) {
	case 1:
		a, b, op := r.items[0], r.items[1], ops[0]
		if !isVar(a) && isVar(b) { // 3 < x  ->  x > 3
			a, b = b, a
			op = map[string]string{"<": ">", "<=": ">=", ">": "<", ">=": "<="}[op]
		}
		if !isVar(a) {
			return nil
		}
		if op == "<" || op == "<=" {
			return &value{kind: vTuple, items: []*value{ninf, b}, open: '(', close: upper(op)}
		}
		return &value{kind: vTuple, items: []*value{b, inf}, open: lower(op), close: ')'}
	case 2:
		if !isVar(r.items[1]) {
			return nil
		}
		lo, hi := r.items[0], r.items[2]
		o1, o2 := ops[0], ops[1]
		if (o1 == ">" || o1 == ">=") && (o2 == ">" || o2 == ">=") {
			return &value{kind: vTuple, items: []*value{hi, lo}, open: lower(o2), close: upper(o1)}
		}
		if (o1 == "<" || o1 == "<=") && (o2 == "<" || o2 == "<=") {
			return &value{kind: vTuple, items: []*value{lo, hi}, open: lower(o1), close: upper(o2)}
		}
	}
	return nil
}

// relations compares equations and inequalities. Equations are equal when
// both sides match in either order, or when left-minus-right of one is a
// non-zero constant multiple of the other's (x + y = 2 and 2x + 2y = 4).
// Inequalities are turned to point the same way (a > b is b < a) and then
// compared side by side; direction and strictness matter.
func (c *cmp) relations(x, y *value) (bool, string, error) {
	if len(x.ops) != len(y.ops) {
		return false, "structure", nil
	}
	x, y = pointLess(x), pointLess(y)
	for i := range x.ops {
		if x.ops[i] != y.ops[i] {
			return false, "structure", nil
		}
	}
	if ok, _, err := c.pairwise(x.items, y.items); ok || err != nil {
		return ok, "structure", err
	}
	// y = 2x + 3 and f(x) = 2x + 3: two labels on one value
	if lx, ly := labelled(x), labelled(y); lx != nil && ly != nil {
		if ok, _, err := c.values(lx, ly); ok || err != nil {
			return ok, "structure", err
		}
	}
	if len(x.ops) == 1 && (x.ops[0] == "=" || x.ops[0] == "!=") {
		if ok, _, err := c.pairwise(x.items, []*value{y.items[1], y.items[0]}); ok || err != nil {
			return ok, "structure", err
		}
		dx := &Node{Kind: KAdd, Args: []*Node{x.items[0].expr, {Kind: KNeg, Args: []*Node{x.items[1].expr}}}}
		dy := &Node{Kind: KAdd, Args: []*Node{y.items[0].expr, {Kind: KNeg, Args: []*Node{y.items[1].expr}}}}
		ok, err := c.proportional(dx, dy)
		return ok, "sampled", err
	}
	return false, "structure", nil
}

// pointLess rewrites a chain with > or >= to the reversed chain with < or <=.
func pointLess(r *value) *value {
	if len(r.ops) == 0 || (r.ops[0] != ">" && r.ops[0] != ">=") {
		return r
	}
	out := &value{kind: vRel, text: r.text}
	flip := map[string]string{">": "<", ">=": "<=", "<": ">", "<=": ">=", "=": "=", "!=": "!="}
	for i := len(r.items) - 1; i >= 0; i-- {
		out.items = append(out.items, r.items[i])
	}
	for i := len(r.ops) - 1; i >= 0; i-- {
		out.ops = append(out.ops, flip[r.ops[i]])
	}
	return out
}

// exprs compares two expression trees: same canonical tree; else, without
// variables, exact rationals or numbers within tolerance; else values at
// seeded random points.
func (c *cmp) exprs(x, y *Node) (bool, string, error) {
	if x.String() == y.String() {
		return true, "tree", nil
	}
	names := varNames(x, y)
	if len(names) == 0 {
		rx, errx := exact(x, &c.b)
		ry, erry := exact(y, &c.b)
		if errors.Is(errx, errBudget) || errors.Is(erry, errBudget) {
			return false, "budget", errBudget
		}
		if errx == nil && erry == nil {
			return c.ratClose(rx, ry), "exact", nil
		}
		fx, err := numeric(x, nil, &c.b)
		if err != nil {
			return false, "budget", err
		}
		fy, err := numeric(y, nil, &c.b)
		if err != nil {
			return false, "budget", err
		}
		return c.close(fx, fy), "numeric", nil
	}
	valid := 0
	for p := 0; p < c.cfg.Points*3 && valid < c.cfg.Points; p++ {
		fx, fy, err := c.at(x, y, names, p)
		if err != nil {
			return false, "budget", err
		}
		if !finite(fx) || !finite(fy) {
			continue
		}
		if !c.close(fx, fy) {
			return false, "sampled", nil
		}
		valid++
	}
	return valid >= 2, "sampled", nil
}

// proportional reports whether x = k*y for one non-zero constant k at every
// sample point (both sides of an equation scaled or swapped).
func (c *cmp) proportional(x, y *Node) (bool, error) {
	names := varNames(x, y)
	var k complex128
	valid := 0
	for p := 0; p < c.cfg.Points*3 && valid < c.cfg.Points; p++ {
		fx, fy, err := c.at(x, y, names, p)
		if err != nil {
			return false, err
		}
		if !finite(fx) || !finite(fy) || cmplx.Abs(fy) < 1e-12 {
			if finite(fx) && finite(fy) && c.close(fx, fy) {
				continue // both zero here: says nothing about k
			}
			if finite(fx) && finite(fy) {
				return false, nil
			}
			continue
		}
		r := fx / fy
		if valid == 0 {
			k = r
			if cmplx.Abs(k) < 1e-12 {
				return false, nil
			}
		} else if !c.close(r, k) {
			return false, nil
		}
		valid++
	}
	return valid >= 2, nil
}

// varNames returns the variables of x and y, sorted.
func varNames(x, y *Node) []string {
	vs := map[string]bool{}
	vars(x, vs)
	vars(y, vs)
	names := make([]string, 0, len(vs))
	for v := range vs {
		names = append(names, v)
	}
	sort.Strings(names)
	return names
}

// at evaluates x and y at the p-th sample point.
func (c *cmp) at(x, y *Node, names []string, p int) (fx, fy complex128, err error) {
	env := c.point(names, p)
	if fx, err = numeric(x, env, &c.b); err != nil {
		return 0, 0, err
	}
	fy, err = numeric(y, env, &c.b)
	return fx, fy, err
}

// point returns the p-th sample point. Each variable gets a value drawn
// from a generator seeded by (Seed, p, name), in ±[0.5, 2.5], with the sign
// alternating from one point to the next, so the same variable has the
// same value on both sides and in every comparison, and takes both signs.
func (c *cmp) point(names []string, p int) map[string]complex128 {
	env := make(map[string]complex128, len(names))
	for _, n := range names {
		h := fnv.New64a()
		h.Write([]byte(n))
		r := rand.New(rand.NewPCG(c.cfg.Seed, h.Sum64()+uint64(p)*0x9E3779B97F4A7C15))
		v := 0.5 + 2*r.Float64()
		if (uint64(p)+h.Sum64())%2 == 1 { // each variable alternates sign, so |x| is never x
			v = -v
		}
		env[n] = complex(v, 0)
	}
	return env
}

func finite(z complex128) bool {
	return !math.IsNaN(real(z)) && !math.IsNaN(imag(z)) && !math.IsInf(real(z), 0) && !math.IsInf(imag(z), 0)
}

func (c *cmp) close(a, b complex128) bool {
	if math.IsInf(real(a), 0) || math.IsInf(real(b), 0) {
		return real(a) == real(b) && imag(a) == imag(b)
	}
	if !finite(a) || !finite(b) {
		return false
	}
	// floats carry rounding error: RelTol 0 means "as exact as floats
	// allow", and a difference below 1e-12 is rounding (sin(pi) is 1e-16).
	tol := max(c.cfg.RelTol, 1e-12)
	d := cmplx.Abs(a - b)
	return d <= 1e-12 || d <= tol*math.Max(cmplx.Abs(a), cmplx.Abs(b))
}

func (c *cmp) ratClose(a, b *big.Rat) bool {
	if a.Cmp(b) == 0 {
		return true
	}
	if c.cfg.RelTol == 0 {
		return false
	}
	d := new(big.Rat).Sub(a, b)
	d.Abs(d)
	scale := new(big.Rat).Abs(a)
	if ab := new(big.Rat).Abs(b); ab.Cmp(scale) > 0 {
		scale = ab
	}
	tol := new(big.Rat).SetFloat64(c.cfg.RelTol)
	return d.Cmp(tol.Mul(tol, scale)) <= 0
}
