package stages

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gomlx/gomlx/pkg/core/dtypes"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/grpo"
	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/sft"
	"github.com/statjob/statjob/train/tokenizer"
)

// A Check is the outcome of one preflight check: Detail says what was
// found, Err what is wrong.
type Check struct {
	Name   string
	Detail string
	Err    error
}

// Preflight checks what a run of spec will use before the run spends
// anything: the compute backend, the base student, the data files, the PRM and the local
// embedding model when the spec uses them, and, when callAPIs is set, the
// teacher and the embeddings API with one small request each (the response
// cache and batch mode bypassed). It reads no weights.
func Preflight(ctx context.Context, spec *job.Spec, callAPIs bool) []Check {
	var out []Check
	add := func(name, detail string, err error) { out = append(out, Check{name, detail, err}) }

	student := spec.Section("student").(*StudentConfig)
	if be, err := backend.New(student.Backend); err != nil {
		add("backend", "", prefixErr("student.backend", err))
	} else {
		add("backend", be.Name()+": "+be.Description(), nil)
		be.Finalize()
	}
	full := spec.Section("sft").(*sft.Config).LoRA.Rank == 0 ||
		len(spec.Section("pipeline").(*PipelineConfig).GRPO) > 0 && spec.Section("grpo").(*grpo.Config).LoRA.Rank == 0
	d, mc, err := checkStudent(ctx, student, full)
	add("student", d, err)
	if mc != nil {
		add("generation", generationMemory(mc, map[string]*GenerationConfig{
			"probe":    &spec.Section("probe").(*ProbeConfig).GenerationConfig,
			"evaluate": &spec.Section("evaluate").(*EvaluateConfig).GenerationConfig,
		}), nil)
	}
	lines, err := CheckData(spec)
	for _, l := range lines {
		add("data", l, nil)
	}
	if err != nil {
		add("data", "", err)
	}
	if diff := spec.Section("difficulty").(*DifficultyConfig); diff.Method == ByPRM {
		d, _, _, _, err := inspectModel(ctx, diff.PRM.Model)
		add("prm", d, prefixErr("difficulty.prm.model", err))
	}
	if slices.Contains(spec.Section("pipeline").(*PipelineConfig).Strategies, "embed-sel") {
		c := spec.Section("dataset").(*DatasetConfig).Embed
		switch {
		case c.Provider == EmbedLocal && c.Model != "":
			d, _, _, _, err := inspectModel(ctx, c.Model)
			add("embedder", d, prefixErr("dataset.embed.model", err))
		case c.Provider == EmbedLocal:
			add("embedder", "local: the student's hidden states", nil)
		case callAPIs:
			d, err := checkEmbedder(ctx, c.EmbedConfig)
			add("embedder", d, err)
		default:
			d, err := checkKey("dataset.embed", c.Provider, c.Model, c.KeyEnv())
			add("embedder", d, err)
		}
	}
	tc := spec.Section("teacher").(*teacher.Config)
	if callAPIs {
		d, err := checkTeacher(ctx, *tc)
		add("teacher", d, err)
	} else {
		d, err := checkKey("teacher", tc.Provider, tc.Model, tc.KeyEnv())
		add("teacher", d, err)
	}
	return out
}

// checkKey is what can be checked of an API without calling it: that the
// variable its key is read from is set (section names the spec section).
// Vertex AI signs in with Application Default Credentials instead.
func checkKey(section, provider, model, env string) (string, error) {
	id := provider + " " + model
	switch {
	case provider == teacher.ProviderVertex:
		return id + ": Application Default Credentials; not called (--offline)", nil
	case env == "":
		return id + ": no key needed; not called (--offline)", nil
	case os.Getenv(env) == "":
		return "", fmt.Errorf("%s.api_key_env: %s %s: $%s is empty or unset", section, provider, model, env)
	}
	return fmt.Sprintf("%s: key in $%s; not called (--offline)", id, env), nil
}

// prefixErr names the spec field err is about, or is nil.
func prefixErr(field string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", field, err)
}

// checkStudent checks, without loading the weights, that the base student
// of cfg is one the stages can use: its tokenizer files load, its chat
// template renders a conversation with the spec's system prompt and marks
// the assistant's tokens (SFT's loss mask), and its checkpoint holds what
// its config asks for (inspectModel). It returns a one-line summary, with
// what the weights take (fullTraining: in float32 too, as trained), and
// its config.
func checkStudent(ctx context.Context, cfg *StudentConfig, fullTraining bool) (string, *model.Config, error) {
	summary, tok, params, mc, err := inspectModel(ctx, cfg.Model)
	if err != nil {
		return "", nil, prefixErr("student.model", err)
	}
	summary += "; " + studentMemory(params, cfg, fullTraining)
	chat, err := tok.ApplyChatTemplate(cfg.withSystem([]tokenizer.Message{
		{Role: "user", Content: "What is 2 + 3?"},
		{Role: "assistant", Content: `2 + 3 = 5, so the answer is \boxed{5}.`},
	}), cfg.ChatOptions())
	if err != nil {
		return "", nil, fmt.Errorf("student %s: chat template: %w", cfg.Model, err)
	}
	if len(chat.Assistant) != 1 || chat.Assistant[0].End <= chat.Assistant[0].Start {
		return "", nil, fmt.Errorf("student %s: chat template: the assistant's reply is not marked in %q", cfg.Model, chat.Text)
	}
	return summary + "; chat template renders", mc, nil
}

