package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// The split regexes of Qwen2/2.5/3 and Llama-3 (GPT-4's cl100k pattern, with
// single digits for Qwen) and of GPT-4o (o200k, also Phi-4-mini's). They are
// matched by hand-written code that follows the regex's leftmost-alternative,
// backtracking semantics exactly, about ten times faster than regexp2; tests
// check both agree. Any other pattern goes through regexp2.
const (
	qwenPattern   = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	o200kPattern  = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// matcher returns the end of the pattern's match at s[i] (always > i: every
// known pattern matches at every position, so no text lies between matches).
type matcher func(s string, i int) int

// knownPatterns maps a known pattern to its matcher.
var knownPatterns = map[string]matcher{
	qwenPattern:   func(s string, i int) int { return matchCL100K(s, i, 1) },
	llama3Pattern: func(s string, i int) int { return matchCL100K(s, i, 3) },
	o200kPattern:  matchO200K,
}

// charClass is the class of a rune as the patterns see it, one bit each;
// \p{L} is the union of the letter classes.
type charClass uint8

const (
	classOther    charClass = 1 << iota // none below: punctuation, symbols, controls
	classUpper                          // \p{Lu} \p{Lt}
	classLower                          // \p{Ll}
	classCaseless                       // \p{Lm} \p{Lo}: letters on either side of o200k's case split
	classMark                           // \p{M}: not \p{L}; o200k joins marks to letters
	classNumber                         // \p{N}
	classSpace                          // \s

	classLetter = classUpper | classLower | classCaseless // \p{L}
	classPunct  = classOther | classMark                  // [^\s\p{L}\p{N}]
	classHead   = classUpper | classCaseless | classMark  // o200k's [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
	classTail   = classLower | classCaseless | classMark  // o200k's [\p{Ll}\p{Lm}\p{Lo}\p{M}]
)

var asciiClass = func() (t [utf8.RuneSelf]charClass) {
	for r := range rune(utf8.RuneSelf) {
		t[r] = classOf(r)
	}
	return t
}()

// classOf is the class of r as \p{..} and \s see it (regexp2's \s is
// unicode.IsSpace: Unicode White_Space, as in Hugging Face's Oniguruma).
func classOf(r rune) charClass {
	switch {
	case unicode.IsLetter(r):
		switch {
		case unicode.IsLower(r):
			return classLower
		case unicode.IsUpper(r) || unicode.IsTitle(r):
			return classUpper
		}
		return classCaseless
	case unicode.IsMark(r):
		return classMark
	case unicode.IsNumber(r):
		return classNumber
	case unicode.IsSpace(r):
		return classSpace
	}
	return classOther
}

// at decodes the rune at s[i] and its class.
func at(s string, i int) (rune, int, charClass) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1, asciiClass[c]
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	return r, n, classOf(r)
}

// skip returns the end of the run of runes in classes c starting at i, at
// most max runes (max < 0: unbounded).
func skip(s string, i int, c charClass, max int) int {
	for ; i < len(s) && max != 0; max-- {
		_, n, ci := at(s, i)
		if ci&c == 0 {
			break
		}
		i += n
	}
	return i
}

// knownSplit appends the pre-tokens of s[start:end] under a known pattern.
func knownSplit(dst [][2]int, s string, start, end int, match matcher) [][2]int {
	s = s[:end]
	for i := start; i < end; {
		j := match(s, i)
		dst = append(dst, [2]int{i, j})
		i = j
	}
	return dst
}

