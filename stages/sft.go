package stages

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/sft"
)

// sftVersion is bumped when the stage's output changes for the same inputs.
const sftVersion = "sft v1"

// sftStage fine-tunes the base student on dataset/<strategy> with the sft
// section's recipe (train/sft), checkpointing into its own folder so that a
// preempted job resumes from the newest checkpoint, and exports the merged
// student under StudentDir.
type sftStage struct {
	strategy string
}

// NewSFT returns the sft/<strategy> stage: it fine-tunes the student on
// dataset/<strategy> with the sft section's recipe.
func NewSFT(strategy string) job.Stage { return &sftStage{strategy: strategy} }

func (s *sftStage) Name() string    { return "sft/" + s.strategy }
func (s *sftStage) Needs() []string { return []string{"dataset/" + s.strategy} }

// Fingerprint covers the recipe, the student section, the base student's
// files (config, tokenizer and chat template, weights) and the dataset.
func (s *sftStage) Fingerprint(spec *job.Spec, up map[string]string) (string, error) {
	canon, err := spec.Canonical("sft", "student")
	if err != nil {
		return "", err
	}
	sh, err := studentHash(context.Background(), spec.Section("student").(*StudentConfig))
	if err != nil {
		return "", err
	}
	return job.Hash(sftVersion, s.strategy, canon, sh, up)
}

func (s *sftStage) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	stCfg := env.Spec().Section("student").(*StudentConfig)
	cfg := *env.Spec().Section("sft").(*sft.Config)
	dataset := "dataset/" + s.strategy

	rc, err := env.Open(ctx, dataset, DatasetFile)
	if err != nil {
		return nil, err
	}
	convs, err := sft.ReadJSONL(rc, dataset+"/"+DatasetFile)
	rc.Close()
	if err != nil {
		return nil, err
	}
	for i := range convs {
		convs[i].Messages = stCfg.withSystem(convs[i].Messages)
	}
	held := stCfg
	if cfg.LoRA.Rank == 0 {
		held = stCfg.trained() // every weight is trained
	}
	student, err := openStudent(ctx, env, held, "")
	if err != nil {
		return nil, err
	}
	opts := stCfg.ChatOptions()
	opts.AddGenerationPrompt = false // the assistant's turn is in the data
	data, err := sft.Tokenize(convs, student.Tok, opts, cfg)
	if err == nil {
		err = data.CheckIDs(student.Model.Config.VocabSize)
	}
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", dataset, DatasetFile, err)
	}
	be, err := backend.New(stCfg.Backend)
	if err != nil {
		return nil, fmt.Errorf("student.backend: %w", err)
	}
	// Free the device for the stages that run next in this process.
	defer be.Finalize()
	fwd, err := sft.ModelForward(student.Model.Config, cfg)
	if err != nil {
		return nil, err
	}
	tr, err := sft.NewTrainer(cfg, be, student.Model.Ctx, fwd)
	if err != nil {
		return nil, err
	}
	run := &sft.Run{Trainer: tr, Train: data, Store: env.Store(), Prefix: env.Key(""), Log: sftLogWriter{env.Log()}}
	res, err := run.Run(ctx)
	if err != nil {
		return nil, fmt.Errorf("train %s on %s: %w", student.Where, dataset, err)
	}
	if !res.Done {
		return nil, fmt.Errorf("train %s on %s: stopped after %d of %d steps", student.Where, dataset, res.Steps, res.TotalSteps)
	}
	if err := writeRows(ctx, env, MetricsFile, res.Metrics); err != nil {
		return nil, err
	}
	dtype := sftExportDType(student.Model.Config)
	if err := sft.Export(ctx, student.Model, cfg, sftSink{env}, StudentDir, dtype, student.Files); err != nil {
		return nil, err
	}
	m := job.Metrics{
		"steps":              res.Steps,
		"examples_read":      res.Data.Read,
		"examples_kept":      res.Data.Kept,
		"examples_dropped":   res.Data.Dropped,
		"examples_truncated": res.Data.Truncated,
		"tokens":             res.Data.Tokens,
		"target_tokens":      res.Data.Targets,
		"final_loss":         res.Final.Loss,
		"export_dtype":       dtype,
	}
	if len(res.Metrics) > 0 {
		m["first_loss"] = res.Metrics[0].Loss
	}
	if tps, ok := sftMeanTokensPerSec(res.Metrics); ok {
		m["tokens_per_s"] = tps
	}
	if res.ResumedFrom != "" {
		m["resumed_from"] = strings.TrimPrefix(res.ResumedFrom, env.Key(""))
	}
	return m, nil
}

// sftExportDType keeps the base student's precision: BF16 or F16 when its
// config.json says so, F32 otherwise.
func sftExportDType(c *model.Config) string {
	switch strings.ToLower(c.TorchDType) {
	case "bfloat16":
		return "BF16"
	case "float16":
		return "F16"
	}
	return "F32"
}

// sftMeanTokensPerSec is the mean throughput over the steps that measured
// one (steps taken before a resume keep theirs).
func sftMeanTokensPerSec(ms []sft.Metric) (float64, bool) {
	sum, n := 0.0, 0
	for _, m := range ms {
		if m.TokensPerSec > 0 {
			sum += m.TokensPerSec
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	return sum / float64(n), true
}

// sftSink writes an export through the stage's Env, so that every file is an
// output recorded in the manifest; keys are relative to the stage's folder.
type sftSink struct{ env *job.Env }

func (s sftSink) Put(ctx context.Context, key string, r io.Reader, _ storage.PutOptions) (storage.Attrs, error) {
	o, err := s.env.Put(ctx, key, r)
	if err != nil {
		return storage.Attrs{}, err
	}
	return storage.Attrs{Key: key, Size: o.Bytes, SHA256: o.SHA256}, nil
}

var _ model.Sink = sftSink{}

// sftLogWriter turns the trainer's log lines into the stage's log records.
type sftLogWriter struct{ log *slog.Logger }

func (w sftLogWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.log.Info(line)
	}
	return len(p), nil
}
