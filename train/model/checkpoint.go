package model

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/dtypes/bfloat16"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/statjob/statjob/storage"
)

// Model is a decoder's config plus its weights as GoMLX context variables
// (float32), named after the checkpoint's tensors (see Forward).
type Model struct {
	Config *Config
	Ctx    *mlctx.Context
}

// Source is where a checkpoint is read from; every storage.Store is one.
type Source interface {
	Get(ctx context.Context, key string) (io.ReadCloser, error)
}

// Sink is where a checkpoint is written to; every storage.Store is one.
type Sink interface {
	Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.Attrs, error)
}

// Every storage.Store can hold checkpoints.
var (
	_ Source = storage.Store(nil)
	_ Sink   = storage.Store(nil)
)

// Checkpoint file names, as Hugging Face writes them.
const (
	ConfigFile      = "config.json"
	WeightsFile     = "model.safetensors"
	WeightsIndex    = "model.safetensors.index.json"
	shardNameFormat = "model-%05d-of-%05d.safetensors"
)

// ErrCheckpoint marks a checkpoint whose tensors do not match its config.
var ErrCheckpoint = errors.New("checkpoint does not match config")

// NewRandom builds a model with weights drawn from N(0, std²) (norm weights
// 1 + N(0, std²)) by a generator seeded with seed: tests and benchmarks.
func NewRandom(cfg *Config, seed uint64, std float64) *Model {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	m := &Model{Config: cfg, Ctx: mlctx.New()}
	for _, h := range TensorNames(cfg) {
		n := numElements(h.Shape)
		data := make([]float32, n)
		base := 0.0
		if strings.HasSuffix(h.Name, "norm.weight") && !cfg.Gemma() {
			base = 1 // Gemma's norms scale by 1 + weight
		}
		for i := range data {
			data[i] = float32(base + std*rng.NormFloat64())
		}
		m.set(h.Name, tensors.FromFlatDataAndDimensions(data, h.Shape...))
	}
	return m
}

func (m *Model) set(name string, t *tensors.Tensor) {
	scope, v := scopeOf(name)
	m.Ctx.InAbsPath(scope).Checked(false).VariableWithValue(v, t)
}

// Load reads config.json and the weights (model.safetensors, or the shards
// listed in model.safetensors.index.json) under prefix in src, as float32.
// Tensors stream in one at a time.
func Load(ctx context.Context, src Source, prefix string) (*Model, error) {
	return LoadAs(ctx, src, prefix, dtypes.Float32)
}

// HeldDType parses the name of the dtype weights are held in, as specs
// spell it: "" or "float32", or "bfloat16" (LoadAs).
func HeldDType(name string) (dtypes.DType, error) {
	switch name {
	case "", "float32":
		return dtypes.Float32, nil
	case "bfloat16":
		return dtypes.BFloat16, nil
	}
	return dtypes.InvalidDType, fmt.Errorf("%q, want float32 or bfloat16", name)
}

// LoadAs is Load with the weights held in dtype: float32, or bfloat16 for a
// model that is only read (generation, scoring, a frozen base under LoRA),
// in half the memory. Every graph of the model computes in float32 as
// before (the matrix products in the compute dtype, UseComputeDType), with
// the weights' values rounded to bfloat16 — none lost from a bfloat16
// checkpoint. Weights held in bfloat16 are not trained.
func LoadAs(ctx context.Context, src Source, prefix string, dtype dtypes.DType) (*Model, error) {
	if dtype != dtypes.Float32 && dtype != dtypes.BFloat16 {
		return nil, fmt.Errorf("model: weights in %s: want float32 or bfloat16", dtype)
	}
	cfg, files, err := readLayout(ctx, src, prefix)
	if err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, Ctx: mlctx.New()}
	chk := newTensorCheck(cfg)
	fused, dims := fusedParts(cfg), map[string][]int{}
	for _, h := range TensorNames(cfg) {
		dims[h.Name] = h.Shape
	}
	for _, f := range files {
		key := path.Join(prefix, f)
		r, err := src.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", key, err)
		}
		err = ReadSafetensors(r, func(t Tensor) error {
			keep, err := chk.add(t.Name, t.Shape, f)
			if !keep {
				return err
			}
			name := cfg.checkpointName(t.Name)
			parts := fused[name]
			if parts == nil {
				m.set(name, asDType(t.Data, t.Shape, dtype))
				return err
			}
			data := t.Data // a fused tensor: its rows go to its parts, in order
			for _, part := range parts {
				n := numElements(dims[part])
				m.set(part, asDType(data[:n], dims[part], dtype))
				data = data[n:]
			}
			return err
		})
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", key, err)
		}
	}
	if err := chk.complete(prefix); err != nil {
		return nil, err
	}
	return m, nil
}

