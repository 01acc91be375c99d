package tokenizer

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/dlclark/regexp2"
)

// gpt2Pattern is the split of a ByteLevel pre-tokenizer with use_regex.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// splitter is one regex Split of the pre-tokenizer: the text is cut at the
// matches of re (at the text between them with invert), and behavior says
// what becomes of each match, as in Hugging Face's SplitDelimiterBehavior.
type splitter struct {
	re       *regexp2.Regexp
	literal  string // a String pattern, matched without re
	behavior splitBehavior
	invert   bool
	match    matcher // non-nil: re is a known pattern, matched by knownSplit
}

// splitBehavior is what a Split does with a match ("delimiter"), shown on
// "the-final--countdown" split at "-":
type splitBehavior uint8

const (
	isolated           splitBehavior = iota // the - final - - countdown
	removed                                 // the final countdown
	mergedWithPrevious                      // the- final- - countdown
	mergedWithNext                          // the -final - -countdown
	contiguous                              // the - final -- countdown
)

var splitBehaviors = map[string]splitBehavior{
	"Isolated": isolated, "Removed": removed, "MergedWithPrevious": mergedWithPrevious,
	"MergedWithNext": mergedWithNext, "Contiguous": contiguous,
}

type preTokenizerConfig struct {
	Type          string            `json:"type"`
	PreTokenizers []json.RawMessage `json:"pretokenizers"`
	Pattern       struct {
		Regex  *string `json:"Regex"`
		String *string `json:"String"`
	} `json:"pattern"`
	Behavior       string `json:"behavior"`
	Invert         bool   `json:"invert"`
	AddPrefixSpace bool   `json:"add_prefix_space"`
	UseRegex       bool   `json:"use_regex"`
}

func (t *Tokenizer) loadPreTokenizer(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var c preTokenizerConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("pre_tokenizer: %w", err)
	}
	switch c.Type {
	case "Sequence":
		for _, sub := range c.PreTokenizers {
			if err := t.loadPreTokenizer(sub); err != nil {
				return err
			}
		}
		return nil
	case "ByteLevel":
		if c.AddPrefixSpace {
			return fmt.Errorf("pre_tokenizer ByteLevel add_prefix_space: %w", ErrUnsupported)
		}
		if c.UseRegex {
			return t.addSplit(gpt2Pattern, isolated, false)
		}
		return nil // the byte mapping itself is implicit: BPE works on bytes
	case "Split":
		return t.addSplitConfig(&c)
	}
	return fmt.Errorf("pre_tokenizer %q: %w", c.Type, ErrUnsupported)
}

// addSplitConfig adds a Split pre-tokenizer: a Regex, or a String matched
// literally.
func (t *Tokenizer) addSplitConfig(c *preTokenizerConfig) error {
	b, ok := splitBehaviors[c.Behavior]
	if !ok {
		return fmt.Errorf("pre_tokenizer Split behavior %q: %w", c.Behavior, ErrUnsupported)
	}
	switch {
	case c.Pattern.Regex != nil:
		return t.addSplit(*c.Pattern.Regex, b, c.Invert)
	case c.Pattern.String != nil:
		if err := t.addSplit(regexp.QuoteMeta(*c.Pattern.String), b, c.Invert); err != nil {
			return err
		}
		t.split[len(t.split)-1].literal = *c.Pattern.String
		return nil
	}
	return fmt.Errorf("pre_tokenizer Split: pattern has neither Regex nor String")
}

func (t *Tokenizer) addSplit(pattern string, b splitBehavior, invert bool) error {
	re, err := regexp2.Compile(pattern, regexp2.None)
	if err != nil {
		return fmt.Errorf("pre_tokenizer pattern %q: %w", pattern, err)
	}
	sp := splitter{re: re, behavior: b, invert: invert}
	// A known pattern matches at every position, so its pieces are its
	// matches where each is kept whole: Isolated, or Removed with invert
	// (o200k's), which drops the (empty) text between matches.
	if b == isolated && !invert || b == removed && invert {
		sp.match = knownPatterns[pattern]
	}
	t.split = append(t.split, sp)
	return nil
}

// preTokenize returns the [start, end) byte ranges of the pre-tokens of s.
func (t *Tokenizer) preTokenize(s string) [][2]int {
	pieces := [][2]int{{0, len(s)}}
	for _, sp := range t.split {
		var next [][2]int
		for _, p := range pieces {
			next = sp.appendPieces(next, s, p[0], p[1])
		}
		pieces = next
	}
	return pieces
}

