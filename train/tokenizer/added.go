package tokenizer

import (
	"sort"
	"strings"
	"unicode"
)

// addedToken is an entry of tokenizer.json's added_tokens: matched in the raw
// text before normalisation and pre-tokenization, never split by BPE.
type addedToken struct {
	id             int
	content        string
	special        bool
	lstrip, rstrip bool
}

// addedTokens finds added tokens in text: leftmost match first, the longest
// of those starting at one position.
type addedTokens struct {
	ids     map[string]int
	special map[int]bool
	tokens  []addedToken
	byFirst [256][]int // first byte -> indexes into tokens, longest first
}

// segment is a piece of text: an added token (id >= 0) or plain text (id -1).
type segment struct {
	start, end int
	id         int
}

func (a *addedTokens) add(tok addedToken) {
	if a.ids == nil {
		a.ids, a.special = map[string]int{}, map[int]bool{}
	}
	a.ids[tok.content] = tok.id
	if tok.special {
		a.special[tok.id] = true
	}
	a.tokens = append(a.tokens, tok)
}

func (a *addedTokens) finish() {
	for i, tok := range a.tokens {
		f := tok.content[0]
		a.byFirst[f] = append(a.byFirst[f], i)
	}
	for f := range a.byFirst {
		l := a.byFirst[f]
		sort.SliceStable(l, func(i, j int) bool { return len(a.tokens[l[i]].content) > len(a.tokens[l[j]].content) })
	}
}

// split cuts text into plain segments and added tokens.
func (a *addedTokens) split(text string) []segment {
	var segs []segment
	plain := 0 // start of the current plain segment
	for i := 0; i < len(text); i++ {
		cands := a.byFirst[text[i]]
		if len(cands) == 0 {
			continue
		}
		for _, c := range cands {
			tok := &a.tokens[c]
			if !strings.HasPrefix(text[i:], tok.content) {
				continue
			}
			start, end := i, i+len(tok.content)
			if tok.lstrip {
				start = plain + len(strings.TrimRightFunc(text[plain:start], unicode.IsSpace))
			}
			if tok.rstrip {
				end = len(text) - len(strings.TrimLeftFunc(text[end:], unicode.IsSpace))
			}
			if start > plain {
				segs = append(segs, segment{start: plain, end: start, id: -1})
			}
			segs = append(segs, segment{start: start, end: end, id: tok.id})
			plain = end
			i = end - 1
			break
		}
	}
	if plain < len(text) {
		segs = append(segs, segment{start: plain, end: len(text), id: -1})
	}
	return segs
}
