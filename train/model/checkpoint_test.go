package model

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
)

func TestParseConfig(t *testing.T) {
	c := mustConfig(t, tinyLlama)
	if c.HeadDim != 16 || c.NumKeyValueHeads != 2 || c.QKVBias() || c.RopeScaling.kind() != "llama3" {
		t.Errorf("llama config parsed as %+v", c)
	}
	if got := c.EOSTokenIDs(); len(got) != 2 || got[1] != 2 {
		t.Errorf("eos ids %v", got)
	}
	q := mustConfig(t, tinyQwen2)
	if !q.QKVBias() || !q.TieWordEmbeddings || q.EOSTokenIDs()[0] != 3 {
		t.Errorf("qwen2 config parsed as %+v", q)
	}
	// Llama-3 scaling divides the low frequencies by factor and keeps the high ones.
	plain := *c
	plain.RopeScaling = nil
	scaled, unscaled := c.InvFreq(0), plain.InvFreq(0)
	if scaled[0] != unscaled[0] || math.Abs(float64(scaled[7]*32/unscaled[7])-1) > 1e-6 {
		t.Errorf("llama3 rope scaling: %v vs %v", scaled, unscaled)
	}
	// transformers 5 writes rope_theta and the scaling as rope_parameters.
	v5 := strings.Replace(strings.Replace(tinyLlama, `"rope_theta": 500000.0,`, "", 1),
		`"rope_scaling": {"rope_type": "llama3"`, `"rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3"`, 1)
	if c5, err := ParseConfig([]byte(v5)); err != nil || c5.RopeTheta != 500000 || !slices.Equal(c5.InvFreq(0), scaled) {
		t.Errorf("rope_parameters: %v, %+v", err, c5)
	}
	yarn := strings.Replace(v5, `"rope_type": "llama3"`, `"rope_type": "yarn"`, 1)
	if _, err := ParseConfig([]byte(yarn)); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "rope_type") {
		t.Errorf("rope_parameters of an unsupported rope: %v", err)
	}
	both := strings.Replace(tinyLlama, `"rope_theta": 500000.0,`, `"rope_theta": 500000.0, "rope_parameters": {"rope_type": "default"},`, 1)
	if _, err := ParseConfig([]byte(both)); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "rope_parameters.rope_type") {
		t.Errorf("rope_parameters disagreeing with rope_scaling: %v", err)
	}
	q5 := strings.Replace(tinyQwen2, `"rope_theta": 1000000.0,`, `"rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},`, 1)
	if c5, err := ParseConfig([]byte(q5)); err != nil || c5.RopeTheta != 1e6 || c5.RopeScaling != nil {
		t.Errorf("rope_parameters of a default rope: %v, %+v", err, c5)
	}
	for _, bad := range []struct{ edit, field string }{
		{`"model_type": "gpt2"`, "model_type"},
		{`"rope_theta": 1000.0, "rope_parameters": {"rope_theta": 500000.0}`, "rope_parameters.rope_theta"},
		{`"num_key_value_heads": 3`, "num_key_value_heads"},
		{`"hidden_act": "gelu"`, "hidden_act"},
		{`"rope_scaling": {"rope_type": "yarn", "factor": 4}`, "rope_scaling.rope_type"},
		{`"vocab_size": 0`, "vocab_size"},
	} {
		key := bad.edit[:strings.Index(bad.edit, ":")]
		js := tinyLlama
		start := strings.Index(js, key)
		end := start + strings.IndexAny(js[start:], ",}")
		if key == `"rope_scaling"` {
			end = start + strings.Index(js[start:], "}") + 1
		}
		_, err := ParseConfig([]byte(js[:start] + bad.edit + js[end:]))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), bad.field) {
			t.Errorf("%s: error %v does not name %s", bad.edit, err, bad.field)
		}
	}
}

