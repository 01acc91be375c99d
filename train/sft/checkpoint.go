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
	"sort"
	"strings"
	"time"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/nlpodyssey/safetensors"

	"github.com/statjob/statjob/storage"
)

// Checkpoint layout under a run's prefix:
//
//	checkpoints/step-000000120/state.safetensors  trained weights (or adapters), AdamW moments, RNG state
//	checkpoints/step-000000120/MANIFEST.json      written last: a checkpoint without it does not exist
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
	Created     time.Time `json:"created"`
}

// ErrIncompatible: a checkpoint was written by a run with other settings or
// data, so resuming from it would not continue the same run.
var ErrIncompatible = errors.New("checkpoint belongs to a different run")

// stateTensors lists what a checkpoint holds: name → variable.
func (t *Trainer) stateTensors() map[string]*mlctx.Variable {
	m := map[string]*mlctx.Variable{}
	for i, v := range t.params {
		name := v.ScopeAndName()
		m["param:"+name], m["m1:"+name], m["m2:"+name] = v, t.m1[i], t.m2[i]
	}
	if rng := t.ctx.GetVariableByScopeAndName(mlctx.RootScope, mlctx.RNGStateVariableName); rng != nil && rng.HasValue() {
		m["rng"] = rng
	}
	return m
}

var stDTypes = map[dtypes.DType]safetensors.DType{
	dtypes.Float32: safetensors.F32, dtypes.BFloat16: safetensors.BF16, dtypes.Float16: safetensors.F16,
	dtypes.Float64: safetensors.F64, dtypes.Int32: safetensors.I32, dtypes.Int64: safetensors.I64,
	dtypes.Uint64: safetensors.U64, dtypes.Uint32: safetensors.U32,
}

// tensorView copies a tensor's bytes into a safetensors view.
func tensorView(name string, tt *tensors.Tensor) (safetensors.TensorView, error) {
	st, ok := stDTypes[tt.DType()]
	if !ok {
		return safetensors.TensorView{}, fmt.Errorf("tensor %s: dtype %s not storable", name, tt.DType())
	}
	var data []byte
	if err := tt.ConstBytes(func(b []byte) { data = bytes.Clone(b) }); err != nil {
		return safetensors.TensorView{}, fmt.Errorf("tensor %s: %w", name, err)
	}
	dims := make([]uint64, tt.Rank())
	for i, d := range tt.Shape().Dimensions {
		dims[i] = uint64(d)
	}
	return safetensors.NewTensorView(st, dims, data)
}

// saveCheckpoint writes the state tensors, then the manifest.
func (t *Trainer) saveCheckpoint(ctx context.Context, store storage.Store, prefix string, man Manifest) (string, error) {
	dir := prefix + checkpointDir + fmt.Sprintf(checkpointName, man.Step) + "/"
	views := map[string]safetensors.TensorView{}
	for name, v := range t.stateTensors() {
		val, err := v.Value()
		if err != nil {
			return "", fmt.Errorf("checkpoint %s: read %s: %w", dir, name, err)
		}
		if views[name], err = tensorView(name, val); err != nil {
			return "", fmt.Errorf("checkpoint %s: %w", dir, err)
		}
	}
	var buf bytes.Buffer
	if err := safetensors.SerializeToWriter(views, map[string]string{"format": "statjob-sft"}, &buf); err != nil {
		return "", fmt.Errorf("checkpoint %s: encode: %w", dir, err)
	}
	attrs, err := store.Put(ctx, dir+stateFile, &buf, storage.PutOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	man.State, man.StateBytes, man.StateSHA256 = stateFile, attrs.Size, attrs.SHA256
	js, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return "", err
	}
	if _, err := store.Put(ctx, dir+manifestFile, bytes.NewReader(js), storage.PutOptions{ContentType: "application/json"}); err != nil {
		return "", fmt.Errorf("checkpoint %s: manifest: %w", dir, err)
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

// loadCheckpoint restores the state tensors of dir, checking their hash.
func (t *Trainer) loadCheckpoint(ctx context.Context, store storage.Store, dir string, man Manifest) error {
	uri := store.URI(dir + man.State)
	rc, err := store.Get(ctx, dir+man.State)
	if err != nil {
		return fmt.Errorf("load checkpoint: %w", err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", uri, err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != man.StateSHA256 {
		return fmt.Errorf("read %s: sha256 does not match the manifest", uri)
	}
	st, err := safetensors.Deserialize(data)
	if err != nil {
		return fmt.Errorf("read %s: %w", uri, err)
	}
	want := t.stateTensors()
	if st.Len() != len(want) {
		return fmt.Errorf("%w: %s holds %d tensors, this run trains %d", ErrIncompatible, uri, st.Len(), len(want))
	}
	for name, v := range want {
		view, ok := st.Tensor(name)
		if !ok {
			return fmt.Errorf("%w: %s has no tensor %q", ErrIncompatible, uri, name)
		}
		shape := v.Shape()
		dims := view.Shape()
		if len(dims) != shape.Rank() || stDTypes[shape.DType] != view.DType() {
			return fmt.Errorf("%w: %s: tensor %q is %s%v, want %s", ErrIncompatible, uri, name, view.DType(), dims, shape)
		}
		for i, d := range dims {
			if int(d) != shape.Dimensions[i] {
				return fmt.Errorf("%w: %s: tensor %q is %v, want %s", ErrIncompatible, uri, name, dims, shape)
			}
		}
		tt := tensors.FromShape(shape)
		tt.MutableBytes(func(b []byte) { copy(b, view.Data()) })
		if err := v.SetValue(tt); err != nil {
			return fmt.Errorf("restore %q from %s: %w", name, uri, err)
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
