package teacher

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/httptransport"
	"google.golang.org/genai"

	"github.com/statjob/statjob/storage"
)

// geminiModel calls generateContent on the Gemini API or on Vertex AI.
type geminiModel struct {
	client *genai.Client
	model  string
	name   string
	key    redactor
	// endpoint is the configured base URL ("" for Google's own).
	endpoint string
}

func newGemini(ctx context.Context, cfg *Config, key string, hc *http.Client, creds *auth.Credentials) (*geminiModel, error) {
	cc := &genai.ClientConfig{HTTPClient: hc, HTTPOptions: genai.HTTPOptions{BaseURL: cfg.BaseURL}}
	if cfg.Provider == ProviderVertex {
		cc.Backend = genai.BackendVertexAI
		cc.Project, cc.Location = cfg.Project, cfg.Location
		if creds != nil {
			// genai leaves a caller's HTTP client unauthenticated: the
			// token goes on through the same middleware ADC uses.
			cc.Credentials = creds
			if err := httptransport.AddAuthorizationMiddleware(hc, creds); err != nil {
				return nil, fmt.Errorf("vertex: credentials: %w", err)
			}
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
	return &geminiModel{client: c, model: cfg.Model, name: cfg.Provider, key: redactor(key), endpoint: cfg.BaseURL}, nil
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

// Vertex AI batch prediction: request JSONL written to the store (a gs://
// root), a batchPredictionJob over it created and polled through genai, and
// the predictions JSONL the job writes under the output prefix read back.

// vertexLine is one line of the batch input, and of the output with
// response and status filled in.
type vertexLine struct {
	Key      string                         `json:"key"`
	Request  map[string]any                 `json:"request"`
	Response *genai.GenerateContentResponse `json:"response,omitempty"`
	Status   string                         `json:"status,omitempty"`
}

func vertexRequest(req *Request) map[string]any {
	contents, cfg := geminiRequest(req)
	gen := map[string]any{}
	if cfg.MaxOutputTokens > 0 {
		gen["maxOutputTokens"] = cfg.MaxOutputTokens
	}
	if cfg.Temperature != nil {
		gen["temperature"] = *cfg.Temperature
	}
	if cfg.TopP != nil {
		gen["topP"] = *cfg.TopP
	}
	if cfg.Seed != nil {
		gen["seed"] = *cfg.Seed
	}
	if cfg.ResponseJsonSchema != nil {
		gen["responseMimeType"] = cfg.ResponseMIMEType
		gen["responseJsonSchema"] = cfg.ResponseJsonSchema
	}
	r := map[string]any{"contents": contents, "generationConfig": gen}
	if cfg.SystemInstruction != nil {
		r["systemInstruction"] = cfg.SystemInstruction
	}
	return r
}

// vertexDisplayName names a batch prediction job by its tag (genai sets no
// labels on batch jobs); Vertex caps display names at 128 characters.
func vertexDisplayName(tag, name string) string {
	return fmt.Sprintf("statjob %.80s %s", name, tag)
}

func (m *geminiModel) find(ctx context.Context, tag, name string) (string, error) {
	if m.name != ProviderVertex {
		return "", nil
	}
	want := vertexDisplayName(tag, name)
	filter, _ := json.Marshal(want)
	ctx, meta := withRespMeta(ctx)
	page, err := m.client.Batches.List(ctx, &genai.ListBatchJobsConfig{PageSize: 100, Filter: "display_name=" + string(filter)})
	for ; err == nil; page, err = page.Next(ctx) {
		for _, job := range page.Items {
			if job.DisplayName == want {
				return job.Name, nil
			}
		}
	}
	if errors.Is(err, genai.ErrPageDone) {
		return "", nil
	}
	return "", fmt.Errorf("list batch jobs: %w", apiError(m.name, m.key, meta, err))
}

func (m *geminiModel) submit(ctx context.Context, store storage.Store, dir, tag, name string, items []batchItem) (string, error) {
	if m.name != ProviderVertex {
		return "", fmt.Errorf("batch mode on the Gemini API is not supported: use provider vertex")
	}
	if m.endpoint == "" && !strings.HasPrefix(store.URI(dir), "gs://") {
		return "", fmt.Errorf("vertex batch prediction reads and writes gs:// objects, and the storage root is %s", store.URI(""))
	}
	pr, pw := io.Pipe()
	go func() {
		enc := json.NewEncoder(pw)
		for _, it := range items {
			if err := enc.Encode(vertexLine{Key: it.key, Request: vertexRequest(it.req)}); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.Close()
	}()
	in := dir + "/input.jsonl"
	if _, err := store.Put(ctx, in, pr, storage.PutOptions{ContentType: "application/jsonl"}); err != nil {
		pr.CloseWithError(err)
		return "", fmt.Errorf("write %s: %w", store.URI(in), err)
	}
	ctx, meta := withRespMeta(ctx)
	job, err := m.client.Batches.Create(ctx, m.model,
		&genai.BatchJobSource{Format: "jsonl", GCSURI: []string{store.URI(in)}},
		&genai.CreateBatchJobConfig{DisplayName: vertexDisplayName(tag, name),
			Dest: &genai.BatchJobDestination{Format: "jsonl", GCSURI: store.URI(dir + "/output")}})
	if err != nil {
		return "", apiError(m.name, m.key, meta, err)
	}
	return job.Name, nil
}

func (m *geminiModel) poll(ctx context.Context, id string) (bool, string, error) {
	ctx, meta := withRespMeta(ctx)
	job, err := m.client.Batches.Get(ctx, id, nil)
	if err != nil {
		return false, "", apiError(m.name, m.key, meta, err)
	}
	switch job.State {
	case genai.JobStateSucceeded, genai.JobStatePartiallySucceeded, genai.JobStateFailed,
		genai.JobStateCancelled, genai.JobStateExpired:
		return true, string(job.State), nil
	}
	return false, string(job.State), nil
}

func (m *geminiModel) results(ctx context.Context, store storage.Store, dir, id string, fn func(batchResult)) error {
	var files []string
	err := store.List(ctx, dir+"/output/", func(a storage.Attrs) error {
		if strings.HasSuffix(a.Key, ".jsonl") {
			files = append(files, a.Key)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := readVertexOutput(ctx, store, f, m.name, fn); err != nil {
			return err
		}
	}
	return nil
}

func readVertexOutput(ctx context.Context, store storage.Store, key, provider string, fn func(batchResult)) error {
	rc, err := store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for n := 1; sc.Scan(); n++ {
		var line vertexLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("%s line %d: %w", store.URI(key), n, err)
		}
		r := batchResult{key: line.Key}
		if line.Status != "" || line.Response == nil {
			r.err = fmt.Errorf("item failed in batch: %s", line.Status)
		} else {
			r.reply, r.err = geminiReply(provider, line.Response)
		}
		fn(r)
	}
	return sc.Err()
}