// TestSaveLoad round-trips a checkpoint in each dtype, sharded and not, and
// checks config.json keeps fields the model does not use.
func TestSaveLoad(t *testing.T) {
	ctx := context.Background()
	cfg := mustConfig(t, tinyQwen2)
	cfg.Raw["architectures"] = []any{"Qwen2ForCausalLM"}
	orig := NewRandom(cfg, 1, 0.5)
	for _, tc := range []struct {
		dtype  string
		shard  int64
		relTol float64
	}{{"F32", 0, 0}, {"BF16", 20000, 1.0 / 128}, {"F16", 0, 1.0 / 1024}} {
		dir := t.TempDir()
		err := orig.Save(ctx, openDir(t, dir), "ckpt", SaveOptions{DType: tc.dtype, ShardBytes: tc.shard,
			Files: map[string][]byte{"tokenizer.json": []byte("{}")}})
		if err != nil {
			t.Fatal(err)
		}
		shards, _ := filepath.Glob(filepath.Join(dir, "ckpt", "*.safetensors"))
		if tc.shard > 0 && len(shards) < 2 {
			t.Errorf("%s: ShardBytes %d wrote %d shard(s)", tc.dtype, tc.shard, len(shards))
		}
		if _, err := os.Stat(filepath.Join(dir, "ckpt", "tokenizer.json")); err != nil {
			t.Errorf("%s: extra file not written: %v", tc.dtype, err)
		}
		back, err := Load(ctx, trickle(openDir(t, dir)), "ckpt")
		if err != nil {
			t.Fatalf("%s: %v", tc.dtype, err)
		}
		if want := map[string]string{"F32": "float32", "BF16": "bfloat16", "F16": "float16"}[tc.dtype]; back.Config.TorchDType != want {
			t.Errorf("%s: torch_dtype %q, want %q", tc.dtype, back.Config.TorchDType, want)
		}
		if back.Config.Raw["architectures"] == nil {
			t.Errorf("%s: config.json lost its architectures field", tc.dtype)
		}
		for _, h := range TensorNames(cfg) {
			scope, name := scopeOf(h.Name)
			a := tensors.MustCopyFlatData[float32](orig.Ctx.GetVariableByScopeAndName(scope, name).MustValue())
			b := tensors.MustCopyFlatData[float32](back.Ctx.GetVariableByScopeAndName(scope, name).MustValue())
			for i := range a {
				if math.Abs(float64(a[i]-b[i])) > tc.relTol*math.Abs(float64(a[i]))+1e-7 {
					t.Fatalf("%s: %s[%d] = %g after the round trip, was %g", tc.dtype, h.Name, i, b[i], a[i])
				}
			}
		}
	}
}

func TestLoadErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := mustConfig(t, tinyQwen2)
	if err := NewRandom(cfg, 1, 0.1).Save(ctx, openDir(t, dir), "", SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	// A config that disagrees with the weights.
	bigger := strings.Replace(tinyQwen2, `"hidden_size": 48`, `"hidden_size": 96`, 1)
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(bigger), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(ctx, openDir(t, dir), "")
	if !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "model.embed_tokens.weight") {
		t.Errorf("mismatched shapes: %v", err)
	}
	// A truncated weights file.
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(tinyQwen2), 0o644); err != nil {
		t.Fatal(err)
	}
	w := filepath.Join(dir, WeightsFile)
	data, _ := os.ReadFile(w)
	if err := os.WriteFile(w, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	// From a file (size known) and from a stream: both name the file and a tensor.
	tensorName := regexp.MustCompile(`"model\.[a-z0-9_.]+weight"`)
	for _, src := range []Source{openDir(t, dir), trickle(openDir(t, dir))} {
		_, err := Load(ctx, src, "")
		if !errors.Is(err, ErrSafetensors) || !strings.Contains(err.Error(), WeightsFile) || !tensorName.MatchString(err.Error()) {
			t.Errorf("truncated file (%T): %v", src, err)
		}
	}
	// An invalid config: the error names the file once, and the field.
	bad := strings.Replace(tinyQwen2, `"vocab_size": 80`, `"vocab_size": 0`, 1)
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(ctx, openDir(t, dir), "")
	if !errors.Is(err, ErrConfig) || strings.Count(err.Error(), ConfigFile) != 1 || !strings.Contains(err.Error(), "vocab_size") {
		t.Errorf("invalid config: %v", err)
	}
}

// readerSource hands out src's readers through wrap.
type readerSource struct {
	Source
	wrap func(io.Reader) io.Reader
}

func (s readerSource) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	r, err := s.Source.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{s.wrap(r), r}, nil
}

// trickle hands out readers that return one byte per Read, as a slow
// network stream might: loading must not depend on full reads or seeking.
func trickle(src Source) Source { return readerSource{src, iotest.OneByteReader} }

