// Package job runs statjob's pipeline: the spec (YAML sections composed from
// each package's Config), the stage graph, fingerprints, the run layout in
// storage, resume, cross-run reuse, leases, shards, signals and progress.
//
// It knows no stage kind, provider or model: main registers settings
// sections on a Spec and builds a Graph of Stage instances; job runs them.
// Every stage writes its outputs through an Env and is done when its
// MANIFEST.json exists:
//
//	<root>/runs/<run-id>/run.json               frozen spec (never rewritten)
//	<root>/runs/<run-id>/leases/<stage>[.<i>]   who works on what, until when
//	<root>/runs/<run-id>/<stage>/MANIFEST.json  fingerprint, inputs, outputs, metrics, times
//	<root>/runs/<run-id>/<stage>/...            outputs
//	<root>/cache/stages/<fingerprint>/          finished outputs shared by all runs
package job

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// Metrics are a stage's results worth reading in a manifest or report
// (counts, accuracies, costs). They must encode as JSON.
type Metrics map[string]any

// Stage is one step of the pipeline. A kind of stage may appear several
// times in a graph as instances with their own names ("sft/stat-sel",
// "sft/stat-syn"), settings and needs.
type Stage interface {
	// Name is the instance name, unique in the graph: lower case words
	// separated by "/", "-", "_" or ".".
	Name() string
	// Needs names the stages whose outputs this one reads.
	Needs() []string
	// Fingerprint hashes exactly what determines the output: the settings
	// the stage reads (spec.Canonical of its sections, or its own struct),
	// the upstream fingerprints (by stage name), a version constant bumped
	// when the code's output changes, and the hashes of the models,
	// templates and prompts it uses. Hash builds one.
	Fingerprint(spec *Spec, upstream map[string]string) (string, error)
	// Run does the work, writing outputs through env, and returns metrics.
	// For a Sharded stage, Run does one shard: env.Shard() says which.
	Run(ctx context.Context, env *Env) (Metrics, error)
}

// Sharded is a Stage whose work splits into shards run by the tasks of a
// batch array. Each task runs its own shard (Run with env.Shard() = i of n);
// Merge runs once, in whichever task finds every shard's manifest present,
// reads the shards with env.OpenShard and writes the stage's outputs.
type Sharded interface {
	Stage
	Merge(ctx context.Context, env *Env) (Metrics, error)
}

