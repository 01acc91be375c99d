package job

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/storage/storagetest"
)

// keysUnder lists the keys under prefix.
func keysUnder(t *testing.T, st storage.Store, prefix string) []string {
	t.Helper()
	var keys []string
	if err := st.List(context.Background(), prefix, func(a storage.Attrs) error {
		keys = append(keys, a.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestPrune: stage cache entries no run used since the cut-off go, those a
// recent run reused stay however old they are; a dry run deletes nothing;
// old runs go only when asked, never the newest; teacher replies only when
// asked; a job after pruning recomputes what went and reuses what stayed.
func TestPrune(t *testing.T) {
	forBackends(t, func(t *testing.T, st storage.Store) {
		ctx := context.Background()
		now := time.Now()
		at := func(d time.Duration) func() time.Time { return func() time.Time { return now.Add(d) } }
		day := 24 * time.Hour
		// "old" and "mid" ran 40 days ago; "new" reused mid's stages yesterday.
		mustStart(t, st, nil, Options{RunID: "old", Now: at(-40 * day)}, "gen.seed=7")
		mustStart(t, st, nil, Options{RunID: "mid", Now: at(-40 * day)})
		if s := mustStart(t, st, nil, Options{RunID: "new", Now: at(-day)}); len(s.Reused) != 4 {
			t.Fatalf("new reused %v, want all 4 stages", s.Reused)
		}
		oldFP, err := ReadRun(ctx, st, "old")
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"cache/teacher/ab/abc.json", "cache/embed/cd/cde.json"} {
			if _, err := st.Put(ctx, k, strings.NewReader(`{}`), storage.PutOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		cacheBefore := keysUnder(t, st, "cache/")

		opts := PruneOptions{Before: now.Add(-30 * day), DryRun: true}
		dry, err := Prune(ctx, st, opts)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, fp := range oldFP.Fingerprints {
			want = append(want, "cache/stages/"+fp+"/")
		}
		var got []string
		for _, p := range dry {
			got = append(got, p.Key)
			if p.Kind != "stage" || p.Objects < 2 || p.Bytes <= 0 {
				t.Errorf("dry run lists %+v", p)
			}
		}
		checkList(t, "entries a dry run would prune", got, want...)
		if after := keysUnder(t, st, "cache/"); !slices.Equal(after, cacheBefore) {
			t.Fatalf("a dry run deleted objects: %d keys before, %d after", len(cacheBefore), len(after))
		}

		opts.DryRun = false
		if _, err := Prune(ctx, st, opts); err != nil {
			t.Fatal(err)
		}
		for _, k := range want {
			if left := keysUnder(t, st, k); len(left) != 0 {
				t.Errorf("%s still holds %v", k, left)
			}
		}
		if keysUnder(t, st, "cache/teacher/") == nil {
			t.Error("teacher replies were pruned without being asked")
		}
		// The old spec computes again; the recently used one is still reused.
		if s := mustStart(t, st, nil, Options{}, "gen.seed=7"); len(s.Ran) != 4 {
			t.Errorf("after pruning, the old spec ran %v and reused %v, want all 4 ran", s.Ran, s.Reused)
		}
		if s := mustStart(t, st, nil, Options{}); len(s.Reused) != 4 {
			t.Errorf("after pruning, the recent spec reused %v, want all 4", s.Reused)
		}

		// Runs and teacher replies, when asked; the newest run always stays.
		pruned, err := Prune(ctx, st, PruneOptions{Before: now.Add(time.Hour), Runs: true, Teacher: true, DryRun: false})
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]int{}
		for _, p := range pruned {
			kinds[p.Kind]++
		}
		if kinds["run"] != 4 || kinds["teacher"] != 1 || kinds["embed"] != 1 {
			t.Errorf("pruned %v, want 4 of the 5 runs, the teacher replies and the embeddings", kinds)
		}
		runs, skipped, err := ListRuns(ctx, st)
		if err != nil || len(skipped) != 0 || len(runs) != 1 {
			t.Fatalf("runs left: %d (skipped %v, %v), want only the newest", len(runs), skipped, err)
		}
		if keysUnder(t, st, "cache/teacher/") != nil || keysUnder(t, st, "cache/embed/") != nil {
			t.Error("teacher replies or embeddings were kept though asked to prune them")
		}
	})
}

// TestPruneKeepsLeasedRunsAndOrphans: a run whose work is leased right now
// stays; a cache entry a crashed copy left without a manifest goes once its
// objects are old.
func TestPruneKeepsLeasedRunsAndOrphans(t *testing.T) {
	st := storagetest.Local(t)
	ctx := context.Background()
	mustStart(t, st, nil, Options{RunID: "a"})
	mustStart(t, st, nil, Options{RunID: "b"})
	l := Lease{Holder: "w9", Expires: time.Now().Add(time.Hour)}
	b, _ := json.Marshal(l)
	if _, err := st.Put(ctx, leaseKey("a", "sum", 0, 1), bytes.NewReader(b), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, "cache/stages/orphan/part.txt", strings.NewReader("x"), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	pruned, err := Prune(ctx, st, PruneOptions{Before: time.Now().Add(time.Minute), Runs: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pruned {
		if p.Kind == "run" || strings.Contains(p.Key, "orphan") {
			got = append(got, p.Key)
		}
	}
	checkList(t, "pruned", got, "cache/stages/orphan/")
	if _, err := Prune(ctx, st, PruneOptions{}); err == nil {
		t.Error("a prune without a cut-off was accepted")
	}
}

// vanishing deletes a stage cache object just before the first copy from the
// cache, as a prune running beside the job would.
type vanishing struct {
	storage.Store
	done bool
}

func (v *vanishing) Copy(ctx context.Context, dst, src string) (storage.Attrs, error) {
	if !v.done && strings.HasPrefix(src, "cache/stages/") {
		v.done = true
		if err := v.Store.Delete(ctx, src); err != nil {
			return storage.Attrs{}, err
		}
	}
	return v.Store.Copy(ctx, dst, src)
}

// TestCacheEntryPrunedWhileReused: the job computes the stage instead of
// failing.
func TestCacheEntryPrunedWhileReused(t *testing.T) {
	st := storagetest.Local(t)
	mustStart(t, st, nil, Options{RunID: "first"})
	v := &vanishing{Store: st}
	s := mustStart(t, v, nil, Options{RunID: "second"})
	if !v.done || len(s.Ran) != 1 || len(s.Reused) != 3 {
		t.Errorf("ran %v, reused %v; want the first stage computed and 3 reused", s.Ran, s.Reused)
	}
	if got := readSum(t, st, "second"); got != readSum(t, st, "first") {
		t.Errorf("sum = %s, want %s", got, readSum(t, st, "first"))
	}
}