// generationMemory says what the KV cache of each generating stage takes
// on the accelerator: batch × each layer's cache length × keys and values,
// in the stage's precision. A cache is as long as prompt + max_new_tokens
// rounded up to a power of two (a layer with a shorter sliding window keeps
// a ring of that window: model.Config.CacheLen); the figure is for prompts
// that leave it at the smallest such length. While a decode step runs, the
// step's input and output caches are both held.
func generationMemory(mc *model.Config, stages map[string]*GenerationConfig) string {
	var parts []string
	last := ""
	for _, name := range []string{"probe", "evaluate"} {
		g := stages[name]
		l := model.Bucket(g.Sampling.MaxNewTokens+1, 16) // the sampler's cache length for the shortest prompts
		dt, _ := sft.ComputeDType(g.Precision)
		batch := model.Bucket(g.Batch, 1) // the sampler rounds the batch up to a power of two
		var slots int64
		for i := range mc.NumHiddenLayers {
			slots += int64(mc.CacheLen(i, l))
		}
		perSeq := slots * 2 * int64(mc.NumKeyValueHeads) * int64(mc.HeadDim) * int64(dt.Size())
		this := fmt.Sprintf("KV cache %s (batch %d × %d tokens, %s; more for prompts over %d tokens)",
			byteSize(float64(perSeq*int64(batch))), batch, l, map[bool]string{true: "float32", false: "bfloat16"}[dt == dtypes.Float32],
			l-g.Sampling.MaxNewTokens)
		if this == last {
			this = "the same"
		}
		parts, last = append(parts, name+": "+this), this
	}
	return strings.Join(parts, ", ") + "; twice that while a decode step runs"
}

// byteSize writes b bytes in B, KiB, MiB or GiB, three digits.
func byteSize(b float64) string {
	for _, u := range []string{"B", "KiB", "MiB", "GiB"} {
		if b < 1024 || u == "GiB" {
			return fmt.Sprintf("%.3g %s", b, u)
		}
		b /= 1024
	}
	return ""
}

// studentMemory says what the student's weights take as the spec holds
// them: answering (and a LoRA base) in student.dtype, trained weights in
// float32.
func studentMemory(params int64, student *StudentConfig, fullTraining bool) string {
	size := func(dtype string, bytesEach int64) string {
		return byteSize(float64(params*bytesEach)) + " in " + dtype
	}
	held := "float32"
	if student.heldDType() != dtypes.Float32 {
		held = student.DType
	}
	out := "weights " + size(held, int64(student.heldDType().Size()))
	if fullTraining && held != "float32" {
		out += " when answering, " + size("float32", 4) + " when trained (full fine-tuning)"
	}
	return out
}

// inspectModel checks the Hugging Face model directory at uri without
// reading its weights: the tokenizer loads, config.json is a supported
// architecture whose safetensors headers hold exactly the tensors it asks
// for (model.Inspect), and the embedding covers every token id.
func inspectModel(ctx context.Context, uri string) (string, *tokenizer.Tokenizer, int64, *model.Config, error) {
	st, err := storage.Open(ctx, uri)
	if err != nil {
		return "", nil, 0, nil, err
	}
	defer st.Close()
	where := st.URI("")
	tok, _, err := loadTokenizer(ctx, st, "", where)
	if err != nil {
		return "", nil, 0, nil, err
	}
	mc, params, err := model.Inspect(ctx, st, "")
	if err != nil {
		return "", nil, 0, nil, fmt.Errorf("%s: %w", where, err)
	}
	beyond, err := tokensBeyond(tok, mc.VocabSize)
	if err != nil {
		return "", nil, 0, nil, fmt.Errorf("%s: %w", where, err)
	}
	return fmt.Sprintf("%s: %s, %d layers%s, hidden %d, %.1fM parameters, %d tokens%s%s",
		where, mc.ModelType, mc.NumHiddenLayers, windows(mc), mc.HiddenSize, float64(params)/1e6, tok.VocabSize(), beyond, maxLength(mc)), tok, params, mc, nil
}

// maxLength says where the student's answers stop whatever max_new_tokens
// says (model.Config.MaxLength): "; answers stop at 4096 tokens with their
// prompt (longrope's original context)".
func maxLength(mc *model.Config) string {
	if l := mc.MaxLength(); l > 0 {
		return fmt.Sprintf("; answers stop at %d tokens with their prompt (longrope's original context)", l)
	}
	return ""
}

