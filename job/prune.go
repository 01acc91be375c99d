package job

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/statjob/statjob/storage"
)

// PruneOptions say what Prune may delete. Nothing newer than Before is
// touched.
type PruneOptions struct {
	// Before: delete what was last used before this time.
	Before time.Time
	// Runs also deletes run folders created before Before, except the newest
	// run and runs whose work is leased right now. Their finished stages
	// stay reusable through cache/stages.
	Runs bool
	// Teacher also deletes teacher replies (cache/teacher/) and embedding
	// vectors (cache/embed/) written before Before: a job that asks the same
	// again pays for it again.
	Teacher bool
	// DryRun lists what would go and deletes nothing.
	DryRun bool
	// Now is the clock that decides which leases are live; nil: time.Now.
	Now func() time.Time
}

// Pruned is one thing Prune deleted (or would delete, in a dry run): a
// stage cache entry, a run folder or the old teacher replies.
type Pruned struct {
	Kind    string    `json:"kind"` // "stage", "run", "teacher" or "embed"
	Key     string    `json:"key"`  // the folder (or prefix) under the root
	Objects int       `json:"objects"`
	Bytes   int64     `json:"bytes"`
	Used    time.Time `json:"last_used"`
}

// Prune deletes stage cache entries (cache/stages/<fingerprint>/) that no run
// has used since opts.Before and, when asked, old run folders and teacher
// replies. An entry's last use is the newest of its own manifest and the
// manifests of every run's stage with that fingerprint, so an entry reused
// each night stays however old it is. Entries a crashed copy left without
// a manifest go when all their objects are older than Before. An entry's
// manifest is deleted first: a job that looks at it meanwhile recomputes
// the stage rather than taking half an entry.
func Prune(ctx context.Context, store storage.Store, opts PruneOptions) ([]Pruned, error) {
	if opts.Before.IsZero() {
		return nil, errors.New("prune: say before when (a time in the past)")
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	used, err := lastUses(ctx, store)
	if err != nil {
		return nil, err
	}
	var out []Pruned
	entries, err := folders(ctx, store, "cache/stages/")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		fp := strings.TrimSuffix(strings.TrimPrefix(e.key, "cache/stages/"), "/")
		last, ok := used[fp]
		if !ok { // no manifest anywhere: a copy that never finished
			last = e.newest
		}
		if !last.Before(opts.Before) {
			continue
		}
		out = append(out, Pruned{Kind: "stage", Key: e.key, Objects: len(e.objects), Bytes: e.bytes, Used: last})
		if !opts.DryRun {
			if err := deleteFolder(ctx, store, e.key, e.key+manifestName, e.objects); err != nil {
				return out, err
			}
		}
	}
	if opts.Runs {
		pruned, err := pruneRuns(ctx, store, opts, now())
		out = append(out, pruned...)
		if err != nil {
			return out, err
		}
	}
	if opts.Teacher {
		for _, c := range []struct{ kind, prefix string }{{"teacher", "cache/teacher/"}, {"embed", "cache/embed/"}} {
			p, old, err := oldObjects(ctx, store, c.prefix, opts.Before)
			if err != nil {
				return out, err
			}
			if p.Objects == 0 {
				continue
			}
			p.Kind, p.Key = c.kind, c.prefix
			out = append(out, p)
			if !opts.DryRun {
				if err := deleteKeys(ctx, store, old); err != nil {
					return out, err
				}
			}
		}
	}
	return out, nil
}

// oldObjects sums up the objects under prefix written before before.
func oldObjects(ctx context.Context, store storage.Store, prefix string, before time.Time) (Pruned, []string, error) {
	var p Pruned
	var keys []string
	err := store.List(ctx, prefix, func(a storage.Attrs) error {
		if a.Updated.Before(before) {
			keys = append(keys, a.Key)
			p.Objects++
			p.Bytes += a.Size
			if a.Updated.After(p.Used) {
				p.Used = a.Updated
			}
		}
		return nil
	})
	if err != nil {
		return p, nil, fmt.Errorf("prune: list %s: %w", store.URI(prefix), err)
	}
	return p, keys, nil
}

