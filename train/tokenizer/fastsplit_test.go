package tokenizer

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// trickyRunes are the characters where the split patterns' classes meet:
// ASCII and Unicode spaces (U+0085 NEL, NBSP, ideographic space), \r and \n,
// letters of several scripts and of each case class (Lu, Ll, Lt, Lm, Lo),
// numbers of classes Nd, Nl and No, marks of classes Mn, Mc and Me (neither
// letter nor number), apostrophes and contraction letters in both cases with
// letters that case-fold to them (ſ, Kelvin sign, İ), punctuation, "/",
// emoji and an invalid byte.
var trickyRunes = []string{
	" ", " ", " ", "\t", "\r", "\n", "\u0085", "\u00a0", "\u3000", "\u2028", "\v", "\f",
	"a", "Z", "é", "É", "中", "ß", "ǅ", "ʰ", "न", "Ω", "ω", "1", "9", "٣", "Ⅻ", "½",
	"\u0301", "\u093f", "\u20dd",
	"'", "s", "S", "t", "T", "r", "R", "E", "v", "m", "M", "l", "L", "d", "ſ", "\u212a", "İ",
	"!", "$", "\\", ".", "/", "{", "😀", "\xff",
}

// trickyTexts are n texts of up to 24 of the runes, the same each run.
func trickyTexts(n int, runes []string) []string {
	rng := rand.New(rand.NewPCG(1, 2))
	texts := make([]string, n)
	for i := range texts {
		var b strings.Builder
		for range rng.IntN(24) {
			b.WriteString(runes[rng.IntN(len(runes))])
		}
		texts[i] = b.String()
	}
	return texts
}

// knownSplitters are the splitters of the known patterns, configured as the
// checkpoints configure them; their regexp2 matching is the reference.
func knownSplitters(t testing.TB) map[string]splitter {
	cases := map[string]struct {
		pattern  string
		behavior splitBehavior
		invert   bool
	}{
		"qwen":   {qwenPattern, isolated, false},
		"llama3": {llama3Pattern, isolated, false},
		"o200k":  {o200kPattern, removed, true},
	}
	if len(cases) != len(knownPatterns) {
		t.Fatalf("%d known patterns, %d checked", len(knownPatterns), len(cases))
	}
	out := map[string]splitter{}
	for name, c := range cases {
		tok := &Tokenizer{}
		if err := tok.addSplit(c.pattern, c.behavior, c.invert); err != nil {
			t.Fatal(err)
		}
		if tok.split[0].match == nil {
			t.Fatalf("%s pattern not recognised as known", name)
		}
		out[name] = tok.split[0]
	}
	return out
}

func checkSplitAgrees(t testing.TB, name string, sp splitter, s string) {
	want := sp.appendRegexPieces(nil, s, 0, len(s))
	got := knownSplit(nil, s, 0, len(s), sp.match)
	if !slices.Equal(got, want) {
		t.Fatalf("%s split of %q:\n got %q\nwant %q (regexp2)", name, s, pieces(s, got), pieces(s, want))
	}
}

func pieces(s string, r [][2]int) []string {
	var out []string
	for _, p := range r {
		out = append(out, s[p[0]:p[1]])
	}
	return out
}

func TestKnownSplitMatchesRegex(t *testing.T) {
	sps := knownSplitters(t)
	texts := append(slices.Clone(edgeTexts), mathTexts(t)[:1000]...)
	texts = append(texts, trickyTexts(20000, trickyRunes)...)
	for name, sp := range sps {
		for _, s := range texts {
			checkSplitAgrees(t, name, sp, s)
		}
	}
}

func FuzzKnownSplit(f *testing.F) {
	for _, s := range edgeTexts {
		f.Add(s)
	}
	sps := knownSplitters(f)
	f.Fuzz(func(t *testing.T, s string) {
		for name, sp := range sps {
			checkSplitAgrees(t, name, sp, s)
		}
	})
}
