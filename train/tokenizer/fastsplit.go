package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// The split regexes of Qwen2/2.5/3 and Llama-3 (GPT-4's cl100k pattern, with
// single digits for Qwen). They are matched by hand-written code that follows
// the regex's leftmost-alternative, backtracking semantics exactly, about ten
// times faster than regexp2; tests check both agree. Any other pattern goes
// through regexp2.
const (
	qwenPattern   = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// knownPatterns maps a known pattern to the most digits \p{N} takes at once.
var knownPatterns = map[string]int{qwenPattern: 1, llama3Pattern: 3}

type charClass uint8

const (
	classOther charClass = iota
	classLetter
	classNumber
	classSpace
)

var asciiClass = func() (t [utf8.RuneSelf]charClass) {
	for r := range rune(utf8.RuneSelf) {
		t[r] = classOf(r)
	}
	return t
}()

// classOf is the class of r as \p{L}, \p{N} and \s see it (regexp2's \s is
// unicode.IsSpace: Unicode White_Space, as in Hugging Face's Oniguruma).
func classOf(r rune) charClass {
	switch {
	case unicode.IsLetter(r):
		return classLetter
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

// skip returns the end of the run of class c starting at i, at most max runes
// (max < 0: unbounded).
func skip(s string, i int, c charClass, max int) int {
	for ; i < len(s) && max != 0; max-- {
		_, n, ci := at(s, i)
		if ci != c {
			break
		}
		i += n
	}
	return i
}

// knownSplit appends the pre-tokens of s[start:end] under a known pattern.
func knownSplit(dst [][2]int, s string, start, end, maxDigits int) [][2]int {
	s = s[:end]
	for i := start; i < end; {
		j := matchKnown(s, i, maxDigits)
		dst = append(dst, [2]int{i, j})
		i = j
	}
	return dst
}

// matchKnown returns the end of the pattern's match at s[i] (always > i).
// The alternatives are tried in the regex's order.
func matchKnown(s string, i, maxDigits int) int {
	r0, n0, c0 := at(s, i)
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if r0 == '\'' {
		if k := contraction(s[i+1:]); k > 0 {
			return i + 1 + k
		}
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if c0 == classLetter {
		return skip(s, i+n0, classLetter, -1)
	}
	if c0 != classNumber && r0 != '\r' && r0 != '\n' && i+n0 < len(s) {
		if _, n1, c1 := at(s, i+n0); c1 == classLetter {
			return skip(s, i+n0+n1, classLetter, -1)
		}
	}
	// \p{N} or \p{N}{1,3}
	if c0 == classNumber {
		return skip(s, i+n0, classNumber, maxDigits-1)
	}
	// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
	j := i
	if r0 == ' ' {
		j++
	}
	if j < len(s) {
		if _, n, c := at(s, j); c == classOther {
			j = skip(s, j+n, classOther, -1)
			for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
				j++
			}
			return j
		}
	}
	// r0 is whitespace: find the run, its last rune and its last \r or \n.
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
