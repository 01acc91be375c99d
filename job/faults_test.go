package job

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
)

// flakyEmulators are the cloud emulators the fault tests put a
// storagetest.FaultProxy in front of.
var flakyEmulators = map[string]func(testing.TB) storage.Config{
	"gcs-fake":    storagetest.FakeGCS,
	"s3-gofakes3": storagetest.GoFakeS3,
}

// TestLeaseOverLostAnswers: the lease's compare-and-swap writes go through
// a proxy that loses the answer of many applied requests. Renewals and the
// release still succeed (a lost answer to our own write is not "someone
// else holds it"), and a real takeover is still noticed.
func TestLeaseOverLostAnswers(t *testing.T) {
	for name, emu := range flakyEmulators {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			clean := emu(t)
			c, counts := storagetest.Flaky(t, clean, storagetest.Faults{Seed: 5, Lost: 0.4})
			flaky, direct := storagetest.Open(t, c), storagetest.Open(t, clean)
			clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			now := func() time.Time { return clock }
			a := &leaser{store: flaky, holder: "a", ttl: time.Minute, heartbeat: 20 * time.Second, now: now}
			b := &leaser{store: direct, holder: "b", ttl: time.Minute, heartbeat: 20 * time.Second, now: now}
			for piece := range 4 {
				key := runKey("r", fmt.Sprintf("leases/p%d", piece))
				gen, err := a.acquire(ctx, key)
				if err != nil {
					t.Fatalf("acquire %s: %v", key, err)
				}
				h := &hold{l: a, key: key, gen: gen, stop: make(chan struct{}), done: make(chan struct{})}
				for range 6 {
					clock = clock.Add(20 * time.Second)
					if err := h.renew(ctx); err != nil {
						t.Fatalf("renew %s: %v", key, err)
					}
				}
				if ls, g, err := b.read(ctx, key); err != nil || ls.Holder != "a" || g != h.gen || !ls.Expires.Equal(clock.Add(time.Minute)) {
					t.Fatalf("lease %s after renewals: %+v at %s (%v), want a's, renewed, at %s", key, ls, g, err, h.gen)
				}
				if piece%2 == 0 {
					close(h.done)
					if err := h.release(ctx); err != nil {
						t.Fatalf("release %s: %v", key, err)
					}
					if ls, _, _ := b.read(ctx, key); !ls.Released {
						t.Fatalf("lease %s not released: %+v", key, ls)
					}
					continue
				}
				// b takes the lease over once it has expired: a's next
				// renewal must see it lost, lost answers or not.
				clock = clock.Add(2 * time.Minute)
				if _, err := b.acquire(ctx, key); err != nil {
					t.Fatalf("b takes %s over: %v", key, err)
				}
				if err := h.renew(ctx); !errors.Is(err, ErrLeaseLost) {
					t.Fatalf("renew %s after b took it: %v, want ErrLeaseLost", key, err)
				}
				if ls, _, _ := b.read(ctx, key); ls.Holder != "b" {
					t.Fatalf("lease %s after a's failed renewal: %+v, want b's", key, ls)
				}
			}
			n := counts()
			t.Logf("through the proxy: %+v", n)
			if n.LostWrites == 0 {
				t.Errorf("no lease write lost its answer: %+v", n)
			}
		})
	}
}

// TestRunOverFlakyStore: two workers of one sharded run, each through its
// own fault proxy in front of one GCS or S3 emulator (503 and 429 answers,
// reset connections, and applied writes whose answer is lost, by seeded
// chance), finish with every piece computed once and outputs identical to
// a run on a local folder without faults.
func TestRunOverFlakyStore(t *testing.T) {
	ref := storagetest.Local(t)
	mustStart(t, ref, nil, Options{RunID: "whole"})
	want, wantSum := outputs(t, ref, "whole"), readSum(t, ref, "whole")
	for name, emu := range flakyEmulators {
		t.Run(name, func(t *testing.T) {
			clean := emu(t)
			dir := t.TempDir()
			var (
				wg     sync.WaitGroup
				errs   = make([]error, 2)
				counts = make([]func() storagetest.FaultCounts, 2)
			)
			for i := range 2 {
				f := storagetest.Faults{Seed: uint64(i + 1), Unavailable: 0.08, Reset: 0.04, Lost: 0.2}
				if i == 1 {
					f.UnavailableStatus, f.LostByReset = http.StatusTooManyRequests, true
				}
				c, n := storagetest.Flaky(t, clean, f)
				counts[i] = n
				st := storagetest.Open(t, c)
				wg.Go(func() {
					h := &hooks{dir: dir, holder: fmt.Sprintf("w%d", i)}
					_, errs[i] = start(t, st, h, Options{RunID: "flaky", Shard: i, Shards: 2})
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("worker %d: %v", i, err)
				}
			}
			checkList(t, "runs.log", runLog(t, dir), "gen 0/2", "gen 1/2", "gen-merge 0/1", "scale/a 0/1", "scale/b 0/1", "sum 0/1")
			st := storagetest.Open(t, clean)
			if got := outputs(t, st, "flaky"); !mapsEqual(got, want) {
				t.Errorf("outputs over the flaky store differ:\n got %v\nwant %v", got, want)
			}
			if got := readSum(t, st, "flaky"); got != wantSum {
				t.Errorf("sum = %s, want %s", got, wantSum)
			}
			var total storagetest.FaultCounts
			for _, n := range counts {
				total.Add(n())
			}
			t.Logf("through the proxies: %+v", total)
			if total.Unavailable == 0 || total.Reset == 0 || total.LostWrites == 0 {
				t.Errorf("not every kind of fault was injected: %+v", total)
			}
		})
	}
}

// TestRenewalOfUnknownOutcome: a renewal the store applied but whose
// outcome never reached the holder (the write's answer was lost and
// reading back failed too) leaves the hold one generation behind. The next
// heartbeat must find the lease still its own, not lost; the release
// still marks it released.
func TestRenewalOfUnknownOutcome(t *testing.T) {
	forBackends(t, func(t *testing.T, st storage.Store) {
		ctx := context.Background()
		a := &leaser{store: st, holder: "a", ttl: time.Minute, heartbeat: 20 * time.Second, now: time.Now}
		key := runKey("r", "leases/gen")
		gen, err := a.acquire(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		h := &hold{l: a, key: key, gen: gen, stop: make(chan struct{}), done: make(chan struct{})}
		cur, _, err := a.read(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		cur.Heartbeat = cur.Heartbeat.Add(time.Second)
		if _, err := a.put(ctx, key, cur, storage.PutOptions{IfGeneration: gen}); err != nil {
			t.Fatal(err) // applied; h never learns the new generation
		}
		if err := h.renew(ctx); err != nil {
			t.Fatalf("renew after a renewal of unknown outcome: %v", err)
		}
		close(h.done)
		if err := h.release(ctx); err != nil {
			t.Fatal(err)
		}
		if ls, _, _ := a.read(ctx, key); !ls.Released || ls.Holder != "a" {
			t.Fatalf("lease after release: %+v", ls)
		}
	})
}