// Hash returns the hex sha256 of its parts, each encoded as JSON (map keys
// sorted, struct fields in declaration order), for fingerprints:
//
//	job.Hash("label v2", cfg, upstream)
//
// An empty list or map counts as absent (null): a setting left out and the
// same setting written as [] or {} — as a spec saved with statjob spec, or
// a run's frozen run.json, writes it — give one fingerprint.
func Hash(parts ...any) (string, error) {
	h := sha256.New()
	for i, p := range parts {
		b, err := json.Marshal(p)
		if err == nil {
			b, err = emptyAsNull(b)
		}
		if err != nil {
			return "", fmt.Errorf("fingerprint part %d: %w", i, err)
		}
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// emptyAsNull rewrites compact JSON (as json.Marshal writes it) with every
// [] and {} replaced by null, keeping everything else byte for byte.
func emptyAsNull(b []byte) ([]byte, error) {
	if !bytes.Contains(b, []byte("[]")) && !bytes.Contains(b, []byte("{}")) {
		return b, nil // nothing to rewrite (the common case)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out bytes.Buffer
	type level struct {
		object bool
		n      int // values (or keys) written at this level
	}
	var stack []level
	pending := byte(0) // '[' or '{' opened but not yet written
	sep := func() {    // the separator before the next token at the current level
		if len(stack) == 0 {
			return
		}
		top := &stack[len(stack)-1]
		if top.object && top.n%2 == 1 {
			out.WriteByte(':')
		} else if top.n > 0 {
			out.WriteByte(',')
		}
		top.n++
	}
	flush := func() {
		if pending != 0 {
			out.WriteByte(pending)
			pending = 0
		}
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if d, ok := tok.(json.Delim); ok && (d == ']' || d == '}') {
			if pending != 0 { // empty: the opener was never written
				pending = 0
				stack = stack[:len(stack)-1]
				out.WriteString("null")
				continue
			}
			stack = stack[:len(stack)-1]
			out.WriteByte(byte(d))
			continue
		}
		flush()
		sep()
		switch t := tok.(type) {
		case json.Delim:
			pending = byte(t)
			stack = append(stack, level{object: t == '{'})
		case json.Number:
			out.WriteString(string(t))
		default:
			v, err := json.Marshal(t)
			if err != nil {
				return nil, err
			}
			out.Write(v)
		}
	}
	return out.Bytes(), nil
}

// notInstalled stands in the plan for a stage this build does not have.
type notInstalled struct {
	name  string
	needs []string
}

// NotInstalled returns a placeholder for a planned stage that this build
// does not implement. It appears in the plan and in `statjob stages`; a run
// that would need it refuses to start, naming it.
func NotInstalled(name string, needs ...string) Stage {
	return &notInstalled{name: name, needs: needs}
}

func (s *notInstalled) Name() string    { return s.name }
func (s *notInstalled) Needs() []string { return s.needs }
func (s *notInstalled) Fingerprint(*Spec, map[string]string) (string, error) {
	return Hash("not installed", s.name)
}
func (s *notInstalled) Run(context.Context, *Env) (Metrics, error) {
	return nil, fmt.Errorf("stage %s is not installed in this build", s.name)
}

// Installed reports whether st is a real stage rather than a placeholder.
func Installed(st Stage) bool {
	_, placeholder := st.(*notInstalled)
	return !placeholder
}

// Graph is a set of stage instances in topological order.
type Graph struct {
	order  []Stage
	byName map[string]Stage
}

// NewGraph checks names (unique, well formed, none a folder of another),
// needs (present) and cycles, and orders the stages so that every stage
// comes after its needs; stages with no order between them keep the order
// given.
func NewGraph(stages ...Stage) (*Graph, error) {
	g := &Graph{byName: map[string]Stage{}}
	for _, st := range stages {
		n := st.Name()
		if err := checkName(n); err != nil {
			return nil, err
		}
		if _, dup := g.byName[n]; dup {
			return nil, fmt.Errorf("stage %q appears twice", n)
		}
		g.byName[n] = st
	}
	for a := range g.byName {
		for b := range g.byName {
			if strings.HasPrefix(b, a+"/") {
				return nil, fmt.Errorf("stage %q would hold stage %q in its folder: rename one", a, b)
			}
		}
	}
	for _, st := range stages {
		for _, need := range st.Needs() {
			if _, ok := g.byName[need]; !ok {
				return nil, fmt.Errorf("stage %s needs %q, which is not in the graph", st.Name(), need)
			}
		}
	}
	// Depth-first, in the given order, so the result is deterministic.
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(st Stage, path []string) error
	visit = func(st Stage, trail []string) error {
		switch state[st.Name()] {
		case 1:
			return fmt.Errorf("stage graph has a cycle: %s", strings.Join(append(trail, st.Name()), " → "))
		case 2:
			return nil
		}
		state[st.Name()] = 1
		for _, need := range st.Needs() {
			if err := visit(g.byName[need], append(trail, st.Name())); err != nil {
				return err
			}
		}
		state[st.Name()] = 2
		g.order = append(g.order, st)
		return nil
	}
	for _, st := range stages {
		if err := visit(st, nil); err != nil {
			return nil, err
		}
	}
	return g, nil
}

func checkName(n string) error {
	if n == "" || path.Clean(n) != n || strings.HasPrefix(n, "/") || strings.HasPrefix(n, ".") {
		return fmt.Errorf("stage name %q: want lower-case words separated by '/', e.g. sft/stat-sel", n)
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("/-_.", r)) {
			return fmt.Errorf("stage name %q: want lower-case words separated by '/', e.g. sft/stat-sel", n)
		}
	}
	for _, reserved := range []string{"leases", "run.json"} {
		if n == reserved || strings.HasPrefix(n, reserved+"/") {
			return fmt.Errorf("stage name %q is reserved for the run layout", n)
		}
	}
	return nil
}

// Stages returns the stages in topological order.
func (g *Graph) Stages() []Stage { return append([]Stage(nil), g.order...) }

// Stage returns the named stage, or nil.
func (g *Graph) Stage(name string) Stage { return g.byName[name] }

// Downstream returns name and every stage that depends on it, directly or
// not.
func (g *Graph) Downstream(name string) map[string]bool {
	out := map[string]bool{name: true}
	for _, st := range g.order { // topological: needs come first
		for _, need := range st.Needs() {
			if out[need] {
				out[st.Name()] = true
			}
		}
	}
	return out
}

// Upstream returns name and every stage it depends on.
func (g *Graph) Upstream(name string) map[string]bool {
	out := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		if out[n] {
			return
		}
		out[n] = true
		for _, need := range g.byName[n].Needs() {
			walk(need)
		}
	}
	walk(name)
	return out
}

// Fingerprints computes every stage's fingerprint from the spec, in
// topological order.
func (g *Graph) Fingerprints(spec *Spec) (map[string]string, error) {
	fps := map[string]string{}
	for _, st := range g.order {
		up := map[string]string{}
		for _, need := range st.Needs() {
			up[need] = fps[need]
		}
		fp, err := st.Fingerprint(spec, up)
		if err != nil {
			return nil, fmt.Errorf("fingerprint of stage %s: %w", st.Name(), err)
		}
		if fp == "" {
			return nil, fmt.Errorf("fingerprint of stage %s is empty", st.Name())
		}
		fps[st.Name()] = fp
	}
	return fps, nil
}

// Select returns the stages a run with --from / --until covers, in order,
// and the set --from forces to recompute. Empty from / until: all stages,
// nothing forced.
func (g *Graph) Select(from, until string) (selected []Stage, forced map[string]bool, err error) {
	forced = map[string]bool{}
	keep := map[string]bool{}
	for n := range g.byName {
		keep[n] = true
	}
	if until != "" {
		if g.byName[until] == nil {
			return nil, nil, fmt.Errorf("--until %s: no such stage (stages: %s)", until, strings.Join(g.names(), ", "))
		}
		keep = g.Upstream(until)
	}
	if from != "" {
		if g.byName[from] == nil {
			return nil, nil, fmt.Errorf("--from %s: no such stage (stages: %s)", from, strings.Join(g.names(), ", "))
		}
		forced = g.Downstream(from)
		if !keep[from] {
			return nil, nil, fmt.Errorf("--from %s is not upstream of --until %s", from, until)
		}
	}
	for _, st := range g.order {
		if keep[st.Name()] {
			selected = append(selected, st)
		}
	}
	for n := range forced {
		if !keep[n] {
			delete(forced, n)
		}
	}
	return selected, forced, nil
}

func (g *Graph) names() []string {
	var ns []string
	for _, st := range g.order {
		ns = append(ns, st.Name())
	}
	return ns
}

// Missing returns the placeholders among stages, sorted.
func Missing(stages []Stage) []string {
	var out []string
	for _, st := range stages {
		if !Installed(st) {
			out = append(out, st.Name())
		}
	}
	sort.Strings(out)
	return out
}

// errNotInstalled is returned when a run needs a placeholder stage.
var errNotInstalled = errors.New("stages not installed in this build")
