package sft

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/train/model"
)

// Checkpoint layout under a run's prefix:
//
//	checkpoints/step-000000120/state.safetensors  trained weights (or adapters) and AdamW moments, f32
//	checkpoints/step-000000120/MANIFEST.json      step, data position, RNG state, hashes; written last:
//	                                              a checkpoint without it does not exist
const (
	checkpointDir  = "checkpoints/"
	stateFile      = "state.safetensors"
	manifestFile   = "MANIFEST.json"
	checkpointName = "step-%09d"
)

// Manifest describes one complete checkpoint.
type Manifest struct {
	Step        int       `json:"step"`        // optimizer steps done
	TotalSteps  int       `json:"total_steps"` // of the whole run
	Epoch       int       `json:"epoch"`       // epoch of the next step
	Batch       int       `json:"batch"`       // index in that epoch's micro-batches of the next step's first
	LR          float64   `json:"lr"`          // learning rate of the last step taken
	Seed        int64     `json:"seed"`        // data order and RNG seed
	DataHash    string    `json:"data_hash"`   // of the tokenized training set
	Recipe      string    `json:"recipe"`      // hash of the settings that fix the step sequence
	TokensSeen  int64     `json:"tokens_seen"`
	State       string    `json:"state"` // key of the tensors, relative to the checkpoint
	StateBytes  int64     `json:"state_bytes"`
	StateSHA256 string    `json:"state_sha256"`
	RNG         string    `json:"rng,omitempty"` // hex of the context's random-number state
	Created     time.Time `json:"created"`
	// Extra is the state of a training loop built on the Trainer (e.g.
	// GRPO's step), stored with the checkpoint it belongs to.
	Extra json.RawMessage `json:"extra,omitempty"`
}

// ErrIncompatible: a checkpoint was written by a run with other settings or
// data, so resuming from it would not continue the same run.
var ErrIncompatible = errors.New("checkpoint belongs to a different run")

// stateTensors lists the float32 tensors a checkpoint holds: name →
// variable (trained weights or adapters, and their AdamW moments).
func (t *Trainer) stateTensors() map[string]*mlctx.Variable {
	m := map[string]*mlctx.Variable{}
	for i, v := range t.params {
		name := v.ScopeAndName()
		m["param:"+name], m["m1:"+name], m["m2:"+name] = v, t.m1[i], t.m2[i]
	}
	return m
}

// rngVar is the context's random-number state (dropout draws).
func (t *Trainer) rngVar() *mlctx.Variable {
	return t.ctx.GetVariableByScopeAndName(mlctx.RootScope, mlctx.RNGStateVariableName)
}

// saveCheckpoint streams the state tensors (one in memory at a time) as
// safetensors, then writes the manifest with the RNG state.
func (t *Trainer) saveCheckpoint(ctx context.Context, store storage.Store, prefix string, man Manifest) (string, error) {
	dir := prefix + checkpointDir + fmt.Sprintf(checkpointName, man.Step) + "/"
	state := t.stateTensors()
	heads := make([]model.TensorHeader, 0, len(state))
	for name, v := range state {
		heads = append(heads, model.TensorHeader{Name: name, Shape: v.Shape().Dimensions})
	}
	sort.Slice(heads, func(i, j int) bool { return heads[i].Name < heads[j].Name })
	get := func(name string) ([]float32, error) {
		val, err := state[name].Value()
		if err != nil {
			return nil, err
		}
		return tensors.CopyFlatData[float32](val)
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(model.WriteSafetensors(pw, "F32", heads, map[string]string{"format": "statjob-sft"}, get))
	}()
	attrs, err := store.Put(ctx, dir+stateFile, pr, storage.PutOptions{ContentType: "application/octet-stream"})
	pr.CloseWithError(err) // unblocks the writer if Put stopped early
	if err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", store.URI(dir), err)
	}
	man.State, man.StateBytes, man.StateSHA256 = stateFile, attrs.Size, attrs.SHA256
	if rng := t.rngVar(); rng != nil && rng.HasValue() {
		if err := rng.MustValue().ConstBytes(func(b []byte) { man.RNG = hex.EncodeToString(b) }); err != nil {
			return "", fmt.Errorf("checkpoint %s: RNG state: %w", store.URI(dir), err)
		}
	}
	js, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return "", err
	}
	if _, err := store.Put(ctx, dir+manifestFile, bytes.NewReader(js), storage.PutOptions{ContentType: "application/json"}); err != nil {
		return "", fmt.Errorf("checkpoint %s: manifest: %w", store.URI(dir), err)
	}
	return dir, nil
}

