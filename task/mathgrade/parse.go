package mathgrade

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// Kind is the kind of a node of a parsed expression.
type Kind uint8

// Node kinds. Subtraction is Add with a Neg child; division is Mul with a
// Pow(x, -1) child, so the tree has one form for each operation.
const (
	KNum   Kind = iota // exact rational number (Num)
	KSym               // variable (Name), e.g. "x", "x_1", "\theta"
	KConst             // constant (Name): "pi", "e", "i", "inf"
	KAdd               // sum of Args
	KMul               // product of Args
	KPow               // Args[0] ^ Args[1]
	KNeg               // -Args[0]
	KFunc              // Name(Args...): sin, cos, sqrt, root, log, ln, exp, abs, floor, ceil, fact, binom, ...
)

// Node is one node of an expression tree.
type Node struct {
	Kind Kind
	Num  *big.Rat
	Name string
	Args []*Node
}

// String prints the tree in a canonical prefix form (used for the
// structural comparison and for tests).
func (n *Node) String() string {
	var b strings.Builder
	n.write(&b)
	return b.String()
}

func (n *Node) write(b *strings.Builder) {
	switch n.Kind {
	case KNum:
		b.WriteString(n.Num.RatString())
	case KSym, KConst:
		b.WriteString(n.Name)
	default:
		b.WriteByte('(')
		switch n.Kind {
		case KAdd:
			b.WriteByte('+')
		case KMul:
			b.WriteByte('*')
		case KPow:
			b.WriteByte('^')
		case KNeg:
			b.WriteByte('-')
		case KFunc:
			b.WriteString(n.Name)
		}
		for _, a := range n.Args {
			b.WriteByte(' ')
			a.write(b)
		}
		b.WriteByte(')')
	}
}

// ErrSyntax is returned (wrapped) by ParseExpr for input it cannot read.
var ErrSyntax = errors.New("latex syntax")

// maxParseLen bounds the input of ParseExpr; maxDepth bounds nesting, so
// parsing is linear in the input and cannot exhaust the stack.
const (
	maxParseLen = 2000
	maxDepth    = 100
)

type token struct {
	cmd  bool   // a \command
	text string // command name without the backslash, or one character
}

func tokenize(s string) []token {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\\':
			j := i + 1
			for j < len(s) && isLetter(s[j]) {
				j++
			}
			if j == i+1 && j < len(s) { // \{ \} \, \| etc.
				j++
			}
			toks = append(toks, token{cmd: true, text: s[i+1 : j]})
			i = j
		default:
			// one UTF-8 character
			j := i + 1
			for j < len(s) && s[j]&0xC0 == 0x80 {
				j++
			}
			toks = append(toks, token{text: s[i:j]})
			i = j
		}
	}
	return toks
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

type parser struct {
	toks  []token
	pos   int
	depth int
}

// ParseExpr parses one LaTeX math expression (no commas or relations) into a
// tree. It accepts \frac, \sqrt (with index), powers, subscripts, \pi, e, i,
// \infty, trig, inverse trig and hyperbolic functions, logs (\log_b), \exp,
// |x|, \lfloor/\lceil, n!, \binom, \cdot/\times/\div and implicit
// multiplication. Input is expected to be normalised (see Normalize).
func ParseExpr(s string) (*Node, error) {
	if len(s) > maxParseLen {
		return nil, fmt.Errorf("%w: input longer than %d bytes", ErrSyntax, maxParseLen)
	}
	p := &parser{toks: tokenize(s)}
	if len(p.toks) == 0 {
		return nil, fmt.Errorf("%w: empty expression", ErrSyntax)
	}
	n, err := p.expr()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("%w: unexpected %q at token %d", ErrSyntax, p.peek().text, p.pos)
	}
	return n, nil
}

func (p *parser) peek() token {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return token{}
}

func (p *parser) at(text string) bool {
	t := p.peek()
	return p.pos < len(p.toks) && !t.cmd && t.text == text
}

func (p *parser) atCmd(names ...string) bool {
	t := p.peek()
	if p.pos >= len(p.toks) || !t.cmd {
		return false
	}
	for _, n := range names {
		if t.text == n {
			return true
		}
	}
	return false
}

