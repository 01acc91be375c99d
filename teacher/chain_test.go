package teacher

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/teacher/teachertest"
)

// Results come back in input order, whatever order the replies arrive in,
// and no more calls are in flight than the limit.
func TestMapOrderedAndBounded(t *testing.T) {
	srv, cfg := fake(t, ProviderOpenAI)
	cfg.Limits.Concurrency = 6
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond) // replies overtake each other
		return teachertest.Answer{Text: "re:" + c.Last()}
	}
	tc := newTeacher(t, cfg, nil, nil)
	var reqs []*Request
	for i := range 120 {
		reqs = append(reqs, userReq(strconv.Itoa(i), 0))
	}
	var order []int
	Each(context.Background(), tc, reqs, Text, func(i int, r Result[string]) { order = append(order, i) })
	res := Map(context.Background(), tc, reqs, Text)
	for i, r := range res {
		if r.Err != nil || r.Value != "re:"+strconv.Itoa(i) {
			t.Fatalf("result %d = %+v", i, r)
		}
	}
	for i, j := range order {
		if i != j {
			t.Fatalf("Each delivered item %d at position %d", j, i)
		}
	}
	if srv.MaxInFlight() > 6 || srv.MaxInFlight() < 2 {
		t.Fatalf("max in flight %d, want 2..6", srv.MaxInFlight())
	}
}

// Three samples of one prompt are three calls, three replies, three cache
// entries.
func TestSamplesAreSeparateCalls(t *testing.T) {
	srv, cfg := fake(t, ProviderGemini)
	var n atomic.Int64
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		return teachertest.Answer{Text: fmt.Sprintf("answer %d", n.Add(1))}
	}
	store := localStore(t)
	tc := newTeacher(t, cfg, store, nil)
	reqs := []*Request{userReq("same question", 0), userReq("same question", 1), userReq("same question", 2)}
	res := Map(context.Background(), tc, reqs, Text)
	got := map[string]bool{}
	for _, r := range res {
		got[r.Value] = true
	}
	if srv.Calls() != 3 || len(got) != 3 {
		t.Fatalf("calls %d, distinct replies %d; want 3 and 3", srv.Calls(), len(got))
	}
	entries := 0
	store.List(context.Background(), CachePrefix+"/", func(storage.Attrs) error { entries++; return nil })
	if entries != 3 {
		t.Fatalf("%d cache entries, want 3", entries)
	}
}

// A new process (a new Teacher over the same store) pays for nothing that
// was answered before, including a reply that failed to parse.
func TestCacheAcrossRestarts(t *testing.T) {
	srv, cfg := fake(t, ProviderOpenAI)
	cfg.Retry.Reasks = 1
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		if strings.Contains(c.Last(), "could not be read") {
			return teachertest.Answer{Text: "<question>fixed</question>"}
		}
		if strings.HasPrefix(c.Last(), "bad") {
			return teachertest.Answer{Text: "no tags here"}
		}
		return teachertest.Answer{Text: "<question>" + c.Last() + "</question>"}
	}
	store := localStore(t)
	reqs := []*Request{userReq("q0", 0), userReq("bad1", 0), userReq("q2", 0), userReq("q2", 1)}
	run := func() ([]Result[string], Stats) {
		tc := newTeacher(t, cfg, store, nil)
		res := Map(context.Background(), tc, reqs, ParseQuestion)
		return res, tc.Stats()
	}
	res1, st1 := run()
	if res1[1].Value != "fixed" || res1[1].Reasks != 1 || res1[0].Value != "q0" {
		t.Fatalf("first run %+v", res1)
	}
	if srv.Calls() != 5 || st1.CacheMisses != 5 || st1.CacheHits != 0 {
		t.Fatalf("first run: calls %d stats %+v; want 5 calls (4 + 1 re-ask)", srv.Calls(), st1)
	}
	res2, st2 := run()
	if srv.Calls() != 5 {
		t.Fatalf("second run called the model %d more times", srv.Calls()-5)
	}
	if st2.CacheHits != 5 || st2.CacheMisses != 0 || st2.InputTokens != 0 {
		t.Fatalf("second run stats %+v", st2)
	}
	for i := range res1 {
		if res1[i].Value != res2[i].Value {
			t.Fatalf("item %d: %q then %q", i, res1[i].Value, res2[i].Value)
		}
	}
	if !res2[0].Reply.Cached {
		t.Fatal("reply not marked cached")
	}
}