// appendPieces splits s[start:end] into pre-tokens.
func (sp splitter) appendPieces(dst [][2]int, s string, start, end int) [][2]int {
	if sp.match != nil {
		return knownSplit(dst, s, start, end, sp.match)
	}
	return sp.appendRegexPieces(dst, s, start, end)
}

// appendRegexPieces splits s[start:end] at the matches of the pattern, as
// Hugging Face's NormalizedString.split: the matches and the text between
// them (with invert the other way round: the text between is the
// delimiter), combined by the behavior; empty pieces are dropped.
func (sp splitter) appendRegexPieces(dst [][2]int, s string, start, end int) [][2]int {
	var parts []splitPart // the whole text, in order
	if sp.literal != "" {
		parts = sp.literalParts(s, start, end)
	} else {
		parts = sp.regexParts(s, start, end)
	}
	for _, p := range sp.behavior.combine(parts) {
		if p.end > p.start {
			dst = append(dst, [2]int{p.start, p.end})
		}
	}
	return dst
}

// literalParts cuts s[start:end] at each occurrence of sp.literal, left to
// right, as the regex of the escaped string matches.
func (sp splitter) literalParts(s string, start, end int) []splitPart {
	var parts []splitPart
	prev := start
	for {
		k := strings.Index(s[prev:end], sp.literal)
		if k < 0 {
			break
		}
		a := prev + k
		if a > prev {
			parts = append(parts, splitPart{prev, a, sp.invert})
		}
		prev = a + len(sp.literal)
		parts = append(parts, splitPart{a, prev, !sp.invert})
	}
	if prev < end || len(parts) == 0 {
		parts = append(parts, splitPart{prev, end, sp.invert})
	}
	return parts
}

// regexParts cuts s[start:end] at the matches of sp.re.
func (sp splitter) regexParts(s string, start, end int) []splitPart {
	runes := make([]rune, 0, end-start)
	offs := make([]int, 0, end-start+1) // rune index -> byte offset
	for i, r := range s[start:end] {
		runes = append(runes, r)
		offs = append(offs, start+i) // an invalid byte is one U+FFFD rune
	}
	offs = append(offs, end)
	var parts []splitPart
	prev := 0
	m, err := sp.re.FindRunesMatch(runes)
	for err == nil && m != nil {
		a, b := m.Index, m.Index+m.Length
		if a > prev {
			parts = append(parts, splitPart{offs[prev], offs[a], sp.invert})
		}
		parts = append(parts, splitPart{offs[a], offs[b], !sp.invert})
		prev = b
		m, err = sp.re.FindNextMatch(m)
	}
	if err != nil {
		// Only a match timeout errors, and none is set.
		panic(fmt.Sprintf("pre-tokenizer regex: %v", err))
	}
	if prev < len(runes) {
		parts = append(parts, splitPart{offs[prev], end, sp.invert})
	}
	return parts
}

// splitPart is a match of a split pattern (delim) or the text between two.
type splitPart struct {
	start, end int
	delim      bool
}

// combine turns the parts into pieces (in place): each part is a piece
// (Isolated), delimiters are dropped (Removed) or joined to the piece before
// or after them, or runs of parts of one kind join (Contiguous). A delimiter
// after a delimiter stays its own piece when merged.
func (b splitBehavior) combine(parts []splitPart) []splitPart {
	out := parts[:0]
	switch b {
	case isolated:
		return parts
	case removed:
		for _, p := range parts {
			if !p.delim {
				out = append(out, p)
			}
		}
	case contiguous, mergedWithPrevious:
		prevDelim := false
		for _, p := range parts {
			join := p.delim == prevDelim
			if b == mergedWithPrevious {
				join = p.delim && !prevDelim
			}
			if join && len(out) > 0 {
				out[len(out)-1].end = p.end
			} else {
				out = append(out, p)
			}
			prevDelim = p.delim
		}
	case mergedWithNext:
		// From the end: a delimiter joins the piece after it.
		nextDelim := false
		k := len(parts)
		for i := len(parts) - 1; i >= 0; i-- {
			p := parts[i]
			if p.delim && !nextDelim && k < len(parts) {
				parts[k].start = p.start
			} else {
				k--
				parts[k] = p
			}
			nextDelim = p.delim
		}
		out = append(out, parts[k:]...)
	}
	return out
}