func (p *parser) errf(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrSyntax}, a...)...)
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return p.errf("nesting deeper than %d", maxDepth)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// expr := term (('+'|'-') term)*
func (p *parser) expr() (*Node, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	var terms []*Node
	first := true
	for {
		neg := false
		switch {
		case p.at("+"):
			p.pos++
		case p.at("-"):
			p.pos++
			neg = true
		case !first:
			if len(terms) == 1 {
				return terms[0], nil
			}
			return &Node{Kind: KAdd, Args: terms}, nil
		}
		first = false
		t, err := p.term()
		if err != nil {
			return nil, err
		}
		if neg {
			t = negate(t)
		}
		terms = append(terms, t)
	}
}

func negate(t *Node) *Node {
	if t.Kind == KNum {
		return &Node{Kind: KNum, Num: new(big.Rat).Neg(t.Num)}
	}
	return &Node{Kind: KNeg, Args: []*Node{t}}
}

func inverse(t *Node) *Node {
	return &Node{Kind: KPow, Args: []*Node{t, {Kind: KNum, Num: big.NewRat(-1, 1)}}}
}

// term := factor (('*'|'/'|\cdot|\times|\div)? factor)*
func (p *parser) term() (*Node, error) {
	f, err := p.unary()
	if err != nil {
		return nil, err
	}
	factors := []*Node{f}
	for {
		div := false
		switch {
		case p.at("*") || p.atCmd("cdot", "times", "ast"):
			p.pos++
		case p.at("/") || p.atCmd("div"):
			p.pos++
			div = true
		case p.startsPrimary():
		default:
			if len(factors) == 1 {
				return factors[0], nil
			}
			return &Node{Kind: KMul, Args: factors}, nil
		}
		g, err := p.power()
		if err != nil {
			return nil, err
		}
		if div {
			g = inverse(g)
		}
		factors = append(factors, g)
	}
}

func (p *parser) unary() (*Node, error) {
	if p.at("-") {
		p.pos++
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		u, err := p.unary()
		if err != nil {
			return nil, err
		}
		return negate(u), nil
	}
	if p.at("+") {
		p.pos++
		return p.unary()
	}
	return p.power()
}

// startsPrimary reports whether the next token can begin an implicitly
// multiplied factor.
func (p *parser) startsPrimary() bool {
	if p.pos >= len(p.toks) {
		return false
	}
	t := p.peek()
	if t.cmd {
		_, fn := funcs[t.text]
		_, sym := symbols[t.text]
		return fn || sym || t.text == "frac" || t.text == "sqrt" || t.text == "binom" ||
			t.text == "pi" || t.text == "infty" || t.text == "lfloor" || t.text == "lceil" ||
			t.text == "log" || t.text == "operatorname" || t.text == "mathbf" || decorations[t.text]
	}
	c := t.text[0]
	return isDigit(c) || isLetter(c) || c == '(' || c == '{' || c == '[' || c == '.'
}

// power := postfix ('^' unary)?
func (p *parser) power() (*Node, error) {
	base, err := p.postfix()
	if err != nil {
		return nil, err
	}
	if p.at("^") {
		p.pos++
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		exp, err := p.script()
		if err != nil {
			return nil, err
		}
		return &Node{Kind: KPow, Args: []*Node{base, exp}}, nil
	}
	return base, nil
}

// script reads a superscript: a braced group, one digit, or a signed unit.
func (p *parser) script() (*Node, error) {
	if p.at("-") {
		p.pos++
		s, err := p.script()
		if err != nil {
			return nil, err
		}
		return negate(s), nil
	}
	return p.arg()
}

func (p *parser) postfix() (*Node, error) {
	n, err := p.primary()
	if err != nil {
		return nil, err
	}
	for p.at("!") {
		p.pos++
		n = &Node{Kind: KFunc, Name: "fact", Args: []*Node{n}}
	}
	return n, nil
}

// arg reads a command argument: a braced group, or a single character
// (\frac12, \sqrt2), or a single command.
func (p *parser) arg() (*Node, error) {
	if p.pos >= len(p.toks) {
		return nil, p.errf("missing argument")
	}
	if p.at("{") {
		return p.group("{", "}")
	}
	t := p.peek()
	if !t.cmd && isDigit(t.text[0]) {
		p.pos++
		return &Node{Kind: KNum, Num: big.NewRat(int64(t.text[0]-'0'), 1)}, nil
	}
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	return p.postfix()
}