// A reply that never parses is recorded with its raw text, and a rerun does
// not pay for it again.
func TestMalformedNotPaidTwice(t *testing.T) {
	srv, cfg := fake(t, ProviderGemini)
	cfg.Retry.Reasks = 2
	srv.Answer = func(c teachertest.Call) teachertest.Answer { return teachertest.Answer{Text: "rambling"} }
	store := localStore(t)
	for run := range 2 {
		tc := newTeacher(t, cfg, store, nil)
		res := Generate(context.Background(), tc, userReq("q", 0), ParseLabel([]string{"algebra"}))
		if !errors.Is(res.Err, ErrMalformed) || res.Raw != "rambling" || res.Reasks != 2 {
			t.Fatalf("run %d: %+v", run, res)
		}
		if srv.Calls() != 3 {
			t.Fatalf("run %d: %d calls, want 3 in all (1 + 2 re-asks, once)", run, srv.Calls())
		}
	}
}

// budgetServer is a fake provider whose every reply costs 40 + 60 tokens,
// reached with the given concurrency.
func budgetServer(t *testing.T, provider string, conc int, latency time.Duration) (*teachertest.Server, Config) {
	srv, cfg := fake(t, provider)
	cfg.Limits.Concurrency = conc
	srv.Latency = latency
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		return teachertest.Answer{Text: "ok", Input: 40, Output: 60}
	}
	return srv, cfg
}

// With 64 calls in flight the budget never overshoots: reservations hold
// input + max_tokens until each call settles; the stop keeps what is done
// and says what the rest would need.
func TestBudgetStopWithCallsInFlight(t *testing.T) {
	srv, cfg := budgetServer(t, ProviderOpenAI, 64, 20*time.Millisecond)
	cfg.Budget.Tokens = 2000
	cfg.Prices = map[string]Price{"test-model": {InputPerM: 1, OutputPerM: 2}}
	store := localStore(t)
	tc := newTeacher(t, cfg, store, nil)
	var reqs []*Request
	for i := range 200 {
		reqs = append(reqs, userReq("question "+strconv.Itoa(i), 0))
	}
	res := Map(context.Background(), tc, reqs, Text)
	failed, budget := Failed(res)
	st := tc.Stats()
	if st.Budget.SpentTokens > cfg.Budget.Tokens {
		t.Fatalf("spent %d tokens, budget %d", st.Budget.SpentTokens, cfg.Budget.Tokens)
	}
	done := len(res) - failed
	if done == 0 || budget != failed || budget == 0 {
		t.Fatalf("done %d failed %d (budget %d)", done, failed, budget)
	}
	if int64(done)*100 != st.Budget.SpentTokens || int64(srv.Calls()) != int64(done) {
		t.Fatalf("spent %d for %d replies (%d calls), want 100 each", st.Budget.SpentTokens, done, srv.Calls())
	}
	if st.Budget.NeedTokens <= 0 || st.BudgetDenied != int64(budget) {
		t.Fatalf("need %d, denied %d", st.Budget.NeedTokens, st.BudgetDenied)
	}
	if want := float64(done) * (40*1 + 60*2) / 1e6; st.Budget.SpentUSD < want*0.999 || st.Budget.SpentUSD > want*1.001 {
		t.Fatalf("spent $%g, want $%g", st.Budget.SpentUSD, want)
	}
	// A rerun with the same budget answers what was done from the cache.
	tc2 := newTeacher(t, cfg, store, nil)
	res2 := Map(context.Background(), tc2, reqs, Text)
	if f2, _ := Failed(res2); f2 > failed || tc2.Stats().CacheHits != int64(done) {
		t.Fatalf("rerun: %d failed, %d hits", f2, tc2.Stats().CacheHits)
	}
}

// Cancelling stops new calls; items never started report the context error.
func TestMapCancel(t *testing.T) {
	srv, cfg := fake(t, ProviderOpenAI)
	cfg.Limits.Concurrency = 2
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		once.Do(cancel)
		return teachertest.Answer{Text: "x"}
	}
	tc := newTeacher(t, cfg, nil, nil)
	var reqs []*Request
	for i := range 50 {
		reqs = append(reqs, userReq(strconv.Itoa(i), 0))
	}
	res := Map(ctx, tc, reqs, Text)
	if srv.Calls() > 4 {
		t.Fatalf("%d calls after cancel", srv.Calls())
	}
	if !errors.Is(res[49].Err, context.Canceled) {
		t.Fatalf("last item: %v", res[49].Err)
	}
}

