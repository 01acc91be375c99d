package teacher

import (
	"context"
	"fmt"
	"net/http"

	"cloud.google.com/go/auth"
	"google.golang.org/genai"
)

// geminiModel calls generateContent on the Gemini API or on Vertex AI.
type geminiModel struct {
	client *genai.Client
	model  string
	name   string
	key    redactor
}

func newGemini(ctx context.Context, cfg *Config, key string, hc *http.Client, creds *auth.Credentials) (*geminiModel, error) {
	cc := &genai.ClientConfig{HTTPClient: hc, HTTPOptions: genai.HTTPOptions{BaseURL: cfg.BaseURL}}
	if cfg.Provider == ProviderVertex {
		cc.Backend = genai.BackendVertexAI
		cc.Project, cc.Location = cfg.Project, cfg.Location
		if creds != nil {
			cc.Credentials = creds
		} else if err := cc.UseDefaultCredentials(); err != nil {
			return nil, fmt.Errorf("vertex: application default credentials: %w", err)
		}
	} else {
		cc.Backend = genai.BackendGeminiAPI
		cc.APIKey = key
	}
	c, err := genai.NewClient(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("%s client: %s", cfg.Provider, redactor(key).scrub(err.Error()))
	}
	return &geminiModel{client: c, model: cfg.Model, name: cfg.Provider, key: redactor(key)}, nil
}

// geminiRequest maps a Request onto genai's contents and config (also used
// for batch request lines).
func geminiRequest(req *Request) ([]*genai.Content, *genai.GenerateContentConfig) {
	cfg := &genai.GenerateContentConfig{AutomaticContinuation: genai.Ptr(false)}
	var contents []*genai.Content
	for _, m := range req.Messages {
		switch m.Role {
		case System:
			if cfg.SystemInstruction == nil {
				cfg.SystemInstruction = &genai.Content{}
			}
			cfg.SystemInstruction.Parts = append(cfg.SystemInstruction.Parts, &genai.Part{Text: m.Content})
		case Assistant:
			contents = append(contents, genai.NewContentFromText(m.Content, genai.RoleModel))
		default:
			contents = append(contents, genai.NewContentFromText(m.Content, genai.RoleUser))
		}
	}
	if req.Params.MaxTokens > 0 {
		cfg.MaxOutputTokens = int32(req.Params.MaxTokens)
	}
	if t := req.Params.Temperature; t != nil {
		cfg.Temperature = genai.Ptr(float32(*t))
	}
	if t := req.Params.TopP; t != nil {
		cfg.TopP = genai.Ptr(float32(*t))
	}
	if s := req.Params.Seed; s != nil {
		cfg.Seed = genai.Ptr(int32(*s + int64(req.Sample)))
	}
	if req.Schema != nil {
		cfg.ResponseMIMEType = "application/json"
		cfg.ResponseJsonSchema = req.Schema
	}
	return contents, cfg
}

func (m *geminiModel) Call(ctx context.Context, req *Request) (*Reply, error) {
	ctx, meta := withRespMeta(ctx)
	contents, cfg := geminiRequest(req)
	resp, err := m.client.Models.GenerateContent(ctx, m.model, contents, cfg)
	if err != nil {
		return nil, apiError(m.name, m.key, meta, err)
	}
	return geminiReply(m.name, resp)
}

func geminiReply(provider string, resp *genai.GenerateContentResponse) (*Reply, error) {
	if resp == nil || len(resp.Candidates) == 0 {
		return nil, &transportError{msg: provider + ": reply has no candidates"}
	}
	r := &Reply{Text: resp.Text(), Model: resp.ModelVersion}
	if u := resp.UsageMetadata; u != nil {
		// Thinking tokens are billed as output.
		r.Usage = Usage{Input: int(u.PromptTokenCount), Output: int(u.CandidatesTokenCount + u.ThoughtsTokenCount)}
	}
	switch resp.Candidates[0].FinishReason {
	case genai.FinishReasonStop, genai.FinishReasonUnspecified, "":
		r.Finish = FinishStop
	case genai.FinishReasonMaxTokens:
		r.Finish = FinishLength
	default:
		r.Finish = FinishOther
	}
	return r, nil
}