func (p *parser) group(open, close string) (*Node, error) {
	p.pos++ // open
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	n, err := p.expr()
	if err != nil {
		return nil, err
	}
	if !p.at(close) {
		return nil, p.errf("missing %q", close)
	}
	p.pos++
	return n, nil
}

var funcs = map[string]string{
	"sin": "sin", "cos": "cos", "tan": "tan", "sec": "sec", "csc": "csc", "cot": "cot",
	"arcsin": "asin", "arccos": "acos", "arctan": "atan", "sinh": "sinh", "cosh": "cosh", "tanh": "tanh",
	"ln": "ln", "exp": "exp", "log": "log",
}

// decorations make a new variable of their argument.
var decorations = map[string]bool{"vec": true, "overline": true, "bar": true, "hat": true, "dot": true,
	"ddot": true, "tilde": true, "widetilde": true, "widehat": true}

// symbols are commands read as variables.
var symbols = map[string]bool{
	"alpha": true, "beta": true, "gamma": true, "delta": true, "theta": true, "phi": true,
	"varphi": true, "lambda": true, "mu": true, "sigma": true, "omega": true, "tau": true,
	"rho": true, "epsilon": true, "varepsilon": true, "psi": true, "eta": true, "xi": true, "zeta": true,
	"Delta": true, "Omega": true, "Gamma": true, "Phi": true, "Sigma": true, "Lambda": true, "Psi": true,
	"nu": true, "kappa": true, "chi": true, "ell": true, "hbar": true, "odot": true, "prime": true,
	"angle": true, "max": true, "min": true,
}

func (p *parser) primary() (*Node, error) {
	if p.pos >= len(p.toks) {
		return nil, p.errf("unexpected end")
	}
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	t := p.peek()
	if t.cmd {
		return p.command()
	}
	c := t.text[0]
	switch {
	case isDigit(c) || c == '.':
		return p.number()
	case isLetter(c):
		p.pos++
		var n *Node
		switch t.text {
		case "e":
			n = &Node{Kind: KConst, Name: "e"}
		case "i":
			n = &Node{Kind: KConst, Name: "i"}
		default:
			n = &Node{Kind: KSym, Name: t.text}
		}
		if p.at("_") { // subscripted variable: x_1, a_{n}
			p.pos++
			sub, err := p.arg()
			if err != nil {
				return nil, err
			}
			n = &Node{Kind: KSym, Name: t.text + "_" + sub.String()}
		}
		return n, nil
	case c == '(':
		return p.group("(", ")")
	case c == '[':
		return p.group("[", "]")
	case c == '{':
		return p.group("{", "}")
	case c == '|':
		p.pos++
		n, err := p.expr()
		if err != nil {
			return nil, err
		}
		if !p.at("|") {
			return nil, p.errf("missing closing |")
		}
		p.pos++
		return &Node{Kind: KFunc, Name: "abs", Args: []*Node{n}}, nil
	}
	return nil, p.errf("unexpected %q", t.text)
}

