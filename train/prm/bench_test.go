package prm

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/statjob/statjob/train/prm/prmtest"
)

// benchItems are n responses of 3 to 8 steps (about 60 to 200 tokens of
// conversation each).
func benchItems(n int) []Item {
	items := make([]Item, n)
	for i := range items {
		var steps []string
		for k := range 3 + i%6 {
			steps = append(steps, fmt.Sprintf("Step %d: multiply %d by %d and add %d, which gives $%d$.", k+1, i+k, k+2, i, (i+k)*(k+2)+i))
		}
		items[i] = Item{Question: fmt.Sprintf("Question %d: compute the sum of the products.", i), Response: strings.Join(steps, "\n\n")}
	}
	return items
}

// BenchmarkScore scores responses on the tiny PRMs (Llama 3's 128,256-token
// vocabulary, 2 layers of width 32), 64 responses per op: "llama" with its
// own lm_head, "tied" with the head rows taken from embed_tokens. Graphs
// are compiled before the timer starts.
func BenchmarkScore(b *testing.B) {
	for _, tc := range []struct {
		name, config string
		n            int
	}{{"llama", prmtest.Llama, 64}, {"tied", prmtest.Tied, 64}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.BatchTokens = 2048
			p := open(b, tc.config, cfg)
			items := benchItems(tc.n)
			tokens := 0
			for _, it := range items {
				ids, _, err := p.Conversation(it.Question, Steps(it.Response))
				if err != nil {
					b.Fatal(err)
				}
				tokens += len(ids)
			}
			ctx := context.Background()
			if _, err := p.Score(ctx, items); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := p.Score(ctx, items); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(items)*b.N)/b.Elapsed().Seconds(), "responses/s")
			b.ReportMetric(float64(tokens*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
