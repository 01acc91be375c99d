package sft

import (
	"math"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
)

// bf16CurveTol bounds |loss_bf16 − loss_f32| / loss_f32 at every step of the
// bf16 run below. Measured on CPU (whose bf16 conversion truncates, the
// worse case; see train/model's precision test): 1.2e-3 full, 9.6e-4 LoRA.
const bf16CurveTol = 5e-3

// TestBF16TrainingTracksF32 fine-tunes the tiny student fully and with LoRA
// for 12 optimizer steps in f32 and in bf16 (bf16 matrix products, f32
// master weights): the bf16 loss goes down, tracks the f32 curve step by
// step within bf16CurveTol, and every trained variable and optimizer moment
// stays float32.
func TestBF16TrainingTracksF32(t *testing.T) {
	for _, lora := range []bool{false, true} {
		name := map[bool]string{false: "full", true: "lora"}[lora]
		t.Run(name, func(t *testing.T) {
			const steps = 12
			curve := func(precision string) []float64 {
				cfg := DefaultConfig()
				cfg.Precision = precision
				cfg.MaxLen, cfg.MicroBatch, cfg.Accumulation = 128, 2, 2
				cfg.LR, cfg.ClipNorm = 3e-3, 1.0
				if lora {
					cfg.LR, cfg.ClipNorm = 1e-2, 0.3
				} else {
					cfg.LoRA = LoRAConfig{}
				}
				tr, m, _ := studentTrainer(t, cfg)
				plan := modelSteps(mathDataset(t, 40, cfg), cfg, steps)
				warm := WarmupSteps(0.1, steps)
				var losses []float64
				for i, st := range plan {
					s, err := tr.Step(st, LearningRate(cfg.LR, i, warm, steps))
					if err != nil {
						t.Fatal(err)
					}
					losses = append(losses, s.Loss)
				}
				for v := range m.Ctx.IterVariables() {
					if v.Name() != mlctx.RNGStateVariableName && v.Shape().DType != dtypes.Float32 {
						t.Errorf("%s: variable %s is %s, want float32", precision, v.ScopeAndName(), v.Shape().DType)
					}
				}
				if len(tr.Params()) == 0 {
					t.Fatalf("%s: nothing trained", precision)
				}
				return losses
			}
			f32, bf16 := curve(PrecisionF32), curve(PrecisionBF16)
			worst := 0.0
			for i := range f32 {
				worst = max(worst, math.Abs(bf16[i]-f32[i])/f32[i])
			}
			t.Logf("%s: f32 loss %.4f → %.4f, bf16 %.4f → %.4f; worst step relative gap %.2e",
				name, f32[0], f32[steps-1], bf16[0], bf16[steps-1], worst)
			if worst == 0 {
				t.Errorf("bf16 losses equal f32 bitwise: the compute dtype was not applied")
			}
			if worst > bf16CurveTol || math.IsNaN(worst) {
				t.Errorf("bf16 loss curve strays from f32 by %.2e (relative), want <= %.0e\nf32  %.4f\nbf16 %.4f", worst, bf16CurveTol, f32, bf16)
			}
			if bf16[steps-1] >= bf16[0]*0.95 {
				t.Errorf("bf16 loss did not go down: %.4f → %.4f", bf16[0], bf16[steps-1])
			}
		})
	}
}

// TestPrecisionNames: the two precision names map to their compute dtypes;
// anything else is refused naming the field, by ModelForward as by Validate.
func TestPrecisionNames(t *testing.T) {
	for name, want := range map[string]dtypes.DType{PrecisionF32: dtypes.Float32, PrecisionBF16: dtypes.BFloat16} {
		if got, err := ComputeDType(name); err != nil || got != want {
			t.Errorf("ComputeDType(%q) = %s, %v; want %s", name, got, err, want)
		}
	}
	cfg := DefaultConfig()
	if cfg.Precision != PrecisionF32 {
		t.Errorf("default precision %q, want %q", cfg.Precision, PrecisionF32)
	}
	cfg.Precision = "fp16"
	m, _ := tinyStudent(t)
	for what, err := range map[string]error{"Validate": cfg.Validate(), "ModelForward": func() error {
		_, err := ModelForward(m.Config, cfg)
		return err
	}()} {
		if err == nil || !strings.Contains(err.Error(), "sft.precision") || !strings.Contains(err.Error(), "fp16") {
			t.Errorf("%s with precision fp16: %v, want an error naming sft.precision", what, err)
		}
	}
}
