package teacher

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/statjob/statjob/storage"
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

// OpenAI Batch API: a JSONL file of chat-completion requests uploaded
// through the Files API, a batch over it, and an output file read back.

// openaiBatchTag is the metadata key that marks a batch with its tag.
const openaiBatchTag = "statjob_batch"

func (m *openaiModel) find(ctx context.Context, tag, _ string) (string, error) {
	ctx, meta := withRespMeta(ctx)
	it := m.client.Batches.ListAutoPaging(ctx, openai.BatchListParams{Limit: openai.Int(100)})
	for it.Next() {
		if b := it.Current(); b.Metadata[openaiBatchTag] == tag {
			return b.ID, nil
		}
	}
	if err := it.Err(); err != nil {
		return "", fmt.Errorf("list batches: %w", apiError("openai", m.key, meta, err))
	}
	return "", nil
}

func (m *openaiModel) submit(ctx context.Context, _ storage.Store, _, tag, name string, items []batchItem) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, it := range items {
		if err := enc.Encode(map[string]any{"custom_id": it.key, "method": "POST",
			"url": "/v1/chat/completions", "body": m.params(it.req)}); err != nil {
			return "", fmt.Errorf("encode batch line: %w", err)
		}
	}
	ctx, meta := withRespMeta(ctx)
	f, err := m.client.Files.New(ctx, openai.FileNewParams{
		File: openai.File(&buf, "batch.jsonl", "application/jsonl"), Purpose: openai.FilePurposeBatch})
	if err != nil {
		return "", fmt.Errorf("upload batch input: %w", apiError("openai", m.key, meta, err))
	}
	b, err := m.client.Batches.New(ctx, openai.BatchNewParams{InputFileID: f.ID,
		Endpoint:         openai.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h,
		Metadata:         shared.Metadata{"name": name, openaiBatchTag: tag}})
	if err != nil {
		return "", fmt.Errorf("create batch: %w", apiError("openai", m.key, meta, err))
	}
	return b.ID, nil
}

func (m *openaiModel) poll(ctx context.Context, id string) (bool, string, error) {
	ctx, meta := withRespMeta(ctx)
	b, err := m.client.Batches.Get(ctx, id)
	if err != nil {
		return false, "", apiError("openai", m.key, meta, err)
	}
	switch b.Status {
	case openai.BatchStatusCompleted, openai.BatchStatusExpired, openai.BatchStatusCancelled, openai.BatchStatusFailed:
		return true, string(b.Status), nil
	}
	return false, string(b.Status), nil
}

func (m *openaiModel) results(ctx context.Context, _ storage.Store, _, id string, fn func(batchResult)) error {
	ctx, meta := withRespMeta(ctx)
	b, err := m.client.Batches.Get(ctx, id)
	if err != nil {
		return apiError("openai", m.key, meta, err)
	}
	if b.OutputFileID == "" {
		return nil // nothing answered: every item goes online
	}
	resp, err := m.client.Files.Content(ctx, b.OutputFileID)
	if err != nil {
		return fmt.Errorf("download %s: %w", b.OutputFileID, apiError("openai", m.key, meta, err))
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for n := 1; sc.Scan(); n++ {
		var line struct {
			CustomID string `json:"custom_id"`
			Response *struct {
				StatusCode int                   `json:"status_code"`
				Body       openai.ChatCompletion `json:"body"`
			} `json:"response"`
			Error *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("%s line %d: %w", b.OutputFileID, n, err)
		}
		r := batchResult{key: line.CustomID}
		switch {
		case line.Error != nil:
			r.err = fmt.Errorf("%s: %s", line.Error.Code, line.Error.Message)
		case line.Response == nil || line.Response.StatusCode != 200:
			r.err = fmt.Errorf("item failed in batch")
		default:
			r.reply, r.err = openaiReply(&line.Response.Body)
		}
		fn(r)
	}
	return sc.Err()
}
