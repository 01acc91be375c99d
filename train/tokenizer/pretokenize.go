package tokenizer

import (
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/dlclark/regexp2"
)

// gpt2Pattern is the split of a ByteLevel pre-tokenizer with use_regex.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// splitter is one regex Split of the pre-tokenizer (behaviour Isolated:
// matches and the text between them both become pieces).
type splitter struct {
	re        *regexp2.Regexp
	maxDigits int // > 0: re is a known pattern, matched by knownSplit
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
			return t.addSplit(gpt2Pattern)
		}
		return nil // the byte mapping itself is implicit: BPE works on bytes
	case "Split":
		if c.Behavior != "Isolated" || c.Invert {
			return fmt.Errorf("pre_tokenizer Split behavior %q invert %v: %w", c.Behavior, c.Invert, ErrUnsupported)
		}
		switch {
		case c.Pattern.Regex != nil:
			return t.addSplit(*c.Pattern.Regex)
		case c.Pattern.String != nil:
			return t.addSplit(regexp.QuoteMeta(*c.Pattern.String))
		}
		return fmt.Errorf("pre_tokenizer Split: pattern has neither Regex nor String")
	}
	return fmt.Errorf("pre_tokenizer %q: %w", c.Type, ErrUnsupported)
}

func (t *Tokenizer) addSplit(pattern string) error {
	re, err := regexp2.Compile(pattern, regexp2.None)
	if err != nil {
		return fmt.Errorf("pre_tokenizer pattern %q: %w", pattern, err)
	}
	t.split = append(t.split, splitter{re: re, maxDigits: knownPatterns[pattern]})
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

// appendPieces splits s[start:end] at the regex matches.
func (sp splitter) appendPieces(dst [][2]int, s string, start, end int) [][2]int {
	if sp.maxDigits > 0 {
		return knownSplit(dst, s, start, end, sp.maxDigits)
	}
	return sp.appendRegexPieces(dst, s, start, end)
}

// appendRegexPieces splits s[start:end] at the matches of the regex.
func (sp splitter) appendRegexPieces(dst [][2]int, s string, start, end int) [][2]int {
	runes := make([]rune, 0, end-start)
	offs := make([]int, 0, end-start+1) // rune index -> byte offset
	for i, r := range s[start:end] {
		runes = append(runes, r)
		offs = append(offs, start+i) // an invalid byte is one U+FFFD rune
	}
	offs = append(offs, end)
	prev := 0
	m, err := sp.re.FindRunesMatch(runes)
	for err == nil && m != nil {
		a, b := m.Index, m.Index+m.Length
		if a > prev {
			dst = append(dst, [2]int{offs[prev], offs[a]})
		}
		if b > a {
			dst = append(dst, [2]int{offs[a], offs[b]})
		}
		prev = b
		m, err = sp.re.FindNextMatch(m)
	}
	if err != nil {
		// Only a match timeout errors, and none is set.
		panic(fmt.Sprintf("pre-tokenizer regex: %v", err))
	}
	if prev < len(runes) {
		dst = append(dst, [2]int{offs[prev], end})
	}
	return dst
}