// checkpointRef is a checkpoint found in storage.
type checkpointRef struct {
	dir      string // key prefix ending in "/"
	step     int
	complete bool
}

// listCheckpoints returns the checkpoints under prefix, oldest first.
func listCheckpoints(ctx context.Context, store storage.Store, prefix string) ([]checkpointRef, error) {
	byDir := map[string]*checkpointRef{}
	err := store.List(ctx, prefix+checkpointDir, func(a storage.Attrs) error {
		rest := strings.TrimPrefix(a.Key, prefix+checkpointDir)
		name, file, ok := strings.Cut(rest, "/")
		var step int
		if !ok || strings.Contains(file, "/") {
			return nil
		}
		if _, err := fmt.Sscanf(name, checkpointName, &step); err != nil {
			return nil
		}
		dir := prefix + checkpointDir + name + "/"
		r := byDir[dir]
		if r == nil {
			r = &checkpointRef{dir: dir, step: step}
			byDir[dir] = r
		}
		if file == manifestFile {
			r.complete = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list checkpoints under %s: %w", store.URI(prefix+checkpointDir), err)
	}
	out := make([]checkpointRef, 0, len(byDir))
	for _, r := range byDir {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].step < out[j].step })
	return out, nil
}

// readManifest reads dir's manifest.
func readManifest(ctx context.Context, store storage.Store, dir string) (Manifest, error) {
	var man Manifest
	rc, err := store.Get(ctx, dir+manifestFile)
	if err != nil {
		return man, err
	}
	defer rc.Close()
	if err := json.NewDecoder(rc).Decode(&man); err != nil {
		return man, fmt.Errorf("read %s: %w", store.URI(dir+manifestFile), err)
	}
	return man, nil
}

