package teacher

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// A restarted stage's budget counts what the stage paid for before the
// restart (its replies, read back from the cache, once each); replies other
// work paid for stay free.
func TestBudgetCarriedAcrossRestarts(t *testing.T) {
	srv, cfg := fake(t, ProviderOpenAI)
	store := localStore(t)
	reqs := func(from, to int) []*Request {
		var out []*Request
		for i := from; i < to; i++ {
			out = append(out, userReq("question number "+strconv.Itoa(i), 0))
		}
		return out
	}
	open := func(payer string, budget int64) *Teacher {
		t.Helper()
		c := cfg
		c.Budget.Tokens = budget
		tc, err := New(context.Background(), c, store, &Options{Payer: payer})
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}
	// The first attempt pays for 10 replies, and reads them again in the
	// same process for nothing.
	first := open("r1/diagnose", 0)
	for range 2 {
		for _, r := range Map(context.Background(), first, reqs(0, 10), Text) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
	}
	paid := first.Stats().Budget.SpentTokens
	if paid == 0 || srv.Calls() != 10 {
		t.Fatalf("first attempt: spent %d tokens in %d calls", paid, srv.Calls())
	}
	perReply := paid / 10

	// The restart: the 10 replies come from the cache and count, once,
	// however often they are read.
	again := open("r1/diagnose", 0)
	Map(context.Background(), again, reqs(0, 10), Text)
	Map(context.Background(), again, reqs(0, 10), Text)
	st := again.Stats()
	if st.Budget.SpentTokens != paid || st.Carried != 10 || st.InputTokens+st.OutputTokens != paid || srv.Calls() != 10 {
		t.Fatalf("restart: spent %d (want %d), carried %d, tokens %d, calls %d", st.Budget.SpentTokens, paid, st.Carried,
			st.InputTokens+st.OutputTokens, srv.Calls())
	}

	// With a budget that the first attempt nearly used up, the restart
	// gets its cached replies but no more than what is left.
	limit := paid + 2*perReply + perReply/2 + 100 // reservations over-estimate input, so room for fewer than 2
	tight := open("r1/diagnose", limit)
	res := Map(context.Background(), tight, reqs(0, 15), Text)
	for i, r := range res[:10] {
		if r.Err != nil {
			t.Fatalf("cached reply %d: %v", i, r.Err)
		}
	}
	refused := 0
	for _, r := range res[10:] {
		if errors.Is(r.Err, ErrBudget) {
			refused++
		}
	}
	if st := tight.Stats(); refused == 0 || st.Budget.SpentTokens > limit {
		t.Fatalf("restart under budget %d: %d of 5 new calls refused, spent %d", limit, refused, st.Budget.SpentTokens)
	}

	// Another run reads r1's replies for free, and so does a Teacher that
	// names no payer.
	for _, payer := range []string{"r2/diagnose", ""} {
		other := open(payer, perReply)
		for i, r := range Map(context.Background(), other, reqs(0, 10), Text) {
			if r.Err != nil {
				t.Fatalf("payer %q, reply %d: %v", payer, i, r.Err)
			}
		}
		if st := other.Stats(); st.Budget.SpentTokens != 0 || st.Carried != 0 {
			t.Fatalf("payer %q: spent %d, carried %d on r1's replies", payer, st.Budget.SpentTokens, st.Carried)
		}
	}
	// The cache entry names its payer.
	raw, err := readAll(context.Background(), store, cacheObject(CacheKey(cfg.Provider, cfg.Model, reqs(0, 1)[0])))
	if err != nil || !strings.Contains(string(raw), `"payer":"r1/diagnose"`) {
		t.Fatalf("cache entry %s, %v", raw, err)
	}
}
