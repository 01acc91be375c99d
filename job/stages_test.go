package job

// Small stages made for the tests: gen (sharded) → scale/a, scale/b (two
// instances of one kind) → sum.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

type genConfig struct {
	Count int `yaml:"count"`
	Seed  int `yaml:"seed"`
}

func (c *genConfig) Validate() error {
	if c.Count <= 0 {
		return errors.New("count is required and must be positive")
	}
	return nil
}

type scaleConfig struct {
	A int `yaml:"a"`
	B int `yaml:"b"`
}

func (c *scaleConfig) Validate() error {
	if c.A == 0 || c.B == 0 {
		return errors.New("a and b must be non-zero")
	}
	return nil
}

// hooks let a test watch and hold stages; dir is a local folder outside
// storage where stages append "stage shard holder" to runs.log, and where a
// stage named in block writes "<stage>.started" and waits for "go".
type hooks struct {
	dir    string
	holder string
	block  string
	fail   string // a stage that fails (after writing its first output)
}

func (h *hooks) ran(ctx context.Context, env *Env, what string) error {
	if h == nil || h.dir == "" {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(h.dir, "runs.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	i, n := env.Shard()
	fmt.Fprintf(f, "%s %d/%d %s\n", what, i, n, h.holder)
	f.Close()
	if h.fail == what {
		return errors.New("failing as the test asked")
	}
	if h.block != what {
		return nil
	}
	if err := os.WriteFile(startedFile(h.dir, what), []byte(h.holder), 0o644); err != nil {
		return err
	}
	for {
		if _, err := os.Stat(filepath.Join(h.dir, "go")); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

type genStage struct {
	cfg *genConfig
	h   *hooks
}

func (s *genStage) Name() string    { return "gen" }
func (s *genStage) Needs() []string { return nil }
func (s *genStage) Fingerprint(spec *Spec, up map[string]string) (string, error) {
	c, err := spec.Canonical("gen")
	if err != nil {
		return "", err
	}
	return Hash("gen v1", c, up)
}

// Run writes shard i's numbers: k*k+seed for k ≡ i (mod n).
func (s *genStage) Run(ctx context.Context, env *Env) (Metrics, error) {
	i, n := env.Shard()
	var b strings.Builder
	lines := 0
	for k := i; k < s.cfg.Count; k += n {
		fmt.Fprintf(&b, "%d %d\n", k, k*k+s.cfg.Seed)
		lines++
	}
	if err := env.WriteFile(ctx, "part.txt", []byte(b.String())); err != nil {
		return nil, err
	}
	if err := s.h.ran(ctx, env, "gen"); err != nil {
		return nil, err
	}
	return Metrics{"lines": lines}, nil
}

// Merge writes numbers.txt: every shard's lines, ordered by k.
func (s *genStage) Merge(ctx context.Context, env *Env) (Metrics, error) {
	type kv struct{ k, v int }
	var all []kv
	for i := range env.Shards() {
		rc, err := env.OpenShard(ctx, i, "part.txt")
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(rc)
		for sc.Scan() {
			var e kv
			if _, err := fmt.Sscan(sc.Text(), &e.k, &e.v); err != nil {
				rc.Close()
				return nil, err
			}
			all = append(all, e)
		}
		rc.Close()
	}
	sort.Slice(all, func(a, b int) bool { return all[a].k < all[b].k })
	w := env.Create(ctx, "numbers.txt")
	for _, e := range all {
		fmt.Fprintf(w, "%d\n", e.v)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := s.h.ran(ctx, env, "gen-merge"); err != nil {
		return nil, err
	}
	return Metrics{"numbers": len(all)}, nil
}

// scaleStage is one kind with instances scale/a and scale/b, each reading
// its own field of the scale section.
type scaleStage struct {
	which string // "a" or "b"
	cfg   *scaleConfig
	h     *hooks
}

func (s *scaleStage) Name() string    { return "scale/" + s.which }
func (s *scaleStage) Needs() []string { return []string{"gen"} }
func (s *scaleStage) factor() int {
	if s.which == "a" {
		return s.cfg.A
	}
	return s.cfg.B
}
func (s *scaleStage) Fingerprint(_ *Spec, up map[string]string) (string, error) {
	return Hash("scale v1", s.factor(), up)
}

func (s *scaleStage) Run(ctx context.Context, env *Env) (Metrics, error) {
	b, err := env.ReadFile(ctx, "gen", "numbers.txt")
	if err != nil {
		return nil, err
	}
	var out strings.Builder
	p := env.Progress("numbers", int64(strings.Count(string(b), "\n")))
	for _, f := range strings.Fields(string(b)) {
		v, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&out, "%d\n", v*s.factor())
		p.Add(1)
	}
	// A first output goes out before the hook: a kill there leaves a
	// half-finished stage (outputs, no manifest) behind.
	if err := env.WriteFile(ctx, "partial.txt", []byte("started\n")); err != nil {
		return nil, err
	}
	if err := s.h.ran(ctx, env, s.Name()); err != nil {
		return nil, err
	}
	if err := env.WriteFile(ctx, "scaled.txt", []byte(out.String())); err != nil {
		return nil, err
	}
	return Metrics{"factor": s.factor()}, nil
}

type sumStage struct{ h *hooks }

func (s *sumStage) Name() string    { return "sum" }
func (s *sumStage) Needs() []string { return []string{"scale/a", "scale/b"} }
func (s *sumStage) Fingerprint(_ *Spec, up map[string]string) (string, error) {
	return Hash("sum v1", up)
}

func (s *sumStage) Run(ctx context.Context, env *Env) (Metrics, error) {
	total := 0
	for _, st := range s.Needs() {
		b, err := env.ReadFile(ctx, st, "scaled.txt")
		if err != nil {
			return nil, err
		}
		for _, f := range strings.Fields(string(b)) {
			v, _ := strconv.Atoi(f)
			total += v
		}
	}
	if err := s.h.ran(ctx, env, "sum"); err != nil {
		return nil, err
	}
	return Metrics{"total": total}, env.WriteFile(ctx, "sum.txt", []byte(strconv.Itoa(total)+"\n"))
}

// testSpec returns a spec with the test sections and the graph over it.
func testSpec(h *hooks) (*Spec, *Graph, error) {
	spec := NewSpec()
	gen := genConfig{Seed: 1} // count is required
	sc := scaleConfig{A: 2, B: 3}
	spec.Register("gen", &gen)
	spec.Register("scale", &sc)
	g, err := NewGraph(&sumStage{h}, &scaleStage{"a", &sc, h}, &scaleStage{"b", &sc, h}, &genStage{&gen, h})
	return spec, g, err
}

// startedFile is where a blocked stage says it has started.
func startedFile(dir, stage string) string {
	return filepath.Join(dir, strings.ReplaceAll(stage, "/", "_")+".started")
}