// windows says which layers attend through a sliding window, if any:
// " (sliding window 1024 on 29)". A window no shorter than
// max_position_embeddings (Phi-4 mini's 262,144) never bites and is not
// named.
func windows(mc *model.Config) string {
	if w := mc.Window(); mc.MaxPositionEmbeddings > 0 && w >= mc.MaxPositionEmbeddings {
		return ""
	}
	n := 0
	for i := range mc.NumHiddenLayers {
		if mc.LayerWindow(i) > 0 {
			n++
		}
	}
	switch {
	case n == 0:
		return ""
	case n == mc.NumHiddenLayers:
		return fmt.Sprintf(" (sliding window %d on all)", mc.Window())
	}
	return fmt.Sprintf(" (sliding window %d on %d)", mc.Window(), n)
}

// tokensBeyond checks that the model embeds every token its tokenizer
// produces from plain text and every special token the stages use. A
// tokenizer may list added tokens past config.json's vocab_size (Gemma 3
// 1B's <image_soft_token>), which text yields only by spelling them out;
// they are named in the summary, and training text that holds one is
// refused (sft.Dataset.CheckIDs) as a prompt holding one is (model.Generate).
func tokensBeyond(tok *tokenizer.Tokenizer, vocab int) (string, error) {
	var extra []string
	for id := vocab; id < tok.VocabSize(); id++ {
		name, ok := tok.AddedToken(id)
		if !ok {
			return "", fmt.Errorf("the tokenizer has %d tokens, more than config.json's vocab_size %d", tok.VocabSize(), vocab)
		}
		extra = append(extra, name)
	}
	sp := tok.Special()
	for _, id := range append(tok.StopIDs(), sp.BOS, sp.Pad) {
		if id >= vocab {
			return "", fmt.Errorf("special token %d is outside config.json's vocab_size %d", id, vocab)
		}
	}
	if len(extra) == 0 {
		return "", nil
	}
	names := strings.Join(extra[:min(len(extra), 3)], " ")
	if len(extra) > 3 {
		names += " …"
	}
	return fmt.Sprintf(" (%d added past vocab_size %d, refused in text: %s)", len(extra), vocab, names), nil
}

// CheckData loads every data file a run of spec reads, as the stages read
// them: the MATH training set, the validation split, and the evaluation
// benchmarks with their reference skills attached. It returns one line per
// set.
func CheckData(spec *job.Spec) ([]string, error) {
	data := spec.Section("data").(*problems.Config)
	train, err := problems.LoadMATH(mathTrainPath(spec))
	if err != nil {
		return nil, fmt.Errorf("data.dir: %w", err)
	}
	val, _, err := problems.SplitMATH(data.Dir, *data)
	if err != nil {
		return nil, fmt.Errorf("data.dir: %w", err)
	}
	out := []string{fmt.Sprintf("math train: %d problems, validation: %d", len(train), len(val))}
	ev := spec.Section("evaluate").(*EvaluateConfig)
	sets, err := benchmarks(ev, data)
	if err != nil {
		return out, err
	}
	for _, b := range ev.Benchmarks {
		out = append(out, fmt.Sprintf("%s: %d problems", b, len(sets[b])))
	}
	return out, nil
}

// checkTeacher sends the teacher one short request past the response cache
// and batch mode: it proves the endpoint, the model name and the key.
func checkTeacher(ctx context.Context, cfg teacher.Config) (string, error) {
	cfg.Cache, cfg.Batch.Enabled = false, false
	t, err := teacher.New(ctx, cfg, nil, nil)
	if err != nil {
		return "", err
	}
	start := time.Now()
	req, err := teacher.Ping.Request(nil, teacher.Params{MaxTokens: 16}, 0, false)
	if err != nil {
		return "", err
	}
	r, err := t.Call(ctx, req)
	if err != nil {
		return "", fmt.Errorf("teacher %s %s: %w", cfg.Provider, cfg.Model, err)
	}
	return fmt.Sprintf("%s %s answered in %s (%d+%d tokens, finish %s)", cfg.Provider, cfg.Model,
		time.Since(start).Round(time.Millisecond), r.Usage.Input, r.Usage.Output, r.Finish), nil
}

// checkEmbedder embeds one short text with the embeddings API of cfg.
func checkEmbedder(ctx context.Context, cfg teacher.EmbedConfig) (string, error) {
	e, err := teacher.NewEmbedder(ctx, cfg, nil)
	if err != nil {
		return "", fmt.Errorf("dataset.embed: %w", err)
	}
	start := time.Now()
	vs, err := e.Embed(ctx, []string{"What is 2 + 3?"})
	if err != nil {
		return "", fmt.Errorf("dataset.embed: %s: %w", e.ID(), err)
	}
	if len(vs) != 1 || len(vs[0]) == 0 {
		return "", fmt.Errorf("dataset.embed: %s returned %d vectors for 1 text", e.ID(), len(vs))
	}
	return fmt.Sprintf("%s: %d dimensions in %s", e.ID(), len(vs[0]), time.Since(start).Round(time.Millisecond)), nil
}
