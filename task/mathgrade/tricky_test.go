package mathgrade

import "testing"

// trickyPairs are answer spellings seen in MATH, Minerva and OlympiadBench
// solutions and in model outputs on them: ±, intervals with \infty,
// repeating decimals, ratios, degrees, units, matrices, several answers,
// scientific notation, nested roots, negative fractions, bases, mixed
// numbers and percent.
var trickyPairs = []struct {
	gold, resp string
	want       bool
}{
	// ±
	{`\pm 3`, `3, -3`, true},
	{`\pm\sqrt{3}`, `-\sqrt3, \sqrt3`, true},
	{`2 \pm \sqrt{5}`, `2+\sqrt{5}`, false},
	{`x = \pm 2`, `2, -2`, true},
	{`\frac{-1 \pm \sqrt{5}}{2}`, `\frac{-1+\sqrt5}{2}, \frac{-1-\sqrt5}{2}`, true},
	{`-3 \pm 2i`, `-3+2i, -3-2i`, true},
	{`\{-1, 1\}`, `x = \pm 1`, true},
	// intervals with \infty
	{`(-\infty, -2] \cup [3, \infty)`, `x \le -2 \text{ or } x \ge 3`, true},
	{`(-\infty,\infty)`, `(-\infty, +\infty)`, true},
	{`[-2, \infty)`, `[-2,\infty]`, true},
	{`(-\infty, 0)`, `(-\infty, 0]`, false},
	{`x \in [2, 5]`, `[2,5]`, true},
	{`x \in [2,5]`, `2 \le x \le 5`, true},
	{`[1, 4)`, `1 \le x < 4`, true},
	{`(-3, 2)`, `x\in(-3,2)`, true},
	{`\left[ -\frac{1}{2}, \frac{1}{2} \right]`, `[-0.5, 0.5]`, true},
	{`x<-1 \text{ or } x>2`, `(-\infty,-1)\cup(2,\infty)`, true},
	{`\infty`, `+\infty`, true},
	// repeating decimals
	{`\frac{1}{3}`, `0.\overline{3}`, true},
	{`0.\overline{36}`, `\frac{4}{11}`, true},
	{`0.1\overline{6}`, `\frac{1}{6}`, true},
	{`0.\overline{3}`, `0.3`, false},
	{`0.\overline{142857}`, `\frac{1}{7}`, true},
	{`1.\overline{3}`, `\frac43`, true},
	{`-\frac{2}{3}`, `-0.\overline{6}`, true},
	// ratios
	{`3:1`, `3 : 1`, true},
	{`3:1`, `3`, false},
	// degrees vs radians
	{`30^\circ`, `30`, true},
	{`30^\circ`, `\frac{\pi}{6}`, false},
	{`\frac{\pi}{6}`, `30`, false},
	{`120^{\circ}`, `120^\circ`, true},
	{`\frac{\pi}{3}`, `60^\circ`, false},
	{`25^\circ \text{C}`, `25`, true},
	// units in \text, \mathrm, \mbox
	{`10\text{ cm}^2`, `10`, true},
	{`\$18.90`, `18.9`, true},
	{`\text{12 inches}`, `12`, true},
	{`5\text{ m/s}`, `5`, true},
	{`9.8 \text{ m/s}^2`, `9.8`, true},
	{`5 \mathrm{~s}`, `5`, true},
	{`1.2 \times 10^{-5} \mathrm{~m}`, `1.2e-5`, true},
	{`3\sqrt{2}`, `3 \sqrt{2} \text{ units}`, true},
	{`\frac{9}{2}`, `4.5 \text{ units}^2`, true},
	{`5`, `5 \text{ ways}`, true},
	// matrices
	{`\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}`, `\begin{pmatrix}-1&0\\0&-1\end{pmatrix}`, true},
	{`\begin{pmatrix} 1/2 & 0 \\ 0 & 1/2 \end{pmatrix}`, `\begin{bmatrix} 0.5 & 0 \\ 0 & \frac12 \end{bmatrix}`, true},
	{`\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}`, `\left(\begin{array}{cc} 1 & 2 \\ 3 & 4 \end{array}\right)`, true},
	{`\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}`, `\left(\begin{array}{cc} 1 & 2 \\ 4 & 3 \end{array}\right)`, false},
	{`\begin{pmatrix} 3 \\ -1 \end{pmatrix}`, `\begin{pmatrix} 3 \\ -1 \\ \end{pmatrix}`, true},
	{`\begin{pmatrix} \frac{1}{3} \\ \frac{2}{3} \end{pmatrix}`, `\begin{pmatrix} 1/3 \\ 2/3 \end{pmatrix}`, true},
	// several answers
	{`1, -2`, `-2 \text{ and } 1`, true},
	{`2, 3`, `x=2, 3`, true},
	{`2,3`, `2 \text{ or } 3`, true},
	{`1 \text{ and } 2`, `1,2`, true},
	{`1, 2, 3`, `1, 2, 4`, false},
	// scientific notation
	{`6.02 \times 10^{23}`, `6.02e23`, true},
	{`3 \times 10^{8}`, `300000000`, true},
	{`1.5 \times 10^{-3}`, `0.0015`, true},
	{`1.5 \times 10^{-3}`, `0.015`, false},
	{`2.5 \cdot 10^5`, `2.5*10^5`, true},
	{`6.02 \times 10^{23}`, `6.02 \times 10^{22}`, false},
	{`4.5e-5`, `4.5 \times 10^{-5}`, true},
	{`1.0 \times 10^{3}`, `1000`, true},
	// nested roots
	{`\sqrt{2+\sqrt{3}}`, `\frac{\sqrt{6}+\sqrt{2}}{2}`, true},
	{`\sqrt{\sqrt{16}}`, `2`, true},
	{`\sqrt{3+2\sqrt2}`, `1+\sqrt2`, true},
	{`\sqrt{2+\sqrt3}`, `\sqrt{2-\sqrt3}`, false},
	{`\sqrt[4]{16}`, `2`, true},
	{`\frac{\sqrt{3}}{3}`, `\frac{1}{\sqrt3}`, true},
	{`6\sqrt{2}`, `\sqrt{72}`, true},
	// negative fractions
	{`-\frac{2}{3}`, `-2/3`, true},
	{`-\frac{2}{3}`, `-\dfrac23`, true},
	{`-\frac{2}{3}`, `\frac{2}{3}`, false},
	{`-\frac{1}{2}`, `- \frac{1}{2}`, true},
	{`-\frac{7}{4}`, `-1\frac{3}{4}`, true},
	{`-\frac{2}{3}`, `\frac{2}{-3}`, true},
	// bases
	{`1011_2`, `1011_{2}`, true},
	{`1011_2`, `11`, false},
	{`A3_{16}`, `A3_{16}`, true},
	{`2A_{12}`, `2A_{12}`, true},
	{`2A_{12}`, `2B_{12}`, false},
	// mixed numbers
	{`2\frac{1}{4}`, `\frac{9}{4}`, true},
	{`2\frac{1}{4}`, `2.25`, true},
	{`2 \frac{1}{4}\text{ feet}`, `\frac94`, true},
	{`1\frac{1}{2}`, `\frac{1}{2}`, false},
	{`\frac{3}{2}`, `1 \frac{1}{2}`, true},
	// percent
	{`25\%`, `25 \%`, true},
	{`12.5\%`, `12.5`, true},
	{`25\%`, `25 percent`, true},
	{`25\%`, `0.25`, false},
	{`40\%`, `40\text{\%}`, true},
	{`10\%`, `10 \text{ percent}`, true},
	{`33\frac{1}{3}\%`, `33.\overline{3}\%`, true},
	// thousands separators and misc
	{`1,234.5`, `1234.5`, true},
	{`-1,000`, `-1000`, true},
	{`25`, `025`, true},
	{`\text{(A)}`, `\textbf{(A) } 5`, true},
	{`e^{i\pi}`, `-1`, true},
	{`\frac{1+\sqrt{5}}{2}`, `\frac{1}{2}+\frac{\sqrt5}{2}`, true},
	// more spellings: vectors, plain "and"/"or", words after numbers, ratios
	{`x \in \{1,2\}`, `1,2`, true},
	{`\frac{\sqrt{3}}{2}`, `\frac{\sqrt3}2`, true},
	{`\frac{1}{2}\pi`, `\frac{\pi}{2}`, true},
	{`(1,2)`, `\langle 1, 2 \rangle`, true},
	{`2, 3`, `x=2 or x=3`, true},
	{`2, 3`, `2 and 3`, true},
	{`(-\infty, 3)`, `-\infty < x < 3`, true},
	{`[-2,\infty)`, `x \geq -2`, true},
	{`(-\infty, 3]`, `y \le 3`, true},
	{`\frac{\pi}{2}`, `\frac{\pi}{2} \text{ radians}`, true},
	{`\frac{\pi}{2}`, `\frac{\pi}{2} radians`, true},
	{`3e8`, `3.0 \times 10^8 \text{ m/s}`, true},
	{`2^{100}`, `1267650600228229401496703205376`, true},
	{`10!`, `3628800`, true},
	{`\dbinom{10}{3}`, `120`, true},
	{`\frac{1}{1-i}`, `\frac{1+i}{2}`, true},
	{`y=-x+2`, `x+y=2`, true},
	{`x^2+y^2=25`, `(x-0)^2+(y-0)^2=5^2`, true},
	{`\text{no solution}`, `\text{No Solution}`, true},
	{`1{,}000{,}000`, `10^6`, true},
	{`1,000,000`, `10^6`, true},
	{`1\,000\,000`, `1000000`, true},
	{`\left(2, 5\right]`, `(2,5]`, true},
	{`1101_{\text{two}}`, `1101_2`, true},
	{`\theta = 45^\circ`, `45`, true},
	{`\$1.50`, `1.5`, true},
	{`\sqrt{-4}`, `2i`, true},
	{`\begin{pmatrix} 1 \\ 2 \end{pmatrix}`, `\begin{pmatrix} 1 \\ 2 \end{pmatrix}.`, true},
	{`\begin{pmatrix} 1 & 2 \end{pmatrix}`, `(1, 2)`, true},
	{`\frac{1}{2}`, `\frac{1}{2} \text{ or } 0.5`, false},
	{`5`, `\text{5}`, true},
	{`\text{5 apples}`, `5`, true},
	{`-\frac{1}{2}`, `-.5`, true},
	{`\frac{3}{4}`, `3/4`, true},
	{`2\sqrt{3}`, `2 \sqrt 3`, true},
	{`x=3`, `3.`, true},
	{`\$ 1,000`, `1000`, true},
	{`\$1,000.00`, `1000`, true},
	{`1,000 \text{ dollars}`, `1000`, true},
	{`1{,}000\text{ m}`, `1000`, true},
	{`40^\circ\text{F}`, `40`, true},
	{`3:1`, `3 \colon 1`, true},
	{`3:1`, `3\text{:}1`, true},
	{`\frac{3}{1}`, `3:1`, false},
	{`(3,-1)`, `\left(3, -1\right)`, true},
	{`a=3, b=4`, `(3,4)`, false},
	{`5\text{th}`, `5`, true},
	{`x=5\text{ and }y=3`, `x=5, y=3`, true},
	{`0.\overline{3}`, `\frac{1}{3}`, true},
	{`10^{-3}`, `0.001`, true},
	{`1 \times 10^{-3}`, `10^{-3}`, true},
	{`5.0 \%`, `5`, true},
	{`5\ \%`, `5`, true},
	{`2.\overline{1}`, `\frac{19}{9}`, true},
	{`\frac{19}{9}`, `2.\dot{1}`, true},
	{`3:1`, `6:2`, false},
}

func TestTrickyPairs(t *testing.T) {
	for _, p := range trickyPairs {
		v := Default().Equal(p.gold, p.resp)
		if v.Equal != p.want {
			t.Errorf("Equal(%q, %q) = %v (%s), want %v", p.gold, p.resp, v.Equal, v.How, p.want)
		}
		if w := Default().Equal(p.resp, p.gold); w.Equal != v.Equal {
			t.Errorf("not symmetric: Equal(%q, %q) = %v but reversed %v", p.gold, p.resp, v.Equal, w.Equal)
		}
	}
}