// lastUses maps each fingerprint to the newest finish time among the stage
// cache's manifest and every run's stage manifest with that fingerprint.
func lastUses(ctx context.Context, store storage.Store) (map[string]time.Time, error) {
	used := map[string]time.Time{}
	for _, prefix := range []string{"cache/stages/", "runs/"} {
		var keys []string
		err := store.List(ctx, prefix, func(a storage.Attrs) error {
			if strings.HasSuffix(a.Key, "/"+manifestName) && !strings.Contains(a.Key, "/_shards/") {
				keys = append(keys, a.Key)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("prune: list %s: %w", store.URI(prefix), err)
		}
		for _, k := range keys {
			var m Manifest
			if err := readJSON(ctx, store, k, &m); err != nil {
				if errors.Is(err, storage.ErrNotExist) {
					continue
				}
				return nil, fmt.Errorf("prune: %w", err)
			}
			if m.Finished.After(used[m.Fingerprint]) {
				used[m.Fingerprint] = m.Finished
			}
		}
	}
	return used, nil
}

func pruneRuns(ctx context.Context, store storage.Store, opts PruneOptions, now time.Time) ([]Pruned, error) {
	runs, _, err := ListRuns(ctx, store)
	if err != nil {
		return nil, err
	}
	fs, err := folders(ctx, store, "runs/")
	if err != nil {
		return nil, err
	}
	byKey := map[string]folder{}
	for _, f := range fs {
		byKey[f.key] = f
	}
	var out []Pruned
	for i, r := range runs {
		if i == 0 || !r.Created.Before(opts.Before) { // newest first: keep the newest
			continue
		}
		leases, err := ReadLeases(ctx, store, r.ID)
		if err != nil {
			return out, fmt.Errorf("prune: leases of run %s: %w", r.ID, err)
		}
		live := false
		for _, l := range leases {
			if !l.Released && now.Before(l.Expires) {
				live = true
			}
		}
		if live {
			continue
		}
		f := byKey[runKey(r.ID, "")]
		out = append(out, Pruned{Kind: "run", Key: f.key, Objects: len(f.objects), Bytes: f.bytes, Used: r.Created})
		if !opts.DryRun {
			// run.json first: a half-deleted run is no longer listed.
			if err := deleteFolder(ctx, store, f.key, f.key+"run.json", f.objects); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

type folder struct {
	key     string // "<prefix><name>/"
	objects []string
	bytes   int64
	newest  time.Time
}

// folders groups the objects under prefix by the next path element.
func folders(ctx context.Context, store storage.Store, prefix string) ([]folder, error) {
	var out []folder
	err := store.List(ctx, prefix, func(a storage.Attrs) error {
		name, _, _ := strings.Cut(strings.TrimPrefix(a.Key, prefix), "/")
		key := prefix + name + "/"
		if len(out) == 0 || out[len(out)-1].key != key {
			out = append(out, folder{key: key})
		}
		f := &out[len(out)-1]
		f.objects = append(f.objects, a.Key)
		f.bytes += a.Size
		if a.Updated.After(f.newest) {
			f.newest = a.Updated
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prune: list %s: %w", store.URI(prefix), err)
	}
	return out, nil
}

// deleteFolder deletes first (when present among objects), then the rest.
func deleteFolder(ctx context.Context, store storage.Store, dir, first string, objects []string) error {
	rest := make([]string, 0, len(objects))
	for _, k := range objects {
		if k == first {
			if err := store.Delete(ctx, k); err != nil {
				return fmt.Errorf("prune %s: %w", store.URI(dir), err)
			}
			continue
		}
		rest = append(rest, k)
	}
	return deleteKeys(ctx, store, rest)
}

func deleteKeys(ctx context.Context, store storage.Store, keys []string) error {
	for _, k := range keys {
		if err := store.Delete(ctx, k); err != nil {
			return fmt.Errorf("prune: delete %s: %w", store.URI(k), err)
		}
	}
	return nil
}
