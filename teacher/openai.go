package teacher

import (
	"context"
	"net/http"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
)

// openaiModel speaks the chat-completions API of any OpenAI-compatible
// endpoint.
type openaiModel struct {
	client openai.Client
	model  string
	key    redactor
	// maxTokensField: OpenAI's own endpoint wants max_completion_tokens;
	// self-hosted servers (vLLM, SGLang, Ollama) know max_tokens.
	completionTokens bool
}

func newOpenAI(cfg *Config, key string, hc *http.Client) *openaiModel {
	opts := []option.RequestOption{option.WithHTTPClient(hc), option.WithMaxRetries(0)}
	if cfg.BaseURL != "" {
		opts = append(opts, option.WithBaseURL(cfg.BaseURL))
	}
	if key == "" {
		key = "none" // local servers ignore it; the SDK insists on one
	}
	opts = append(opts, option.WithAPIKey(key))
	return &openaiModel{client: openai.NewClient(opts...), model: cfg.Model, key: redactor(key),
		completionTokens: cfg.BaseURL == ""}
}

func (m *openaiModel) params(req *Request) openai.ChatCompletionNewParams {
	p := openai.ChatCompletionNewParams{Model: shared.ChatModel(m.model)}
	for _, msg := range req.Messages {
		switch msg.Role {
		case System:
			p.Messages = append(p.Messages, openai.SystemMessage(msg.Content))
		case Assistant:
			p.Messages = append(p.Messages, openai.AssistantMessage(msg.Content))
		default:
			p.Messages = append(p.Messages, openai.UserMessage(msg.Content))
		}
	}
	if req.Params.MaxTokens > 0 {
		if m.completionTokens {
			p.MaxCompletionTokens = openai.Int(int64(req.Params.MaxTokens))
		} else {
			p.MaxTokens = openai.Int(int64(req.Params.MaxTokens))
		}
	}
	if t := req.Params.Temperature; t != nil {
		p.Temperature = openai.Float(*t)
	}
	if t := req.Params.TopP; t != nil {
		p.TopP = openai.Float(*t)
	}
	if s := req.Params.Seed; s != nil {
		p.Seed = openai.Int(*s + int64(req.Sample))
	}
	if req.Schema != nil {
		p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{
			OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{
				Name: "reply", Schema: req.Schema, Strict: openai.Bool(true)}}}
	}
	return p
}

func (m *openaiModel) Call(ctx context.Context, req *Request) (*Reply, error) {
	ctx, meta := withRespMeta(ctx)
	resp, err := m.client.Chat.Completions.New(ctx, m.params(req))
	if err != nil {
		return nil, apiError("openai", m.key, meta, err)
	}
	return openaiReply(resp)
}

func openaiReply(resp *openai.ChatCompletion) (*Reply, error) {
	if len(resp.Choices) == 0 {
		return nil, &transportError{msg: "openai: reply has no choices"}
	}
	c := resp.Choices[0]
	r := &Reply{Text: c.Message.Content, Model: resp.Model,
		Usage: Usage{Input: int(resp.Usage.PromptTokens), Output: int(resp.Usage.CompletionTokens)}}
	switch c.FinishReason {
	case "stop", "":
		r.Finish = FinishStop
	case "length":
		r.Finish = FinishLength
	default:
		r.Finish = FinishOther
	}
	return r, nil
}