// A damaged cache entry costs one call and is replaced, not paid for on
// every run.
func TestDamagedCacheEntryIsReplaced(t *testing.T) {
	srv, cfg := fake(t, ProviderOpenAI)
	store := localStore(t)
	req := userReq("q", 0)
	key := cacheObject(CacheKey(cfg.Provider, cfg.Model, req))
	if _, err := store.Put(context.Background(), key, strings.NewReader(`{"reply": {"te`), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	for run := range 2 {
		r, err := newTeacher(t, cfg, store, &logs).Call(context.Background(), req)
		if err != nil || r.Text != "q" {
			t.Fatalf("run %d: %v, %v", run, r, err)
		}
	}
	if srv.Calls() != 1 || !strings.Contains(logs.String(), "damaged cache entry") {
		t.Fatalf("%d calls; logs:\n%s", srv.Calls(), logs.String())
	}
}

// Every part of a request that shapes the reply enters the cache key, so no
// reply is ever served for a call it did not answer.
func TestCacheKeyCoversTheCall(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	seed := int64(7)
	base := func() *Request {
		return &Request{Messages: []Message{{System, "s"}, {User, "u"}}, Params: Params{MaxTokens: 10},
			Schema: map[string]any{"type": "object"}, Prompt: "label@1"}
	}
	k0 := CacheKey("openai", "m", base())
	if CacheKey("openai", "m", base()) != k0 {
		t.Fatal("key not stable")
	}
	for name, edit := range map[string]func(r *Request) (string, string){
		"provider":    func(r *Request) (string, string) { return "gemini", "m" },
		"model":       func(r *Request) (string, string) { return "openai", "m2" },
		"message":     func(r *Request) (string, string) { r.Messages[1].Content = "u2"; return "openai", "m" },
		"role":        func(r *Request) (string, string) { r.Messages[0].Role = User; return "openai", "m" },
		"max_tokens":  func(r *Request) (string, string) { r.Params.MaxTokens = 11; return "openai", "m" },
		"temperature": func(r *Request) (string, string) { r.Params.Temperature = f(0.7); return "openai", "m" },
		"top_p":       func(r *Request) (string, string) { r.Params.TopP = f(0.9); return "openai", "m" },
		"seed":        func(r *Request) (string, string) { r.Params.Seed = &seed; return "openai", "m" },
		"schema":      func(r *Request) (string, string) { r.Schema = nil; return "openai", "m" },
		"prompt":      func(r *Request) (string, string) { r.Prompt = "label@2"; return "openai", "m" },
		"sample":      func(r *Request) (string, string) { r.Sample = 1; return "openai", "m" },
	} {
		r := base()
		prov, model := edit(r)
		if CacheKey(prov, model, r) == k0 {
			t.Errorf("changing the %s leaves the cache key unchanged", name)
		}
	}
}

// A re-ask shows the model its own reply and the parse error, and a call
// that fails is counted as a cache failure, not as a reply.
func TestReaskCarriesParseError(t *testing.T) {
	srv, cfg := fake(t, ProviderOpenAI)
	cfg.Retry.Reasks = 1
	srv.Answer = func(c teachertest.Call) teachertest.Answer {
		if len(c.Messages) == 1 {
			return teachertest.Answer{Text: "I think it is algebra"}
		}
		return teachertest.Answer{Text: "<skill>algebra</skill>"}
	}
	tc := newTeacher(t, cfg, localStore(t), nil)
	res := Generate(context.Background(), tc, userReq("label this", 0), ParseLabel([]string{"algebra"}))
	if res.Err != nil || res.Reasks != 1 || len(res.Value) != 1 || res.Value[0] != "algebra" {
		t.Fatalf("result %+v", res)
	}
	re := srv.Seen()[1].Messages
	if len(re) != 3 || re[1].Role != "assistant" || re[1].Text != "I think it is algebra" ||
		!strings.Contains(re[2].Text, "no <skill>…</skill> tags found") {
		t.Fatalf("re-ask sent %+v; want the reply and the parse error", re)
	}
	srv.Fail(teachertest.Fault{Status: 400})
	if _, err := tc.Call(context.Background(), userReq("refused", 0)); !errors.Is(err, ErrRejected) {
		t.Fatalf("err %v", err)
	}
	if st := tc.Stats(); st.CacheMisses != 3 || st.CacheFailures != 1 || st.Reasks != 1 {
		t.Fatalf("stats %+v; want 3 misses, 1 failure, 1 re-ask", st)
	}
}

// A money budget stops the stage like a token budget: calls in flight
// reserve their worst-case price, and the stop says what the rest would cost.
func TestBudgetUSD(t *testing.T) {
	_, cfg := budgetServer(t, ProviderGemini, 32, 10*time.Millisecond)
	cfg.Prices = map[string]Price{"test-model": {InputPerM: 1000, OutputPerM: 2000}} // $0.16 a reply
	cfg.Budget.USD = 2
	tc := newTeacher(t, cfg, nil, nil)
	res := Map(context.Background(), tc, requests(100, 100), Text)
	failed, budget := Failed(res)
	st := tc.Stats()
	if st.Budget.SpentUSD > cfg.Budget.USD || failed == 0 || budget != failed || failed == len(res) {
		t.Fatalf("spent $%g of $%g; %d failed, %d on budget", st.Budget.SpentUSD, cfg.Budget.USD, failed, budget)
	}
	// Which requests are refused depends on the order the calls were
	// scheduled in, so the error checked is the first refusal's.
	var stop error
	for _, r := range res {
		if r.Err != nil {
			stop = r.Err
			break
		}
	}
	if want := float64(len(res)-failed) * 0.16; st.Budget.SpentUSD < want*0.999 || st.Budget.SpentUSD > want*1.001 ||
		st.Budget.NeedUSD <= 0 || !strings.Contains(stop.Error(), "$") {
		t.Fatalf("spent $%g for %d replies, need $%g, refusal %v", st.Budget.SpentUSD, len(res)-failed, st.Budget.NeedUSD, stop)
	}
}

// A reply that arrives as the stage is cancelled is paid for: it is cached
// all the same, and a new call after the cancel never starts.
func TestReplyCachedAfterCancel(t *testing.T) {
	store := localStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	provider := ModelFunc(func(context.Context, *Request) (*Reply, error) {
		calls++
		cancel() // e.g. the job is told to stop while the reply is on its way
		return &Reply{Text: "paid", Finish: FinishStop, Usage: Usage{Input: 3, Output: 4}}, nil
	})
	cfg := testConfig(ProviderOpenAI, "http://127.0.0.1:1/v1")
	tc, err := New(context.Background(), cfg, store, &Options{Provider: provider})
	if err != nil {
		t.Fatal(err)
	}
	req := userReq("q", 0)
	if r, err := tc.Call(ctx, req); err != nil || r.Text != "paid" {
		t.Fatalf("%v, %v", r, err)
	}
	if _, err := tc.Call(ctx, userReq("later", 0)); !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("call after cancel: %v, %d calls", err, calls)
	}
	if _, err := store.Stat(context.Background(), cacheObject(CacheKey(cfg.Provider, cfg.Model, req))); err != nil {
		t.Fatalf("paid reply not cached: %v", err)
	}
	if st := tc.Stats(); st.CacheWriteErr != 0 || st.CacheMisses != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A resumed stage hands the budget what earlier runs spent, so a restart
// cannot spend the whole budget again.
func TestBudgetAcrossRestarts(t *testing.T) {
	srv, cfg := budgetServer(t, ProviderOpenAI, 4, 0)
	cfg.Budget.Tokens = 1000
	store := localStore(t)
	reqs := requests(20, 100)
	tc1 := newTeacher(t, cfg, store, nil)
	Map(context.Background(), tc1, reqs[:5], Text)
	spent := tc1.Stats().Budget
	tc2, err := New(context.Background(), cfg, store, &Options{Spent: spent})
	if err != nil {
		t.Fatal(err)
	}
	res := Map(context.Background(), tc2, reqs, Text)
	st := tc2.Stats()
	if st.Budget.SpentTokens > cfg.Budget.Tokens || st.CacheHits != 5 || srv.Calls()*100 != int(st.Budget.SpentTokens) {
		t.Fatalf("after the restart: spent %d of %d, %d hits, %d calls", st.Budget.SpentTokens, cfg.Budget.Tokens, st.CacheHits, srv.Calls())
	}
	if f, b := Failed(res); f == 0 || b != f {
		t.Fatalf("%d failed (%d budget): the restart spent a fresh budget", f, b)
	}
}