// loadCheckpoint restores the state of dir, streaming the tensors (memory
// bounded by the largest) and checking the file's sha256 against the
// manifest. On error the trainer's state is undefined: do not train on.
func (t *Trainer) loadCheckpoint(ctx context.Context, store storage.Store, dir string, man Manifest) error {
	uri := store.URI(dir + man.State)
	rc, err := store.Get(ctx, dir+man.State)
	if err != nil {
		return fmt.Errorf("load checkpoint: %w", err)
	}
	defer rc.Close()
	want := t.stateTensors()
	seen := 0
	h := sha256.New()
	err = model.ReadSafetensors(io.TeeReader(rc, h), func(tt model.Tensor) error {
		v, ok := want[tt.Name]
		if !ok {
			return fmt.Errorf("%w: %s has tensor %q, which this run does not train", ErrIncompatible, uri, tt.Name)
		}
		if !slices.Equal(tt.Shape, v.Shape().Dimensions) {
			return fmt.Errorf("%w: %s: tensor %q is %v, want %s", ErrIncompatible, uri, tt.Name, tt.Shape, v.Shape())
		}
		seen++
		return v.SetValue(tensors.FromFlatDataAndDimensions(tt.Data, tt.Shape...))
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", uri, err)
	}
	if _, err := io.Copy(h, rc); err != nil { // any trailing bytes count in the hash
		return fmt.Errorf("read %s: %w", uri, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != man.StateSHA256 {
		return fmt.Errorf("read %s: sha256 does not match the manifest", uri)
	}
	if seen != len(want) {
		return fmt.Errorf("%w: %s holds %d tensors, this run trains %d", ErrIncompatible, uri, seen, len(want))
	}
	if man.RNG != "" {
		rng := t.rngVar()
		b, err := hex.DecodeString(man.RNG)
		if err != nil || rng == nil {
			return fmt.Errorf("%w: %s: RNG state %q", ErrIncompatible, store.URI(dir+manifestFile), man.RNG)
		}
		st := tensors.FromShape(rng.Shape())
		if st.Memory() != uintptr(len(b)) {
			return fmt.Errorf("%w: %s: RNG state of %d bytes", ErrIncompatible, store.URI(dir+manifestFile), len(b))
		}
		st.MutableBytes(func(dst []byte) { copy(dst, b) })
		if err := rng.SetValue(st); err != nil {
			return fmt.Errorf("restore RNG state: %w", err)
		}
	}
	return nil
}

// pruneCheckpoints keeps the newest keep complete checkpoints and removes
// older ones and incomplete leftovers older than the newest complete one,
// never touching protect (the checkpoint this process resumed from).
func pruneCheckpoints(ctx context.Context, store storage.Store, prefix string, keep int, protect string) error {
	refs, err := listCheckpoints(ctx, store, prefix)
	if err != nil {
		return err
	}
	newest, kept := -1, 0
	var doomed []checkpointRef
	for i := len(refs) - 1; i >= 0; i-- {
		r := refs[i]
		switch {
		case r.complete && kept < keep:
			kept++
			newest = max(newest, r.step)
		case r.dir == protect:
		case r.complete || r.step < newest:
			doomed = append(doomed, r)
		}
	}
	for _, r := range doomed {
		// Manifest first: a half-deleted checkpoint is an incomplete one.
		for _, f := range []string{manifestFile, stateFile} {
			if err := store.Delete(ctx, r.dir+f); err != nil {
				return fmt.Errorf("prune checkpoint %s: %w", store.URI(r.dir), err)
			}
		}
	}
	return nil
}

// SaveCheckpoint writes the trained tensors, their AdamW moments and the
// RNG state under prefix as checkpoints/step-<man.Step>/, manifest last,
// and returns the checkpoint's key prefix. For training loops other than
// Run (which checkpoints by itself).
func (t *Trainer) SaveCheckpoint(ctx context.Context, store storage.Store, prefix string, man Manifest) (string, error) {
	return t.saveCheckpoint(ctx, store, prefix, man)
}

// LoadLatest restores the newest complete checkpoint under prefix once
// accept (which may be nil) approves its manifest, and sets the steps done
// to its Step. It returns the manifest and the checkpoint's key prefix, or
// an empty dir when there is none. Call Prepare first.
func (t *Trainer) LoadLatest(ctx context.Context, store storage.Store, prefix string, accept func(Manifest) error) (Manifest, string, error) {
	refs, err := listCheckpoints(ctx, store, prefix)
	if err != nil {
		return Manifest{}, "", err
	}
	for i := len(refs) - 1; i >= 0; i-- {
		if !refs[i].complete {
			continue
		}
		man, err := readManifest(ctx, store, refs[i].dir)
		if err != nil {
			return man, "", err
		}
		if accept != nil {
			if err := accept(man); err != nil {
				return man, "", fmt.Errorf("%s: %w", store.URI(refs[i].dir), err)
			}
		}
		if err := t.loadCheckpoint(ctx, store, refs[i].dir, man); err != nil {
			return man, "", err
		}
		t.step = man.Step
		return man, refs[i].dir, nil
	}
	return Manifest{}, "", nil
}

// PruneCheckpoints keeps the newest keep complete checkpoints under prefix
// and never removes protect (the one a run resumed from).
func PruneCheckpoints(ctx context.Context, store storage.Store, prefix string, keep int, protect string) error {
	return pruneCheckpoints(ctx, store, prefix, keep, protect)
}
