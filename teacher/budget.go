package teacher

import (
	"context"
	"fmt"
	"sync"
)

// budget refuses calls that could take spending past the limit. Each call in
// flight holds a reservation of its estimated input plus max_tokens, so 64
// calls in flight cannot overshoot; the reservation is settled with the
// reply's real usage when the call returns. An attempt that times out is
// charged its worst case (lostAttempt), since the provider may bill it.
type budget struct {
	next  Model
	cfg   *Config
	stats *counters

	mu                    sync.Mutex
	spentTok, reservedTok int64
	spentUSD, reservedUSD float64
	needTok               int64   // reservations refused: what the rest would take
	needUSD               float64 // same, in dollars
}

// estimateInput over-estimates a request's input tokens: no tokenizer is
// three bytes per token or fewer on text, plus a few tokens per message.
func estimateInput(req *Request) int {
	n := 0
	for _, m := range req.Messages {
		n += (len(m.Content)+2)/3 + 8
	}
	return n
}

func (b *budget) Call(ctx context.Context, req *Request) (*Reply, error) {
	u := Usage{Input: estimateInput(req), Output: req.Params.MaxTokens}
	tok, usd := int64(u.Input+u.Output), b.cfg.Cost(u)
	b.mu.Lock()
	lim := b.cfg.Budget
	overTok := lim.Tokens > 0 && b.spentTok+b.reservedTok+tok > lim.Tokens
	overUSD := lim.USD > 0 && b.spentUSD+b.reservedUSD+usd > lim.USD
	if overTok || overUSD {
		b.needTok += tok
		b.needUSD += usd
		spentTok, spentUSD := b.spentTok, b.spentUSD
		b.mu.Unlock()
		b.stats.budgetDenied.Add(1)
		if overTok {
			return nil, fmt.Errorf("%w: %d of %d tokens spent, this call may take %d more", ErrBudget, spentTok, lim.Tokens, tok)
		}
		return nil, fmt.Errorf("%w: $%.4f of $%.4f spent, this call may take $%.4f more", ErrBudget, spentUSD, lim.USD, usd)
	}
	b.reservedTok += tok
	b.reservedUSD += usd
	b.mu.Unlock()

	r, err := b.next.Call(ctx, req)

	b.mu.Lock()
	b.reservedTok -= tok
	b.reservedUSD -= usd
	if r != nil {
		real := billed(req, r)
		b.spentTok += int64(real.Input + real.Output)
		b.spentUSD += b.cfg.Cost(real)
	}
	b.mu.Unlock()
	return r, err
}

// billed is what a reply is charged: its usage, or the estimate when the
// server reported none.
func billed(req *Request, r *Reply) Usage {
	if r.Usage.Input == 0 && r.Usage.Output == 0 {
		return Usage{Input: estimateInput(req), Output: (len(r.Text) + 2) / 3}
	}
	return r.Usage
}

// carry books a reply this work paid for before a restart (the cache read
// it back, see cache): it is spent, as it was then.
func (b *budget) carry(req *Request, r *Reply) {
	u := billed(req, r)
	b.stats.carried.Add(1)
	b.stats.inputTokens.Add(int64(u.Input))
	b.stats.outputTokens.Add(int64(u.Output))
	b.mu.Lock()
	defer b.mu.Unlock()
	b.spentTok += int64(u.Input + u.Output)
	b.spentUSD += b.cfg.Cost(u)
}

// BudgetState is what the budget has spent and what refused calls would need.
type BudgetState struct {
	SpentTokens int64   `json:"spent_tokens"`
	SpentUSD    float64 `json:"spent_usd"`
	NeedTokens  int64   `json:"need_tokens,omitempty"` // upper bound for the calls refused
	NeedUSD     float64 `json:"need_usd,omitempty"`
}

func (b *budget) state() BudgetState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BudgetState{b.spentTok, b.spentUSD, b.needTok, b.needUSD}
}

// lostAttempt books an attempt that timed out: the provider may have billed
// it, and its usage is unknown, so it is charged its worst case (input +
// max_tokens). The call keeps its reservation for the next attempt; when
// spent + reserved no longer fits the limit, there is no next attempt.
func (b *budget) lostAttempt(req *Request) error {
	u := Usage{Input: estimateInput(req), Output: req.Params.MaxTokens}
	tok, usd := int64(u.Input+u.Output), b.cfg.Cost(u)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.spentTok += tok
	b.spentUSD += usd
	lim := b.cfg.Budget
	if (lim.Tokens > 0 && b.spentTok+b.reservedTok > lim.Tokens) || (lim.USD > 0 && b.spentUSD+b.reservedUSD > lim.USD) {
		b.stats.budgetDenied.Add(1)
		return fmt.Errorf("%w: a timed-out attempt was charged %d tokens ($%.4f); %d tokens ($%.4f) spent, no room to retry",
			ErrBudget, tok, usd, b.spentTok, b.spentUSD)
	}
	return nil
}
