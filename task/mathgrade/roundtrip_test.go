package mathgrade

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// genExpr writes one random expression twice, in two LaTeX spellings of the
// same value (\frac vs /, \cdot vs implicit product, \sqrt vs ^{1/2}, ...).
func genExpr(r *rand.Rand, depth int) (a, b string) {
	if depth == 0 || r.IntN(4) == 0 {
		switch r.IntN(4) {
		case 0:
			return "x", "x"
		case 1:
			return "y", "y"
		case 2:
			n := r.IntN(9) + 1
			return fmt.Sprint(n), fmt.Sprintf("%d.0", n)
		default:
			n := r.IntN(8) + 2
			return fmt.Sprintf(`\frac{1}{%d}`, n), fmt.Sprintf("1/%d", n)
		}
	}
	x1, x2 := genExpr(r, depth-1)
	y1, y2 := genExpr(r, depth-1)
	switch r.IntN(7) {
	case 0:
		return "(" + x1 + ")+(" + y1 + ")", "(" + y2 + ") + (" + x2 + ")"
	case 1:
		return "(" + x1 + `)\cdot(` + y1 + ")", `\left(` + y2 + `\right)\left(` + x2 + `\right)`
	case 2: // denominators that cannot vanish at real points
		return `\frac{` + x1 + `}{(` + y1 + `)^2+1}`, "(" + x2 + ")/((" + y2 + ")(" + y2 + ")+1)"
	case 3:
		k := r.IntN(3) + 1
		return fmt.Sprintf("(%s)^{%d}", x1, k), fmt.Sprintf("(%s)^%d", x2, k)
	case 4:
		return `\sqrt{(` + x1 + `)^2+1}`, `((` + x2 + `)^{2}+1)^{1/2}`
	case 5:
		return `\sin(` + x1 + `)`, `\cos(\frac{\pi}{2}-(` + x2 + `))`
	default:
		return "-(" + x1 + ")", "(-1)(" + x2 + ")"
	}
}

// TestRoundTrip: 400 random expressions equal their other spelling and
// differ from themselves plus a small constant.
func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 400; i++ {
		a, b := genExpr(r, 4)
		if v := Default().Equal(a, b); !v.Equal {
			t.Errorf("%d: Equal(%q, %q) = %+v, want equal", i, a, b, v)
		}
		if v := Default().Equal(a, "("+b+")+\\frac{1}{1000}"); v.Equal {
			t.Errorf("%d: %q equals itself + 1/1000 (%+v)", i, a, v)
		}
	}
}
