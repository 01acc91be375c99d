package tokenizer

import (
	"strings"
	"testing"
)

// BenchmarkEncodeMATH encodes the MATH train split (problems and solutions)
// with a fresh word cache each round, so the merge loop is measured too.
func BenchmarkEncodeMATH(b *testing.B) {
	texts := mathTexts(b)
	n := 0
	for _, s := range texts {
		n += len(s)
	}
	for _, name := range []string{"qwen3", "llama3_1"} {
		b.Run(name, func(b *testing.B) {
			tok := loadRef(b, name)
			b.SetBytes(int64(n))
			tokens := 0
			for b.Loop() {
				tok.mu.Lock()
				clear(tok.cache)
				tok.mu.Unlock()
				tokens = 0
				for _, s := range texts {
					tokens += len(tok.Encode(s))
				}
			}
			b.ReportMetric(float64(tokens)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkDecodeMATH decodes the ids of the MATH train split.
func BenchmarkDecodeMATH(b *testing.B) {
	tok := loadRef(b, "qwen3")
	var all [][]int
	n := 0
	for _, s := range mathTexts(b) {
		all = append(all, tok.Encode(s))
		n += len(s)
	}
	b.SetBytes(int64(n))
	var sb strings.Builder
	for b.Loop() {
		sb.Reset()
		for _, ids := range all {
			sb.WriteString(tok.Decode(ids))
		}
	}
}