// Inspect checks, without reading any weights, that the checkpoint under
// prefix is one Load accepts: config.json parses to a supported
// architecture, and the safetensors headers hold exactly the tensors and
// shapes that config asks for. It returns the config and the number of
// parameters.
func Inspect(ctx context.Context, src Source, prefix string) (*Config, int64, error) {
	cfg, files, err := readLayout(ctx, src, prefix)
	if err != nil {
		return nil, 0, err
	}
	chk := newTensorCheck(cfg)
	var params int64
	for _, f := range files {
		key := path.Join(prefix, f)
		r, err := src.Get(ctx, key)
		if err != nil {
			return nil, 0, fmt.Errorf("read %s: %w", key, err)
		}
		hs, err := ReadSafetensorsHeader(r)
		r.Close() // the data is not read
		if err != nil {
			return nil, 0, fmt.Errorf("read %s: %w", key, err)
		}
		for _, h := range hs {
			keep, err := chk.add(h.Name, h.Shape, f)
			if err != nil {
				return nil, 0, fmt.Errorf("read %s: %w", key, err)
			}
			if keep {
				params += int64(numElements(h.Shape))
			}
		}
	}
	if err := chk.complete(prefix); err != nil {
		return nil, 0, err
	}
	return cfg, params, nil
}

// readLayout reads config.json under prefix and lists the weight files:
// model.safetensors, or the shards model.safetensors.index.json names.
func readLayout(ctx context.Context, src Source, prefix string) (*Config, []string, error) {
	raw, err := storage.ReadAll(ctx, src, path.Join(prefix, ConfigFile))
	if err != nil {
		return nil, nil, err
	}
	cfg, err := ParseConfig(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path.Join(prefix, ConfigFile), err)
	}
	files := []string{WeightsFile}
	if idx, err := storage.ReadAll(ctx, src, path.Join(prefix, WeightsIndex)); err == nil {
		var index struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(idx, &index); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path.Join(prefix, WeightsIndex), err)
		}
		files = files[:0]
		seen := map[string]bool{}
		for _, f := range index.WeightMap {
			if !seen[f] {
				seen[f] = true
				files = append(files, f)
			}
		}
		sort.Strings(files)
	} else if !errors.Is(err, storage.ErrNotExist) {
		return nil, nil, err
	}
	return cfg, files, nil
}

// tensorCheck matches a checkpoint's tensors, as they come, against the
// ones its config asks for.
type tensorCheck struct {
	cfg    *Config
	want   map[string][]int  // still to come
	loaded map[string]string // tensor → file it came from
}

func newTensorCheck(cfg *Config) *tensorCheck {
	c := &tensorCheck{cfg: cfg, want: map[string][]int{}, loaded: map[string]string{}}
	for _, h := range CheckpointTensors(cfg) {
		c.want[h.Name] = h.Shape
	}
	return c
}

// add takes tensor name of the given shape from file; keep says whether
// the model uses it (rotary inv_freq is recomputed, a tied lm_head is the
// embedding, a Gemma 3 vision tower is not read: Config.checkpointName).
func (c *tensorCheck) add(name string, shape []int, file string) (keep bool, err error) {
	if name = c.cfg.checkpointName(name); name == "" {
		return false, nil
	}
	want, ok := c.want[name]
	switch {
	case c.loaded[name] != "":
		return false, fmt.Errorf("%w: tensor %q is also in %s", ErrCheckpoint, name, c.loaded[name])
	case !ok && (strings.HasSuffix(name, "rotary_emb.inv_freq") || (name == "lm_head.weight" && c.cfg.TieWordEmbeddings)):
		return false, nil
	case !ok:
		return false, fmt.Errorf("%w: unexpected tensor %q", ErrCheckpoint, name)
	case !slices.Equal(want, shape):
		return false, fmt.Errorf("%w: tensor %q has shape %v, config says %v", ErrCheckpoint, name, shape, want)
	}
	delete(c.want, name)
	c.loaded[name] = file
	return true, nil
}

// complete fails when a tensor the config asks for never came.
func (c *tensorCheck) complete(prefix string) error {
	if len(c.want) == 0 {
		return nil
	}
	var missing []string
	for n := range c.want {
		missing = append(missing, n)
	}
	sort.Strings(missing)
	return fmt.Errorf("%s: %w: missing tensors %v", prefix, ErrCheckpoint, missing)
}

