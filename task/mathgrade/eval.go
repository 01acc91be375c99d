package mathgrade

import (
	"errors"
	"math"
	"math/big"
	"math/cmplx"
)

// errBudget is returned when a comparison has used up its work budget.
var errBudget = errors.New("work budget exhausted")

// errNotExact means a tree has no exact rational value (it holds a
// variable, an irrational function, or an exponent too large to expand).
var errNotExact = errors.New("not an exact rational")

// budget counts work in steps: one step per node evaluated, plus the word
// size of big-number operations. It makes a verdict independent of
// machine speed and load.
type budget struct{ left int }

func (b *budget) spend(n int) error {
	b.left -= n
	if b.left < 0 {
		return errBudget
	}
	return nil
}

// maxExactBits bounds the size of an exact rational built by exact.
const maxExactBits = 1 << 16

func ratWords(r *big.Rat) int {
	return (r.Num().BitLen()+r.Denom().BitLen())/64 + 1
}

// exact evaluates a tree without variables to a rational, if it has one.
func exact(n *Node, b *budget) (*big.Rat, error) {
	if err := b.spend(1); err != nil {
		return nil, err
	}
	switch n.Kind {
	case KNum:
		return n.Num, nil
	case KNeg:
		x, err := exact(n.Args[0], b)
		if err != nil {
			return nil, err
		}
		return new(big.Rat).Neg(x), nil
	case KAdd, KMul:
		acc := big.NewRat(0, 1)
		if n.Kind == KMul {
			acc.SetInt64(1)
		}
		for _, a := range n.Args {
			x, err := exact(a, b)
			if err != nil {
				return nil, err
			}
			if n.Kind == KAdd {
				acc.Add(acc, x)
			} else {
				acc.Mul(acc, x)
			}
			if err := b.spend(ratWords(acc)); err != nil {
				return nil, err
			}
			if acc.Num().BitLen()+acc.Denom().BitLen() > maxExactBits {
				return nil, errNotExact
			}
		}
		return acc, nil
	case KPow:
		base, err := exact(n.Args[0], b)
		if err != nil {
			return nil, err
		}
		e, err := exact(n.Args[1], b)
		if err != nil {
			return nil, err
		}
		if !e.IsInt() || !e.Num().IsInt64() {
			return nil, errNotExact
		}
		k := e.Num().Int64()
		if base.Sign() == 0 {
			if k < 0 {
				return nil, errNotExact
			}
			if k == 0 {
				return big.NewRat(1, 1), nil
			}
			return base, nil
		}
		ak := k
		if ak < 0 {
			ak = -k
		}
		bits := int64(base.Num().BitLen() + base.Denom().BitLen())
		if ak*bits > maxExactBits {
			return nil, errNotExact
		}
		if err := b.spend(int(ak*bits/64) + 1); err != nil {
			return nil, err
		}
		num := new(big.Int).Exp(base.Num(), big.NewInt(ak), nil)
		den := new(big.Int).Exp(base.Denom(), big.NewInt(ak), nil)
		if k < 0 {
			num, den = den, num
		}
		return new(big.Rat).SetFrac(num, den), nil
	case KFunc:
		switch n.Name {
		case "abs", "floor", "ceil", "fact", "binom", "sqrt":
		default:
			return nil, errNotExact
		}
		args := make([]*big.Rat, len(n.Args))
		for i, a := range n.Args {
			x, err := exact(a, b)
			if err != nil {
				return nil, err
			}
			args[i] = x
		}
		return exactFunc(n.Name, args, b)
	}
	return nil, errNotExact
}

func exactFunc(name string, a []*big.Rat, b *budget) (*big.Rat, error) {
	x := a[0]
	switch name {
	case "abs":
		return new(big.Rat).Abs(x), nil
	case "floor", "ceil":
		q := new(big.Int).Div(x.Num(), x.Denom()) // Euclidean: floor for positive denominators
		if name == "ceil" && !x.IsInt() {
			q.Add(q, big.NewInt(1))
		}
		return new(big.Rat).SetInt(q), nil
	case "sqrt":
		if x.Sign() < 0 {
			return nil, errNotExact
		}
		n, d := new(big.Int).Sqrt(x.Num()), new(big.Int).Sqrt(x.Denom())
		if new(big.Int).Mul(n, n).Cmp(x.Num()) != 0 || new(big.Int).Mul(d, d).Cmp(x.Denom()) != 0 {
			return nil, errNotExact
		}
		return new(big.Rat).SetFrac(n, d), nil
	case "fact":
		if !x.IsInt() || x.Sign() < 0 || !x.Num().IsInt64() || x.Num().Int64() > 5000 {
			return nil, errNotExact
		}
		k := x.Num().Int64()
		if err := b.spend(int(k)); err != nil {
			return nil, err
		}
		return new(big.Rat).SetInt(new(big.Int).MulRange(1, k)), nil
	case "binom":
		y := a[1]
		if !x.IsInt() || !y.IsInt() || !x.Num().IsInt64() || !y.Num().IsInt64() || x.Num().Int64() > 10000 || x.Sign() < 0 {
			return nil, errNotExact
		}
		nn, kk := x.Num().Int64(), y.Num().Int64()
		if kk < 0 || kk > nn {
			return big.NewRat(0, 1), nil
		}
		if err := b.spend(int(min(kk, nn-kk)) + 1); err != nil {
			return nil, err
		}
		return new(big.Rat).SetInt(new(big.Int).Binomial(nn, kk)), nil
	}
	return nil, errNotExact
}

