package model

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/statjob/statjob/storage"
)

// TestGemma3ImageTextCheckpoint: the language model of a Gemma 3
// image-and-text checkpoint (model_type gemma3, as gemma-3-4b and larger
// ship: text_config with Gemma3TextConfig's defaults left out, the language
// model's tensors under language_model. or model.language_model., a vision
// tower beside them) loads as the same student as its text-only checkpoint,
// and saves as a text-only gemma3_text checkpoint.
func TestGemma3ImageTextCheckpoint(t *testing.T) {
	ctx := context.Background()
	text := NewRandom(mustConfig(t, tinyGemma3), 9, 0.15)
	var textCfg map[string]any
	if err := json.Unmarshal([]byte(tinyGemma3), &textCfg); err != nil {
		t.Fatal(err)
	}
	// What text_config leaves out when it equals Gemma3TextConfig's default
	// (the ids come from the outer config).
	for _, k := range []string{"model_type", "rms_norm_eps", "rope_theta", "rope_local_base_freq", "tie_word_embeddings", "hidden_activation", "eos_token_id", "bos_token_id"} {
		delete(textCfg, k)
	}
	textCfg["model_type"] = "gemma3_text"
	outer, err := json.Marshal(map[string]any{
		"model_type": "gemma3", "architectures": []string{"Gemma3ForConditionalGeneration"},
		"text_config": textCfg, "vision_config": map[string]any{"model_type": "siglip_vision_model", "hidden_size": 8},
		"eos_token_id": []int{1, 106}, "mm_tokens_per_image": 256,
	})
	if err != nil {
		t.Fatal(err)
	}
	heads := TensorNames(text.Config)
	values := map[string][]float32{}
	var textParams int64
	for _, h := range heads {
		scope, name := scopeOf(h.Name)
		values[h.Name] = tensors.MustCopyFlatData[float32](text.Ctx.GetVariableByScopeAndName(scope, name).MustValue())
		textParams += int64(numElements(h.Shape))
	}
	want, err := Logits(testBackend(t), text, [][]int{{5, 17, 33, 2, 9, 41, 60, 11, 7}})
	if err != nil {
		t.Fatal(err)
	}
	for _, layout := range []struct{ name, prefix string }{
		{"transformers before 4.52", "language_model."},
		{"transformers 4.52 on", "model.language_model."},
	} {
		t.Run(layout.name, func(t *testing.T) {
			var renamed []TensorHeader
			src := map[string][]float32{}
			for _, h := range heads {
				name := layout.prefix + h.Name
				if layout.prefix == "model.language_model." {
					name = layout.prefix + strings.TrimPrefix(h.Name, "model.")
				}
				renamed = append(renamed, TensorHeader{name, h.Shape})
				src[name] = values[h.Name]
			}
			vision := strings.TrimSuffix(layout.prefix, "language_model.")
			for _, name := range []string{vision + "vision_tower.vision_model.post_layernorm.weight", vision + "multi_modal_projector.mm_soft_emb_norm.weight"} {
				renamed = append(renamed, TensorHeader{name, []int{8}})
				src[name] = make([]float32, 8)
			}
			var buf bytes.Buffer
			if err := WriteSafetensors(&buf, "F32", renamed, nil, func(name string) ([]float32, error) { return src[name], nil }); err != nil {
				t.Fatal(err)
			}
			store := openDir(t, t.TempDir())
			for name, data := range map[string][]byte{ConfigFile: outer, WeightsFile: buf.Bytes()} {
				if _, err := store.Put(ctx, "it/"+name, bytes.NewReader(data), storage.PutOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			cfg, params, err := Inspect(ctx, store, "it")
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ModelType != "gemma3_text" || cfg.VocabSize != 80 || !cfg.TieWordEmbeddings || cfg.RopeLocalBaseFreq != 10000 ||
				!slices.Equal(cfg.EOSTokenIDs(), []int{1, 106}) || params != textParams {
				t.Fatalf("inspected as %+v with %d parameters, want the text model's %d", cfg, params, textParams)
			}
			m, err := Load(ctx, store, "it")
			if err != nil {
				t.Fatal(err)
			}
			got, err := Logits(testBackend(t), m, [][]int{{5, 17, 33, 2, 9, 41, 60, 11, 7}})
			if err != nil {
				t.Fatal(err)
			}
			for j := range want[0] {
				if d := maxAbsDiff(got[0][j], want[0][j]); d != 0 {
					t.Fatalf("position %d: logits differ from the text-only checkpoint's by %.2e", j, d)
				}
			}
			if err := m.Save(ctx, store, "out", SaveOptions{}); err != nil {
				t.Fatal(err)
			}
			saved, err := storage.ReadAll(ctx, store, "out/"+ConfigFile)
			if err != nil {
				t.Fatal(err)
			}
			var back map[string]any
			if err := json.Unmarshal(saved, &back); err != nil {
				t.Fatal(err)
			}
			if back["model_type"] != "gemma3_text" || back["text_config"] != nil || back["vision_config"] != nil || back["hidden_act"] != nil {
				t.Errorf("saved config.json has keys %v, want a text-only gemma3_text config", slices.Sorted(maps.Keys(back)))
			}
			if again, err := Load(ctx, store, "out"); err != nil {
				t.Fatal(err)
			} else {
				sameWeights(t, again, text, "saved from the image-and-text checkpoint")
			}
		})
	}
}