// number reads digits with an optional decimal point and an optional
// exponent (1.5e-3). An integer followed by \frac of two integer literals is
// a mixed number: 2\frac{1}{2} = 5/2. A subscript after digits is a base
// (1200_7) and is dropped: the digits are the answer in that base.
func (p *parser) number() (*Node, error) {
	var b strings.Builder
	dot := false
	for p.pos < len(p.toks) {
		t := p.peek()
		if t.cmd {
			break
		}
		if isDigit(t.text[0]) {
			b.WriteString(t.text)
		} else if t.text == "." && !dot && b.Len() > 0 && (p.pos+1 == len(p.toks) || p.toks[p.pos+1].cmd || !isDigit(p.toks[p.pos+1].text[0])) {
			dot = true // "1./3": a trailing decimal point
		} else if t.text == "." && !dot && p.pos+1 < len(p.toks) && !p.toks[p.pos+1].cmd && isDigit(p.toks[p.pos+1].text[0]) {
			dot = true
			b.WriteByte('.')
		} else {
			break
		}
		p.pos++
	}
	s := b.String()
	if s == "" {
		return nil, p.errf("lone '.'")
	}
	if dot && (p.atCmd("overline") || p.atCmd("dot")) { // 0.1\overline{6}
		if rep, ok := p.repetend(); ok {
			return &Node{Kind: KNum, Num: repeating(s, rep)}, nil
		}
	}
	// scientific notation: 3e5, 1.2E-3
	if p.pos+1 < len(p.toks) && (p.at("e") || p.at("E")) {
		j := p.pos + 1
		sign := ""
		if !p.toks[j].cmd && (p.toks[j].text == "-" || p.toks[j].text == "+") {
			sign = p.toks[j].text
			j++
		}
		k := j
		for k < len(p.toks) && !p.toks[k].cmd && isDigit(p.toks[k].text[0]) {
			k++
		}
		if k > j && k-j < 5 {
			var e strings.Builder
			for _, tk := range p.toks[j:k] {
				e.WriteString(tk.text)
			}
			s += "e" + sign + e.String()
			p.pos = k
		}
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, p.errf("bad number %q", s)
	}
	if p.at("_") { // base subscript
		p.pos++
		if _, err := p.arg(); err != nil {
			return nil, err
		}
	}
	n := &Node{Kind: KNum, Num: r}
	if !dot && r.IsInt() && p.atCmd("frac") {
		save := p.pos
		if fr, err := p.command(); err == nil && isIntRatio(fr) {
			q := fracValue(fr)
			if r.Sign() >= 0 && q.Sign() > 0 {
				return &Node{Kind: KNum, Num: new(big.Rat).Add(r, q)}, nil
			}
		}
		p.pos = save
	}
	return n, nil
}

// repetend reads the repeating digits of a decimal, \overline{36} or
// \dot{3} (or \overline3), and moves past them; ok is false, with the
// position unchanged, when the argument is not digits only.
func (p *parser) repetend() (string, bool) {
	save := p.pos
	p.pos++ // \overline or \dot
	var d strings.Builder
	braced := p.at("{")
	if braced {
		p.pos++
	}
	for p.pos < len(p.toks) && !p.peek().cmd && isDigit(p.peek().text[0]) && (braced || d.Len() == 0) {
		d.WriteString(p.peek().text)
		p.pos++
	}
	if d.Len() == 0 || braced && !p.at("}") {
		p.pos = save
		return "", false
	}
	if braced {
		p.pos++
	}
	return d.String(), true
}

// repeating returns the value of the decimal s ("0.1" or "0", digits
// before the repetend) followed by rep repeated forever:
// s + rep / (10^len(fraction digits) * (10^len(rep) - 1)).
func repeating(s, rep string) *big.Rat {
	_, frac, _ := strings.Cut(s, ".")
	r, _ := new(big.Rat).SetString(s)
	num, _ := new(big.Int).SetString(rep, 10)
	ten := big.NewInt(10)
	den := new(big.Int).Exp(ten, big.NewInt(int64(len(rep))), nil)
	den.Sub(den, big.NewInt(1))
	den.Mul(den, new(big.Int).Exp(ten, big.NewInt(int64(len(frac))), nil))
	return r.Add(r, new(big.Rat).SetFrac(num, den))
}

func isIntRatio(n *Node) bool {
	return n.Kind == KMul && len(n.Args) == 2 && n.Args[0].Kind == KNum && n.Args[0].Num.IsInt() &&
		n.Args[1].Kind == KPow && n.Args[1].Args[0].Kind == KNum && n.Args[1].Args[0].Num.IsInt() &&
		n.Args[1].Args[0].Num.Sign() != 0
}

func fracValue(n *Node) *big.Rat {
	return new(big.Rat).Quo(n.Args[0].Num, n.Args[1].Args[0].Num)
}

