package tokenizer

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// metaspaceVariant loads the llama2 reference tokenizer.json rewritten the
// older way: no normalizer and a Metaspace pre-tokenizer.
func metaspaceVariant(t *testing.T, scheme string, split bool) *Tokenizer {
	t.Helper()
	return llama2Variant(t, func(tj map[string]any) {
		tj["normalizer"] = nil
		tj["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split}
	})
}

// llama2Variant loads the llama2 reference tokenizer.json as edit changes it.
func llama2Variant(t *testing.T, edit func(map[string]any)) *Tokenizer {
	t.Helper()
	needReference(t)
	raw, err := os.ReadFile(filepath.Join(modelDir("llama2"), "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tj map[string]any
	if err := json.Unmarshal(raw, &tj); err != nil {
		t.Fatal(err)
	}
	edit(tj)
	raw, err = json.Marshal(tj)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Load(bytes.NewReader(raw), nil)
	if err != nil {
		t.Fatalf("load an edited llama2 tokenizer.json: %v", err)
	}
	return tok
}

// TestMetaspacePreTokenizer checks the Metaspace form of SentencePiece-style
// BPE against the normalizer form the reference test covers: the same ids
// with prepend_scheme always and no split (where the text does not start
// with a space, which Metaspace takes as its "▁"), "▁" not prepended after an added
// token with first, and each "▁" starting a word with split.
func TestMetaspacePreTokenizer(t *testing.T) {
	ref := loadRef(t, "llama2")
	texts := append(slices.Clone(edgeTexts), mathTexts(t)[:500]...)
	always := metaspaceVariant(t, "always", false)
	for _, text := range texts {
		if strings.Contains(text, "<s>") || text == " " {
			continue // the added-token case is below; " " is one "▁" here, none there
		}
		// Metaspace prepends no "▁" to text that starts with a space.
		if got, want := always.Encode(text), ref.Encode(strings.TrimPrefix(text, " ")); !slices.Equal(got, want) {
			t.Errorf("Metaspace always: %q\n got %v\nwant %v", clip(text), got, want)
		}
	}

	first := metaspaceVariant(t, "first", false)
	hi, ok := ref.TokenID("hi")
	if !ok {
		t.Fatal(`"hi" is not a token`)
	}
	want := append(ref.Encode("hi"), 1, hi) // <s> is id 1
	if got := first.Encode("hi<s>hi"); !slices.Equal(got, want) {
		t.Errorf("Metaspace first: %v, want %v (\"▁\" only at the start of the input)", got, want)
	}

	split := metaspaceVariant(t, "always", true)
	space, _ := ref.TokenID("▁")
	want = slices.Concat(ref.Encode("Hey"), []int{space, space}, ref.Encode("friend!"))
	if got := split.Encode("Hey   friend!"); !slices.Equal(got, want) {
		t.Errorf("Metaspace split: %v, want %v", got, want)
	}
	if slices.Equal(want, ref.Encode("Hey   friend!")) {
		t.Error("split and unsplit agree on \"Hey   friend!\": the split is not exercised")
	}
}

// TestSentencePieceDecode checks the decoder on cases the round trip does
// not reach: byte tokens that are not valid UTF-8 (one U+FFFD per byte, as
// Hugging Face's ByteFallback), unknown ids, and the one leading space Strip
// removes.
func TestSentencePieceDecode(t *testing.T) {
	tok := loadRef(t, "llama2")
	id := func(s string) int {
		i, ok := tok.TokenID(s)
		if !ok {
			t.Fatalf("%q is not a token", s)
		}
		return i
	}
	cases := []struct {
		ids  []int
		want string
	}{
		{[]int{id("<0xE2>"), id("<0x88>")}, "\uFFFD\uFFFD"},
		{[]int{id("▁a"), id("<0xE2>"), id("<0x88>"), id("<0xAE>"), id("▁b")}, "a∮ b"},
		{[]int{id("<0xE2>"), id("▁a"), id("<0x88>")}, "\uFFFD a\uFFFD"},
		{[]int{id("▁"), id("▁a")}, " a"},
		{[]int{id("<0x20>"), id("▁a")}, " a"},
		{[]int{-1, 1 << 30, id("▁a")}, "a"},
		{[]int{1, id("▁a"), 2}, "<s> a</s>"},
	}
	for _, c := range cases {
		if got := tok.Decode(c.ids); got != c.want {
			t.Errorf("Decode(%v) = %q, want %q", c.ids, got, c.want)
		}
	}
	// DecodeBytes keeps every space, for streaming pieces.
	if got := string(tok.DecodeBytes([]int{id("▁a"), id("▁b")})); got != " a b" {
		t.Errorf("DecodeBytes = %q, want \" a b\"", got)
	}
}

// TestUnknownWithoutByteFallback checks that without byte_fallback a
// character missing from the vocabulary is unk_token, consecutive ones fused
// into one with fuse_unk, although the vocabulary has the <0xXX> tokens.
func TestUnknownWithoutByteFallback(t *testing.T) {
	ref := loadRef(t, "llama2")
	for _, fuse := range []bool{true, false} {
		tok := llama2Variant(t, func(tj map[string]any) {
			m := tj["model"].(map[string]any)
			m["byte_fallback"] = false
			m["fuse_unk"] = fuse
		})
		unk, _ := ref.TokenID("<unk>")
		want := slices.Concat(ref.Encode("a"), []int{unk}, ref.Encode("b"))
		if !fuse {
			want = slices.Concat(ref.Encode("a"), []int{unk, unk}, ref.Encode("b"))
		}
		// ∮ is missing from the vocabulary; ref.Encode("b") is "▁b".
		if got := tok.Encode("a∮∮ b"); !slices.Equal(got, want) {
			t.Errorf("fuse_unk %v: %v, want %v", fuse, got, want)
		}
	}
}