// TestLoadDuplicateTensor: a tensor stored in two shards is an error naming
// both, not a silent overwrite or an "unexpected tensor".
func TestLoadDuplicateTensor(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := NewRandom(mustConfig(t, tinyQwen2), 1, 0.1).Save(ctx, openDir(t, dir), "", SaveOptions{ShardBytes: 20000}); err != nil {
		t.Fatal(err)
	}
	shards, _ := filepath.Glob(filepath.Join(dir, "model-00001-of-*.safetensors"))
	if len(shards) != 1 {
		t.Fatalf("first shard: %v", shards)
	}
	data, err := os.ReadFile(shards[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model-extra.safetensors"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	idxPath := filepath.Join(dir, WeightsIndex)
	idx, err := os.ReadFile(idxPath)
	if err != nil {
		t.Fatal(err)
	}
	idx = []byte(strings.Replace(string(idx), `"weight_map": {`, `"weight_map": {"extra": "model-extra.safetensors",`, 1))
	if err := os.WriteFile(idxPath, idx, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(ctx, openDir(t, dir), "")
	if !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "is also in "+filepath.Base(shards[0])) {
		t.Errorf("duplicate tensor: %v", err)
	}
}

// TestInspect: Inspect accepts what Load accepts and refuses what Load
// refuses, reading the safetensors headers only.
func TestInspect(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := mustConfig(t, tinyQwen2)
	if err := NewRandom(cfg, 1, 0.1).Save(ctx, openDir(t, dir), "", SaveOptions{DType: "BF16", ShardBytes: 20000}); err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, h := range TensorNames(cfg) {
		want += int64(numElements(h.Shape))
	}
	var read int64
	src := readerSource{openDir(t, dir), func(r io.Reader) io.Reader { return readCounter{r, &read} }}
	got, params, err := Inspect(ctx, src, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.HiddenSize != cfg.HiddenSize || params != want {
		t.Errorf("Inspect: hidden %d, %d parameters; want %d, %d", got.HiddenSize, params, cfg.HiddenSize, want)
	}
	// It reads each file's header and at most one 4 KiB buffer beyond it.
	var budget, size int64
	shards, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	for _, f := range shards {
		data, _ := os.ReadFile(f)
		budget += 8 + int64(binary.LittleEndian.Uint64(data)) + 4<<10
		size += int64(len(data))
	}
	if len(shards) < 2 || read > budget {
		t.Errorf("Inspect read %d of the %d shards' %d bytes, more than their headers (%d)", read, len(shards), size, budget)
	}

	// A config that disagrees with the weights.
	bigger := strings.Replace(tinyQwen2, `"hidden_size": 48`, `"hidden_size": 96`, 1)
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(bigger), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Inspect(ctx, openDir(t, dir), ""); !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "has shape") {
		t.Errorf("mismatched shapes: %v", err)
	}
	// A shard missing from the index: its tensors are missing.
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(tinyQwen2), 0o644); err != nil {
		t.Fatal(err)
	}
	idxPath := filepath.Join(dir, WeightsIndex)
	idx, _ := os.ReadFile(idxPath)
	var index map[string]any
	if err := json.Unmarshal(idx, &index); err != nil {
		t.Fatal(err)
	}
	last := filepath.Base(shards[len(shards)-1])
	for k, f := range index["weight_map"].(map[string]any) {
		if f == last {
			delete(index["weight_map"].(map[string]any), k)
		}
	}
	idx, _ = json.Marshal(index)
	if err := os.WriteFile(idxPath, idx, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Inspect(ctx, openDir(t, dir), ""); !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "missing tensors") {
		t.Errorf("a shard left out of the index: %v", err)
	}
}

type readCounter struct {
	r io.Reader
	n *int64
}

func (c readCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}

// TestLoadAsBFloat16: a bfloat16 checkpoint held in bfloat16 gives exactly
// the logits and the sampled tokens of the same checkpoint held in float32,
// with half the bytes; and saves back unchanged.
func TestLoadAsBFloat16(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := mustConfig(t, tinyQwen2)
	if err := NewRandom(cfg, 3, 0.3).Save(ctx, openDir(t, dir), "", SaveOptions{DType: "BF16"}); err != nil {
		t.Fatal(err)
	}
	f32, err := Load(ctx, openDir(t, dir), "")
	if err != nil {
		t.Fatal(err)
	}
	bf16, err := LoadAs(ctx, openDir(t, dir), "", dtypes.BFloat16)
	if err != nil {
		t.Fatal(err)
	}
	var bytes32, bytes16 int
	for _, m := range []struct {
		m *Model
		n *int
	}{{f32, &bytes32}, {bf16, &bytes16}} {
		m.m.Ctx.EnumerateVariables(func(v *mlctx.Variable) { *m.n += int(v.Shape().Memory()) })
	}
	if bytes16*2 != bytes32 {
		t.Errorf("weights take %d bytes in bfloat16, %d in float32: want half", bytes16, bytes32)
	}

	b := testBackend(t)
	seqs := [][]int{{1, 2, 3, 4, 5}, {7, 8}}
	want, err := Logits(b, f32, seqs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Logits(b, bf16, seqs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		for j := range want[i] {
			if !slices.Equal(got[i][j], want[i][j]) {
				t.Fatalf("sequence %d position %d: logits differ with the weights in bfloat16", i, j)
			}
		}
	}
	s := Sampling{Temperature: 1, MaxNewTokens: 12}
	reqs := []Request{{Prompt: []int{4, 5, 6}, Seed: 42}, {Prompt: []int{9}, Seed: 7}}
	var outs [2][]Result
	for i, m := range []*Model{f32, bf16} {
		gen, err := NewGenerator(b, m)
		if err != nil {
			t.Fatal(err)
		}
		if outs[i], err = gen.Generate(reqs, s); err != nil {
			t.Fatal(err)
		}
	}
	for i := range reqs {
		if !slices.Equal(outs[0][i].Tokens, outs[1][i].Tokens) {
			t.Errorf("request %d: sampled %v in float32, %v in bfloat16", i, outs[0][i].Tokens, outs[1][i].Tokens)
		}
	}

	// Saved again (as float32), the values are the checkpoint's.
	back := t.TempDir()
	if err := bf16.Save(ctx, openDir(t, back), "", SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	again, err := Load(ctx, openDir(t, back), "")
	if err != nil {
		t.Fatal(err)
	}
	sameWeights(t, again, f32, "in the bfloat16 round trip")
	if _, err := LoadAs(ctx, openDir(t, dir), "", dtypes.Float16); err == nil {
		t.Error("LoadAs float16: no error")
	}
}
