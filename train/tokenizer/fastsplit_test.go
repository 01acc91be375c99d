package tokenizer

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// trickyRunes are the characters where the split patterns' classes meet:
// ASCII and Unicode spaces (U+0085 NEL, NBSP, ideographic space), \r and \n,
// letters of several scripts, numbers of classes Nd, Nl and No, a combining
// mark (neither letter nor number), apostrophes and contraction letters,
// punctuation, emoji and an invalid byte.
var trickyRunes = []string{
	" ", " ", " ", "\t", "\r", "\n", "\u0085", "\u00a0", "\u3000", "\u2028", "\v", "\f",
	"a", "Z", "é", "中", "ß", "ǅ", "1", "9", "٣", "Ⅻ", "½", "\u0301",
	"'", "s", "S", "t", "r", "E", "v", "m", "l", "L", "d",
	"!", "$", "\\", ".", "{", "😀", "\xff",
}

// knownSplitters are the regexp2 splitters of the known patterns.
func knownSplitters(t testing.TB) map[string]splitter {
	out := map[string]splitter{}
	for pattern, digits := range knownPatterns {
		tok := &Tokenizer{}
		if err := tok.addSplit(pattern, isolated, false); err != nil {
			t.Fatal(err)
		}
		if tok.split[0].maxDigits != digits {
			t.Fatalf("pattern not recognised as known: %q", pattern)
		}
		out[pattern] = tok.split[0]
	}
	return out
}

func checkSplitAgrees(t testing.TB, sp splitter, s string) {
	want := sp.appendRegexPieces(nil, s, 0, len(s))
	got := knownSplit(nil, s, 0, len(s), sp.maxDigits)
	if !slices.Equal(got, want) {
		t.Fatalf("split of %q (digits %d):\n got %v\nwant %v (regexp2)", s, sp.maxDigits, pieces(s, got), pieces(s, want))
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
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b strings.Builder
		for range rng.IntN(24) {
			b.WriteString(trickyRunes[rng.IntN(len(trickyRunes))])
		}
		texts = append(texts, b.String())
	}
	for _, sp := range sps {
		for _, s := range texts {
			checkSplitAgrees(t, sp, s)
		}
	}
}

func FuzzKnownSplit(f *testing.F) {
	for _, s := range edgeTexts {
		f.Add(s)
	}
	sps := knownSplitters(f)
	f.Fuzz(func(t *testing.T, s string) {
		for _, sp := range sps {
			checkSplitAgrees(t, sp, s)
		}
	})
}