// matchCL100K matches the Qwen and Llama-3 pattern (\p{N} taken maxDigits
// at a time) at s[i]. The alternatives are tried in the regex's order.
func matchCL100K(s string, i, maxDigits int) int {
	r0, n0, c0 := at(s, i)
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if j := withContraction(s, i); j > i {
		return j
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if c0&classLetter != 0 {
		return skip(s, i+n0, classLetter, -1)
	}
	if c0 != classNumber && r0 != '\r' && r0 != '\n' && i+n0 < len(s) {
		if _, n1, c1 := at(s, i+n0); c1&classLetter != 0 {
			return skip(s, i+n0+n1, classLetter, -1)
		}
	}
	// \p{N} or \p{N}{1,3}
	if c0 == classNumber {
		return skip(s, i+n0, classNumber, maxDigits-1)
	}
	// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
	if j, ok := matchPunct(s, i, r0, "\r\n"); ok {
		return j
	}
	return matchSpace(s, i)
}

// matchO200K matches the o200k pattern at s[i]. Its first two alternatives
// split words where a lowercase run ends ("XMLHttpRequest" is "XMLHttp"
// "Request") and take a contraction in any case after the word ("we'LL").
func matchO200K(s string, i int) int {
	r0, n0, c0 := at(s, i)
	// [^\r\n\p{L}\p{N}]? then [head]*[tail]+ or [head]+[tail]*, each with
	// an optional contraction: the first alternative with and then without
	// the prefix, then the second.
	prefix := c0&(classLetter|classNumber) == 0 && r0 != '\r' && r0 != '\n'
	if prefix {
		if j, ok := headsThenTails(s, i+n0); ok {
			return j
		}
	}
	if j, ok := headsThenTails(s, i); ok {
		return j
	}
	if prefix && i+n0 < len(s) {
		if _, _, c1 := at(s, i+n0); c1&classHead != 0 {
			return headsAndTails(s, i+n0)
		}
	}
	if c0&classHead != 0 {
		return headsAndTails(s, i)
	}
	// \p{N}{1,3}
	if c0 == classNumber {
		return skip(s, i+n0, classNumber, 2)
	}
	// ' ?[^\s\p{L}\p{N}]+[\r\n/]*'
	if j, ok := matchPunct(s, i, r0, "\r\n/"); ok {
		return j
	}
	return matchSpace(s, i)
}

// headsThenTails matches [head]*[tail]+ and an optional contraction at
// s[i]. The greedy head run gives back runes until a tail rune follows: the
// tail run after it when the next rune is lowercase, else up to the head
// run's last caseless letter or mark (a rune of both classes).
func headsThenTails(s string, i int) (int, bool) {
	j, lastBoth := i, -1
	for j < len(s) {
		_, n, c := at(s, j)
		if c&classHead == 0 {
			break
		}
		j += n
		if c&classTail != 0 {
			lastBoth = j
		}
	}
	if j < len(s) {
		if _, n, c := at(s, j); c == classLower {
			return withContraction(s, skip(s, j+n, classTail, -1)), true
		}
	}
	if lastBoth >= 0 {
		return withContraction(s, lastBoth), true
	}
	return 0, false
}

// headsAndTails matches [head]+[tail]* and an optional contraction at s[i],
// whose rune is a head.
func headsAndTails(s string, i int) int {
	return withContraction(s, skip(s, skip(s, i, classHead, -1), classTail, -1))
}

// withContraction extends a match ending at j by a contraction after it.
func withContraction(s string, j int) int {
	if j < len(s) && s[j] == '\'' {
		if k := contraction(s[j+1:]); k > 0 {
			return j + 1 + k
		}
	}
	return j
}

// matchPunct matches ' ?[^\s\p{L}\p{N}]+' and then any runes of trail at
// s[i], whose rune is r0.
func matchPunct(s string, i int, r0 rune, trail string) (int, bool) {
	j := i
	if r0 == ' ' {
		j++
	}
	if j >= len(s) {
		return 0, false
	}
	_, n, c := at(s, j)
	if c&classPunct == 0 {
		return 0, false
	}
	j = skip(s, j+n, classPunct, -1)
	for j < len(s) && strings.IndexByte(trail, s[j]) >= 0 {
		j++
	}
	return j, true
}

// matchSpace matches the whitespace alternatives at s[i], a space rune:
// \s*[\r\n]+|\s+(?!\S)|\s+.
func matchSpace(s string, i int) int {
	// Find the run, its last rune and its last \r or \n.
	end, last, lastNL := i, i, -1
	for end < len(s) {
		r, n, c := at(s, end)
		if c != classSpace {
			break
		}
		if r == '\r' || r == '\n' {
			lastNL = end
		}
		last = end
		end += n
	}
	// \s*[\r\n]+ : backtracks to the last newline of the run.
	if lastNL >= 0 {
		return lastNL + 1
	}
	// \s+(?!\S) : the whole run at the end of text, else all but its last rune.
	if end < len(s) && last > i {
		return last
	}
	// \s+ (or \s+(?!\S) at the end of the text)
	return end
}

// contraction returns the length of 's 't 're 've 'm 'll 'd (any case) after
// the apostrophe, or 0.
func contraction(s string) int {
	lower := func(k int) byte {
		if k < len(s) && s[k] >= 'A' && s[k] <= 'Z' {
			return s[k] + 'a' - 'A'
		}
		if k < len(s) {
			return s[k]
		}
		return 0
	}
	switch lower(0) {
	case 's', 't', 'm', 'd':
		return 1
	case 'r', 'v':
		if lower(1) == 'e' {
			return 2
		}
	case 'l':
		if lower(1) == 'l' {
			return 2
		}
	}
	return 0
}