// SaveOptions says how Save writes the weights.
type SaveOptions struct {
	// DType of the stored tensors: "BF16", "F16" or "F32" (default "F32").
	DType string
	// ShardBytes splits the weights into shards of at most this many bytes
	// with an index file (0: one model.safetensors).
	ShardBytes int64
	// Files are extra files written alongside (tokenizer.json, …).
	Files map[string][]byte
}

// Save writes config.json, the weights and opts.Files under prefix in the
// layout Hugging Face reads.
func (m *Model) Save(ctx context.Context, dst Sink, prefix string, opts SaveOptions) error {
	dtype := opts.DType
	if dtype == "" {
		dtype = "F32"
	}
	size, err := elemSize(dtype)
	if err != nil {
		return err
	}
	heads := CheckpointTensors(m.Config)
	fused := fusedParts(m.Config)
	var shards [][]TensorHeader
	var cur int64
	for _, h := range heads {
		n := int64(size) * int64(numElements(h.Shape))
		if len(shards) == 0 || (opts.ShardBytes > 0 && cur+n > opts.ShardBytes && cur > 0) {
			shards = append(shards, nil)
			cur = 0
		}
		shards[len(shards)-1] = append(shards[len(shards)-1], h)
		cur += n
	}
	weight := func(name string) ([]float32, error) {
		scope, v := scopeOf(name)
		variable := m.Ctx.GetVariableByScopeAndName(scope, v)
		if variable == nil {
			return nil, fmt.Errorf("no variable %s/%s", scope, v)
		}
		t, err := variable.Value()
		if err != nil {
			return nil, err
		}
		return Float32Data(t)
	}
	get := func(name string) ([]float32, error) {
		if fused[name] == nil {
			return weight(name)
		}
		var all []float32 // a fused tensor: its parts' rows, in order
		for _, part := range fused[name] {
			data, err := weight(part)
			if err != nil {
				return nil, err
			}
			all = append(all, data...)
		}
		return all, nil
	}
	weightMap := map[string]string{}
	for i, shard := range shards {
		name := WeightsFile
		if len(shards) > 1 {
			name = fmt.Sprintf(shardNameFormat, i+1, len(shards))
		}
		for _, h := range shard {
			weightMap[h.Name] = name
		}
		pr, pw := io.Pipe()
		go func() {
			pw.CloseWithError(WriteSafetensors(pw, dtype, shard, map[string]string{"format": "pt"}, get))
		}()
		key := path.Join(prefix, name)
		_, err := dst.Put(ctx, key, pr, storage.PutOptions{})
		pr.CloseWithError(err) // unblocks the writer if Put stopped early
		if err != nil {
			return fmt.Errorf("write %s: %w", key, err)
		}
	}
	files := map[string][]byte{}
	for k, v := range opts.Files {
		files[k] = v
	}
	if len(shards) > 1 {
		var total int64
		for _, h := range heads {
			n := int64(size) * int64(numElements(h.Shape))
			total += n
		}
		idx, err := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}, "", "  ")
		if err != nil {
			return err
		}
		files[WeightsIndex] = idx
	}
	saved := *m.Config
	saved.TorchDType = map[string]string{"F32": "float32", "BF16": "bfloat16", "F16": "float16"}[dtype]
	cfgJSON, err := json.Marshal(&saved)
	if err != nil {
		return err
	}
	files[ConfigFile] = cfgJSON
	names := make([]string, 0, len(files))
	for k := range files {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		key := path.Join(prefix, k)
		if _, err := dst.Put(ctx, key, bytes.NewReader(files[k]), storage.PutOptions{}); err != nil {
			return fmt.Errorf("write %s: %w", key, err)
		}
	}
	return nil
}

// asDType is data [shape] as a tensor of dtype (float32 or bfloat16,
// rounded to nearest even).
func asDType(data []float32, shape []int, dtype dtypes.DType) *tensors.Tensor {
	if dtype != dtypes.BFloat16 {
		return tensors.FromFlatDataAndDimensions(data, shape...)
	}
	b := make([]bfloat16.BFloat16, len(data))
	for i, v := range data {
		b[i] = toBF16(v)
	}
	return tensors.FromFlatDataAndDimensions(b, shape...)
}

// Float32Data is a float32 or bfloat16 tensor's values as float32: a
// weight's values whether it is held in float32 or, after LoadAs, bfloat16.
func Float32Data(t *tensors.Tensor) ([]float32, error) {
	if t.DType() != dtypes.BFloat16 {
		return tensors.CopyFlatData[float32](t)
	}
	b, err := tensors.CopyFlatData[bfloat16.BFloat16](t)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(b))
	for i, v := range b {
		out[i] = v.Float32()
	}
	return out, nil
}