// numeric evaluates a tree in complex arithmetic with the variables bound by
// env. Complex arithmetic keeps \sqrt{x-3} and \ln(x) defined at every
// sample point, so both sides of a comparison see the same branch.
func numeric(n *Node, env map[string]complex128, b *budget) (complex128, error) {
	if err := b.spend(1); err != nil {
		return 0, err
	}
	switch n.Kind {
	case KNum:
		f, _ := n.Num.Float64()
		if math.IsInf(f, 0) {
			return cmplx.NaN(), nil // 1e9999 is a number, not \infty
		}
		return complex(f, 0), nil
	case KSym:
		return env[n.Name], nil
	case KConst:
		switch n.Name {
		case "pi":
			return complex(math.Pi, 0), nil
		case "e":
			return complex(math.E, 0), nil
		case "i":
			return 1i, nil
		case "inf":
			return complex(math.Inf(1), 0), nil
		}
	case KNeg:
		x, err := numeric(n.Args[0], env, b)
		return -x, err
	case KAdd, KMul:
		var acc complex128
		if n.Kind == KMul {
			acc = 1
		}
		for _, a := range n.Args {
			x, err := numeric(a, env, b)
			if err != nil {
				return 0, err
			}
			if n.Kind == KAdd {
				acc += x
			} else {
				acc *= x
			}
		}
		return acc, nil
	case KPow:
		x, err := numeric(n.Args[0], env, b)
		if err != nil {
			return 0, err
		}
		y, err := numeric(n.Args[1], env, b)
		if err != nil {
			return 0, err
		}
		return overflow(cpow(x, y), x, y), nil
	case KFunc:
		args := make([]complex128, len(n.Args))
		for i, a := range n.Args {
			x, err := numeric(a, env, b)
			if err != nil {
				return 0, err
			}
			args[i] = x
		}
		return overflow(numFunc(n.Name, args), args...), nil
	}
	return cmplx.NaN(), nil
}

// cpow is x^y; a real base to an integer or rational power with odd
// denominator stays real (\sqrt[3]{-8} = -2), as a reader expects.
func cpow(x, y complex128) complex128 {
	if imag(x) == 0 && imag(y) == 0 {
		xr, yr := real(x), real(y)
		if xr >= 0 || yr == math.Trunc(yr) {
			return complex(math.Pow(xr, yr), 0)
		}
		// odd root of a negative number: 1/3, 2/3, -1/5 ...
		for _, d := range []float64{3, 5, 7, 9} {
			nr := yr * d
			if math.Abs(nr-math.Round(nr)) < 1e-9 {
				v := math.Pow(-xr, yr)
				if int64(math.Round(nr))%2 != 0 {
					v = -v
				}
				return complex(v, 0)
			}
		}
	}
	if x == 0 {
		if real(y) > 0 {
			return 0
		}
		return cmplx.Inf()
	}
	return cmplx.Pow(x, y)
}

func numFunc(name string, a []complex128) complex128 {
	x := a[0]
	switch name {
	case "sin":
		return cmplx.Sin(x)
	case "cos":
		return cmplx.Cos(x)
	case "tan":
		return cmplx.Tan(x)
	case "sec":
		return 1 / cmplx.Cos(x)
	case "csc":
		return 1 / cmplx.Sin(x)
	case "cot":
		return 1 / cmplx.Tan(x)
	case "asin":
		return cmplx.Asin(x)
	case "acos":
		return cmplx.Acos(x)
	case "atan":
		return cmplx.Atan(x)
	case "sinh":
		return cmplx.Sinh(x)
	case "cosh":
		return cmplx.Cosh(x)
	case "tanh":
		return cmplx.Tanh(x)
	case "exp":
		return cmplx.Exp(x)
	case "ln":
		return cmplx.Log(x)
	case "log":
		if len(a) > 1 {
			return cmplx.Log(x) / cmplx.Log(a[1])
		}
		return cmplx.Log10(x) // \log without a base: base 10, as in MATH
	case "sqrt":
		if imag(x) == 0 && real(x) >= 0 {
			return complex(math.Sqrt(real(x)), 0)
		}
		return cmplx.Sqrt(x)
	case "abs":
		return complex(cmplx.Abs(x), 0)
	case "floor":
		return complex(math.Floor(real(x)), 0)
	case "ceil":
		return complex(math.Ceil(real(x)), 0)
	case "fact":
		g, _ := math.Lgamma(real(x) + 1)
		return complex(math.Round(math.Exp(g)*1e6)/1e6, 0)
	case "binom":
		n, k := real(x), real(a[1])
		ln, _ := math.Lgamma(n + 1)
		lk, _ := math.Lgamma(k + 1)
		lnk, _ := math.Lgamma(n - k + 1)
		return complex(math.Exp(ln-lk-lnk), 0)
	}
	return cmplx.NaN()
}

// vars collects the variable names of a tree.
func vars(n *Node, into map[string]bool) {
	if n.Kind == KSym {
		into[n.Name] = true
	}
	for _, a := range n.Args {
		vars(a, into)
	}
}

func hasInf(n *Node) bool {
	if n.Kind == KConst && n.Name == "inf" {
		return true
	}
	for _, a := range n.Args {
		if hasInf(a) {
			return true
		}
	}
	return false
}

// overflow turns a result that left float range from finite arguments
// (2004!, 10^{400}) into NaN: such a value cannot be compared as a float,
// and 1/2004! must not become 0.
func overflow(z complex128, args ...complex128) complex128 {
	if finite(z) {
		return z
	}
	for _, a := range args {
		if !finite(a) {
			return z
		}
	}
	return cmplx.NaN()
}
