package tokenizer

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// splitTokenizer loads a byte-level tokenizer whose pre-tokenizer is one Split.
func splitTokenizer(t *testing.T, pattern map[string]string, behavior string, invert bool) (*Tokenizer, error) {
	t.Helper()
	pre, err := json.Marshal(map[string]any{"type": "Split", "pattern": pattern, "behavior": behavior, "invert": invert})
	if err != nil {
		t.Fatal(err)
	}
	return Load(strings.NewReader(`{"pre_tokenizer": `+string(pre)+`, "model": {"type": "BPE", "vocab": `+byteVocab()+`, "merges": []}}`), nil)
}

// TestSplitBehaviors checks each SplitDelimiterBehavior on the cases of
// Hugging Face tokenizers' own tests: its Split test (an inverted regex:
// the words are kept, the spaces between them are the delimiters) and the
// "the-final--countdown" example of NormalizedString.split.
func TestSplitBehaviors(t *testing.T) {
	cases := []struct {
		pattern  map[string]string
		invert   bool
		behavior string
		text     string
		want     []string
	}{
		{map[string]string{"Regex": `\w+|[^\w\s]+`}, true, "Removed", "How are you doing?", []string{"How", "are", "you", "doing", "?"}},
		{map[string]string{"Regex": `\w+|[^\w\s]+`}, true, "Isolated", "How are you doing?", []string{"How", " ", "are", " ", "you", " ", "doing", "?"}},
		{map[string]string{"Regex": `\w+|[^\w\s]+`}, true, "MergedWithPrevious", "How are you doing?", []string{"How ", "are ", "you ", "doing", "?"}},
		{map[string]string{"Regex": `\w+|[^\w\s]+`}, true, "MergedWithNext", "How are you doing?", []string{"How", " are", " you", " doing", "?"}},
		{map[string]string{"Regex": `\w+|[^\w\s]+`}, true, "Contiguous", "How are you doing?", []string{"How", " ", "are", " ", "you", " ", "doing?"}},
		{map[string]string{"String": "-"}, false, "Removed", "the-final--countdown", []string{"the", "final", "countdown"}},
		{map[string]string{"String": "-"}, false, "Isolated", "the-final--countdown", []string{"the", "-", "final", "-", "-", "countdown"}},
		{map[string]string{"String": "-"}, false, "MergedWithPrevious", "the-final--countdown", []string{"the-", "final-", "-", "countdown"}},
		{map[string]string{"String": "-"}, false, "MergedWithNext", "the-final--countdown", []string{"the", "-final", "-", "-countdown"}},
		{map[string]string{"String": "-"}, false, "Contiguous", "the-final--countdown", []string{"the", "-", "final", "--", "countdown"}},
		// A delimiter at either end, a String with regex metacharacters.
		{map[string]string{"String": "."}, false, "MergedWithPrevious", ".a.b.", []string{".", "a.", "b."}},
		{map[string]string{"String": "."}, false, "MergedWithNext", ".a.b.", []string{".a", ".b", "."}},
		{map[string]string{"String": " "}, false, "MergedWithPrevious", "", nil},
		{map[string]string{"String": "ab"}, true, "Contiguous", "xabababyab", []string{"x", "ababab", "y", "ab"}},
		{map[string]string{"String": "ab"}, false, "MergedWithPrevious", "xabababyab", []string{"xab", "ab", "ab", "yab"}},
	}
	for _, c := range cases {
		tok, err := splitTokenizer(t, c.pattern, c.behavior, c.invert)
		if err != nil {
			t.Fatalf("%v %s: %v", c.pattern, c.behavior, err)
		}
		var got []string
		for _, p := range tok.preTokenize(c.text) {
			got = append(got, c.text[p[0]:p[1]])
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%v invert %v %s on %q: %q, want %q", c.pattern, c.invert, c.behavior, c.text, got, c.want)
		}
		if sp := tok.split[0]; sp.literal != "" {
			// A String pattern is found by strings.Index; its escaped regex agrees.
			sp.literal = ""
			if re := sp.appendRegexPieces(nil, c.text, 0, len(c.text)); !slices.Equal(re, tok.preTokenize(c.text)) {
				t.Errorf("%v %s on %q: literal %v, regex %v", c.pattern, c.behavior, c.text, tok.preTokenize(c.text), re)
			}
		}
		if dec := tok.Decode(tok.Encode(c.text)); c.behavior != "Removed" && dec != c.text {
			t.Errorf("%v %s: Decode(Encode(%q)) = %q", c.pattern, c.behavior, c.text, dec)
		}
	}
	if _, err := splitTokenizer(t, map[string]string{"String": " "}, "Sideways", false); err == nil ||
		!errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), `behavior "Sideways"`) {
		t.Errorf("unknown behavior: error %v, want ErrUnsupported naming it", err)
	}
}

// TestPieceSplit checks that a Split pre-tokenizer applies to
// SentencePiece-style BPE (as Gemma's tokenizer.json has one), after the
// normalizer: Llama 2's normalizer with a Split at "▁" merged with the next
// piece cuts words exactly as a splitting Metaspace does.
func TestPieceSplit(t *testing.T) {
	split := llama2Variant(t, func(tj map[string]any) {
		tj["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"String": "▁"}, "behavior": "MergedWithNext", "invert": false},
		}}
	})
	ref := loadRef(t, "llama2")
	meta := metaspaceVariant(t, "always", true)
	texts := append(slices.Clone(edgeTexts), mathTexts(t)[:300]...)
	differ := 0
	for _, text := range texts {
		if strings.HasPrefix(text, " ") || text == "" || strings.Contains(text, "<s>") {
			continue // Metaspace prepends no "▁" to a leading space (after <s> too), the normalizer does
		}
		got := split.Encode(text)
		if want := meta.Encode(text); !slices.Equal(got, want) {
			t.Errorf("%q:\n got %v\nwant %v (Metaspace with split)", clip(text), got, want)
		}
		if !slices.Equal(got, ref.Encode(text)) {
			differ++
		}
	}
	if differ == 0 {
		t.Error("the Split changes no encoding: it is not exercised")
	}
	_, err := Load(strings.NewReader(`{"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
		{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"},
		{"type": "Split", "pattern": {"String": "▁"}, "behavior": "Isolated", "invert": false}]},
		"decoder": `+spDecoder+`, "model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0}, "merges": []}}`), nil)
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("Metaspace and Split together: error %v, want ErrUnsupported", err)
	}
}