func (p *parser) command() (*Node, error) {
	t := p.peek()
	p.pos++
	switch t.text {
	case "frac", "dfrac", "tfrac", "cfrac", "binom", "dbinom", "tbinom":
		a, err := p.arg()
		if err != nil {
			return nil, err
		}
		b, err := p.arg()
		if err != nil {
			return nil, err
		}
		if strings.HasSuffix(t.text, "binom") {
			return &Node{Kind: KFunc, Name: "binom", Args: []*Node{a, b}}, nil
		}
		return &Node{Kind: KMul, Args: []*Node{a, inverse(b)}}, nil
	case "sqrt":
		if p.at("[") {
			idx, err := p.group("[", "]")
			if err != nil {
				return nil, err
			}
			x, err := p.arg()
			if err != nil {
				return nil, err
			}
			return &Node{Kind: KPow, Args: []*Node{x, inverse(idx)}}, nil
		}
		x, err := p.arg()
		if err != nil {
			return nil, err
		}
		return &Node{Kind: KFunc, Name: "sqrt", Args: []*Node{x}}, nil
	case "pi":
		return &Node{Kind: KConst, Name: "pi"}, nil
	case "infty", "infinity":
		return &Node{Kind: KConst, Name: "inf"}, nil
	case "mathbf", "mathit", "boldsymbol":
		return p.arg()
	case "vec", "overline", "bar", "hat", "dot", "ddot", "tilde", "widetilde", "widehat":
		// a decorated symbol is another variable: \dot{x} is not x
		x, err := p.arg()
		if err != nil {
			return nil, err
		}
		n := &Node{Kind: KSym, Name: `\` + t.text + "{" + x.String() + "}"}
		if p.at("_") {
			p.pos++
			sub, err := p.arg()
			if err != nil {
				return nil, err
			}
			n.Name += "_" + sub.String()
		}
		return n, nil
	case "lfloor", "lceil":
		closer, name := "rfloor", "floor"
		if t.text == "lceil" {
			closer, name = "rceil", "ceil"
		}
		x, err := p.expr()
		if err != nil {
			return nil, err
		}
		if !p.atCmd(closer) {
			return nil, p.errf("missing \\%s", closer)
		}
		p.pos++
		return &Node{Kind: KFunc, Name: name, Args: []*Node{x}}, nil
	case "operatorname":
		if !p.at("{") {
			return nil, p.errf("\\operatorname needs a braced name")
		}
		var name strings.Builder
		p.pos++
		for p.pos < len(p.toks) && !p.at("}") {
			name.WriteString(p.peek().text)
			p.pos++
		}
		if !p.at("}") {
			return nil, p.errf("missing } after \\operatorname")
		}
		p.pos++
		return p.applyFunc(name.String())
	}
	if symbols[t.text] {
		n := &Node{Kind: KSym, Name: `\` + t.text}
		if p.at("_") {
			p.pos++
			sub, err := p.arg()
			if err != nil {
				return nil, err
			}
			n.Name += "_" + sub.String()
		}
		return n, nil
	}
	if f, ok := funcs[t.text]; ok {
		return p.applyFunc(f)
	}
	return nil, p.errf("unknown command \\%s", t.text)
}

// applyFunc reads f^k_b(arg): sin^2 x is (sin x)^2, \log_2 8 is log base 2,
// and an argument without parentheses is one power-level factor with the
// factors implicitly multiplied to it that are not functions (\sin 2x).
func (p *parser) applyFunc(f string) (*Node, error) {
	var pow, base *Node
	for p.at("^") || p.at("_") {
		isPow := p.at("^")
		p.pos++
		s, err := p.script()
		if err != nil {
			return nil, err
		}
		if isPow {
			pow = s
		} else {
			base = s
		}
	}
	var x *Node
	var err error
	if p.at("(") {
		x, err = p.group("(", ")")
	} else {
		x, err = p.power()
		if err == nil {
			fs := []*Node{x}
			for p.startsPrimary() && !p.peek().cmd && !p.at("(") {
				g, err := p.power()
				if err != nil {
					return nil, err
				}
				fs = append(fs, g)
			}
			if len(fs) > 1 {
				x = &Node{Kind: KMul, Args: fs}
			}
		}
	}
	if err != nil {
		return nil, err
	}
	n := &Node{Kind: KFunc, Name: f, Args: []*Node{x}}
	if base != nil {
		if f != "log" {
			return nil, p.errf("subscript on %s", f)
		}
		n.Args = append(n.Args, base)
	}
	if pow != nil {
		if inv, ok := map[string]string{"sin": "asin", "cos": "acos", "tan": "atan"}[f]; ok &&
			pow.Kind == KNum && pow.Num.Cmp(big.NewRat(-1, 1)) == 0 {
			n.Name = inv // sin^{-1} x is arcsin x
			return n, nil
		}
		n = &Node{Kind: KPow, Args: []*Node{n, pow}}
	}
	return n, nil
}
