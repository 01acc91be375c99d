// Package mathgrade extracts final answers from model responses, decides
// whether two math answers are equal, groups answers into clusters, and
// computes accuracy metrics (pass@1, avg@k, pass@k, maj@k, bootstrap
// intervals). One Grader serves the probe, the difficulty classifier,
// STAT-Syn's agreement filter, the GRPO reward, evaluation and
// `statjob grade`.
//
// # Pipeline
//
// Extract finds the answer: the last \boxed{...} (braces matched; also
// \boxed 5 and \fbox{...}), else the text after the last "the answer is" /
// "final answer is" / "answer:" (Markdown bold around it is ignored), else
// the last number (1e-5 counts as one); it reports the rule that fired. Normalize rewrites LaTeX (\dfrac, \left/\right, spacing
// commands, degrees, percent, dollars, \text units, thousands separators,
// trailing periods). The normalised text is parsed into a value: a
// multiple-choice letter, an expression tree (ParseExpr), an ordered tuple
// or interval, an unordered set, a matrix, an equation or inequality chain,
// or plain text. Two values are compared structurally; expressions are
// compared as exact rationals (math/big) when both are rational, as complex
// floats when constant but irrational, and at seeded random points when
// variables remain. All work is counted in steps against Config.Budget, so
// a verdict never depends on machine speed or load; running out is "not
// equal" with How "budget".
//
// # Decisions where well-known graders differ
//
// The Hendrycks MATH script compares normalised strings; Qwen2.5-Math's
// evaluation and similar graders add sympy and a numeric tolerance. Here:
//
//   - "50" equals "50\%": the percent sign is dropped, the number kept. 50\%
//     does not equal 0.5 (some graders accept x, x/100 and 100x): accepting
//     a scaled value would also accept wrong answers off by a factor of 100.
//   - "(0,9)" does not equal "[0,9)": open and closed ends matter, because
//     they change the set. A bracket beside ±\infty is ignored. A comma list
//     never equals a parenthesised tuple: (1,2) is a point, "1, 2" is two
//     answers.
//   - Numbers are equal within a relative tolerance, default 1e-8
//     (Qwen's grader uses 1e-4): 0.333 is not 1/3 and 3.14 is not \pi,
//     since MATH asks for exact forms; 0 equals only 0. Config.RelTol
//     (`statjob grade --rel-tol`) loosens it, e.g. for Minerva's physics.
//   - Degrees are dropped: 45^\circ equals 45, never \pi/4.
//   - Words after a value are units or commentary and are dropped
//     ("162\text{ minutes}", "864 \mbox{ inches}^2", "5 cm"); an answer that is
//     only words (\text{Evelyn}) is compared as case-insensitive text.
//   - A single variable on the left of "=" that does not occur on the right
//     is a label: "x = 5" equals "5", "y = 2x+3" equals "2x+3". Two
//     equations are equal with sides swapped or scaled by a non-zero
//     constant (x+y=2 and 2x+2y=4).
//   - "x \approx 3.14" is read as "x = 3.14"; after anything but a lone
//     variable, "\approx ..." is commentary on an exact answer and is
//     dropped: "\frac{\sqrt3}{2} \approx 0.866" is \frac{\sqrt3}{2}, so it
//     equals a rounded gold 0.866 only under a looser RelTol (1e-3).
//   - A tuple of variables on the left of "=" is a label too:
//     "(x,y) = (2,4)" equals (2,4).
//   - Units split over several \mathrm{} are dropped with the operators
//     between them: "1.5 \mathrm{~km} / \mathrm{s}" is 1.5.
//   - Inequalities keep direction and strictness (x>3 is not x\ge 3); a
//     chain in one variable equals the interval it describes (x>3 and
//     (3,\infty); 2<x\le 5 and (2,5]).
//   - A comma is a thousands separator only when the whole answer is a
//     number in that form (1,000 or 1,\!000 or 1{,}000 with no space); "1, 000"
//     is a list of two numbers.
//   - An integer followed by \frac of two integers is a mixed number:
//     6\frac{3}{4} = 27/4 (the MATH convention), not 6·3/4. 2\frac{\pi}{3} is
//     still a product.
//   - A repeating decimal is the fraction it denotes: 0.\overline{3} and
//     0.1\dot{6} equal 1/3 and 1/6 exactly; 0.333 and 0.3 do not.
//   - A ratio (3:1, 3 \colon 1) is compared as written, up to spacing: 3:1
//     is not 6:2 and not 3, since MATH asks for the ratio in lowest terms.
//   - Words after a number inside one \text{} are dropped too:
//     \text{5 apples} equals 5. "and" / "or" after a number or a closing
//     bracket, outside \text, separate answers: "2 and 3" is "2, 3".
//   - \langle 1, 2 \rangle is the tuple (1, 2); \begin{array}{cc}...
//     in brackets is a matrix like pmatrix; "radians" is a unit word.
//   - A subscripted base is dropped: 1200_7 equals 1200 (the question names
//     the base).
//   - Comma lists, \{...\}, unions and a ± are unordered multisets: every
//     item must pair with one item of the other (sizes equal).
//   - A one-row or one-column matrix equals the tuple of its entries:
//     \begin{pmatrix}1\\2\end{pmatrix} equals (1,2).
//   - Multiple choice: A–E bare, in parentheses or in \text{}, and "(C) 12",
//     read as the letter.
//   - e is Euler's number, i the imaginary unit, \log without a base is
//     base 10 (MATH's usage), angles of trig functions are radians, and
//     \sin^{-1} is \arcsin.
//   - Expressions with variables are compared at Config.Points seeded random
//     points in ±[0.5, 2.5] in complex arithmetic (so \sqrt{x-3} and \ln x
//     are defined everywhere and both sides take the same branch); a value
//     that overflows a float is "unknown", never 0 or ∞.
//   - An empty answer equals nothing, not even another empty answer.
//
// # Clusters
//
// Equality under a tolerance is not transitive, so Cluster uses leader
// clustering in input order: each answer joins the first cluster whose
// first member equals it. Members equal their leader, not necessarily each
// other, and the result depends only on the order of the answers.
package mathgrade
