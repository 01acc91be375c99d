package model

import (
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // the model reads like the math
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Hidden is Forward without the lm_head: the final-norm hidden states
// [B, T, D] of tokens [B, T], for embeddings (pooled by the caller).
// positions and valid are as for Forward.
func Hidden(ctx *context.Context, cfg *Config, tokens, positions, valid *Node) *Node {
	return decoder(ctx, cfg, tokens, positions, spanOf(cfg, positions, valid), causalMasks(valid), nil)
}
