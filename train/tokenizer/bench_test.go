package tokenizer

import (
	"runtime"
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
	for _, name := range []string{"qwen3", "llama3_1", "llama2", "gemma3", "o200k"} {
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

// BenchmarkReferenceEncodeMATH times the JavaScript reference (@lenml/tokenizers
// under node) on the same texts, for comparison; it reports the reference's
// own timing of the encode loop, without node's start-up and file loading.
func BenchmarkReferenceEncodeMATH(b *testing.B) {
	texts := mathTexts(b)
	n := 0
	for _, s := range texts {
		n += len(s)
	}
	for _, name := range []string{"qwen3", "llama3_1", "llama2", "gemma3", "o200k"} {
		b.Run(name, func(b *testing.B) {
			var sec, tokens float64
			for b.Loop() {
				var r struct{ Seconds, Tokens float64 }
				node(b, map[string]any{"op": "time", "tokenizer": name, "texts": texts}, &r)
				sec += r.Seconds
				tokens += r.Tokens
			}
			b.ReportMetric(float64(n)*float64(b.N)/sec/1e6, "MB/s")
			b.ReportMetric(tokens/sec, "tokens/s")
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

// BenchmarkLoad reads the Qwen3 (11 MB tokenizer.json) and Gemma 3 (33 MB)
// tokenizer files and reports the heap one loaded tokenizer holds.
func BenchmarkLoad(b *testing.B) {
	needReference(b)
	for _, name := range []string{"qwen3", "gemma3"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var tok *Tokenizer
			var before, after runtime.MemStats
			for b.Loop() {
				tok = nil
				runtime.GC()
				runtime.ReadMemStats(&before)
				var err error
				if tok, err = LoadDir(modelDir(name)); err != nil {
					b.Fatal(err)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/1e6, "MB-held")
			runtime.KeepAlive(tok)
		})
	}
}
