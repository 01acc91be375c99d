package teachertest

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// EmbedServer is a fake embeddings endpoint speaking the three wire
// formats: OpenAI's POST /v1/embeddings, the Gemini API's
// models/{model}:batchEmbedContents and :embedContent, and Vertex AI's
// publishers/google/models/{model}:predict and :embedContent (one text). For the SDKs, the OpenAI base
// URL is URL + "/v1" and the Gemini and Vertex base URL is URL.
type EmbedServer struct {
	*httptest.Server
	// Vector is the embedding of one text; the default is HashVector.
	Vector func(text string) []float32

	faults chan Fault
	mu     sync.Mutex
	seen   []EmbedRequest
}

// EmbedRequest is what the server saw of one request it answered.
type EmbedRequest struct {
	Path       string
	Model      string
	Texts      []string
	Dimensions int // dimensions / outputDimensionality asked for (0: none)
	Header     http.Header
}

// HashVector is a fixed 8-dimensional vector derived from the text's hash.
func HashVector(text string) []float32 {
	h := fnv.New64a()
	h.Write([]byte(text))
	x := h.Sum64()
	v := make([]float32, 8)
	for i := range v {
		v[i] = float32(int8(x>>(8*i))) / 128
	}
	return v
}

// NewEmbed starts a fake embeddings endpoint.
func NewEmbed(t testing.TB) *EmbedServer {
	s := &EmbedServer{Vector: HashVector, faults: make(chan Fault, 1024)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.route))
	if t != nil {
		t.Cleanup(s.Close)
	}
	return s
}

// Fail queues faults; each replaces the answer of the next request.
// Status, RetryAfter, Header and Body apply (not Hang or Reset).
func (s *EmbedServer) Fail(fs ...Fault) {
	for _, f := range fs {
		s.faults <- f
	}
}

// Requests returns the requests answered so far (faults not included).
func (s *EmbedServer) Requests() []EmbedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]EmbedRequest(nil), s.seen...)
}

// Texts counts the texts embedded so far.
func (s *EmbedServer) Texts() int {
	n := 0
	for _, r := range s.Requests() {
		n += len(r.Texts)
	}
	return n
}

var (
	geminiEmbedPath = regexp.MustCompile(`^/v1[a-z0-9]*/models/([^/:]+):(batchEmbedContents|embedContent)$`)
	vertexEmbedPath = regexp.MustCompile(`^/v1[a-z0-9]*/projects/[^/]+/locations/[^/]+/publishers/google/models/([^/:]+):(predict|embedContent)$`)
)

type geminiEmbedRequest struct {
	Model   string `json:"model"`
	Content struct {
		Parts []struct {
			Text string `json:"text"`
		} `json:"parts"`
	} `json:"content"`
	OutputDimensionality int `json:"outputDimensionality"`
}

func (s *EmbedServer) route(w http.ResponseWriter, r *http.Request) {
	if r.Method != "POST" {
		writeJSON(w, 404, json.RawMessage(openaiErr(404, "no route "+r.Method+" "+r.URL.Path)))
		return
	}
	req := EmbedRequest{Path: r.URL.Path, Header: r.Header.Clone()}
	var reply func() any
	switch m := geminiEmbedPath.FindStringSubmatch(r.URL.Path); {
	case r.URL.Path == "/v1/embeddings":
		var q struct {
			Model          string   `json:"model"`
			Input          any      `json:"input"`
			Dimensions     int      `json:"dimensions"`
			EncodingFormat string   `json:"encoding_format"`
			texts          []string // from Input
		}
		if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
			writeJSON(w, 400, json.RawMessage(openaiErr(400, "bad json: "+err.Error())))
			return
		}
		switch in := q.Input.(type) {
		case string:
			q.texts = []string{in}
		case []any:
			for _, x := range in {
				t, ok := x.(string)
				if !ok {
					writeJSON(w, 400, json.RawMessage(openaiErr(400, "input: want strings")))
					return
				}
				q.texts = append(q.texts, t)
			}
		}
		if q.Model == "" || len(q.texts) == 0 || (q.EncodingFormat != "" && q.EncodingFormat != "float") {
			writeJSON(w, 400, json.RawMessage(openaiErr(400, fmt.Sprintf("model %q, %d inputs, encoding_format %q", q.Model, len(q.texts), q.EncodingFormat))))
			return
		}
		req.Model, req.Texts, req.Dimensions = q.Model, q.texts, q.Dimensions
		reply = func() any {
			// Answer in reverse order: clients must place vectors by index.
			data := make([]map[string]any, len(q.texts))
			for i, t := range q.texts {
				data[len(q.texts)-1-i] = map[string]any{"object": "embedding", "index": i, "embedding": s.vector(t, q.Dimensions)}
			}
			return map[string]any{"object": "list", "data": data, "model": q.Model,
				"usage": map[string]any{"prompt_tokens": len(q.texts), "total_tokens": len(q.texts)}}
		}
	case m != nil:
		req.Model = m[1]
		var reqs []geminiEmbedRequest
		if m[2] == "batchEmbedContents" {
			var q struct {
				Requests []geminiEmbedRequest `json:"requests"`
			}
			if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
				writeJSON(w, 400, json.RawMessage(geminiErr(400, "bad json: "+err.Error())))
				return
			}
			reqs = q.Requests
		} else {
			var q geminiEmbedRequest
			if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
				writeJSON(w, 400, json.RawMessage(geminiErr(400, "bad json: "+err.Error())))
				return
			}
			reqs = []geminiEmbedRequest{q}
		}
		for _, q := range reqs {
			if m[2] == "batchEmbedContents" && q.Model != "models/"+m[1] {
				writeJSON(w, 400, json.RawMessage(geminiErr(400, fmt.Sprintf("request model %q is not models/%s", q.Model, m[1]))))
				return
			}
			var text strings.Builder
			for _, p := range q.Content.Parts {
				text.WriteString(p.Text)
			}
			req.Texts = append(req.Texts, text.String())
			req.Dimensions = q.OutputDimensionality
		}
		reply = func() any {
			var embs []map[string]any
			for _, t := range req.Texts {
				embs = append(embs, map[string]any{"values": s.vector(t, req.Dimensions)})
			}
			if m[2] == "embedContent" {
				return map[string]any{"embedding": embs[0]}
			}
			return map[string]any{"embeddings": embs}
		}
	case vertexEmbedPath.MatchString(r.URL.Path) && strings.HasSuffix(r.URL.Path, ":embedContent"):
		req.Model = vertexEmbedPath.FindStringSubmatch(r.URL.Path)[1]
		var q struct {
			geminiEmbedRequest
			Config struct {
				OutputDimensionality int `json:"outputDimensionality"`
			} `json:"embedContentConfig"`
		}
		if err := json.NewDecoder(r.Body).Decode(&q); err != nil || len(q.Content.Parts) == 0 {
			writeJSON(w, 400, json.RawMessage(geminiErr(400, fmt.Sprintf("bad embedContent request (%v)", err))))
			return
		}
		req.Texts, req.Dimensions = []string{q.Content.Parts[0].Text}, q.Config.OutputDimensionality
		reply = func() any {
			return map[string]any{"embedding": map[string]any{"values": s.vector(req.Texts[0], req.Dimensions)},
				"usageMetadata": map[string]any{"promptTokenCount": len(req.Texts[0]) / 4}}
		}
	case vertexEmbedPath.MatchString(r.URL.Path):
		req.Model = vertexEmbedPath.FindStringSubmatch(r.URL.Path)[1]
		var q struct {
			Instances []struct {
				Content string `json:"content"`
			} `json:"instances"`
			Parameters struct {
				OutputDimensionality int `json:"outputDimensionality"`
			} `json:"parameters"`
		}
		if err := json.NewDecoder(r.Body).Decode(&q); err != nil || len(q.Instances) == 0 {
			writeJSON(w, 400, json.RawMessage(geminiErr(400, fmt.Sprintf("bad predict request (%v)", err))))
			return
		}
		for _, in := range q.Instances {
			req.Texts = append(req.Texts, in.Content)
		}
		req.Dimensions = q.Parameters.OutputDimensionality
		reply = func() any {
			var preds []map[string]any
			for _, t := range req.Texts {
				preds = append(preds, map[string]any{"embeddings": map[string]any{"values": s.vector(t, req.Dimensions),
					"statistics": map[string]any{"truncated": false, "token_count": len(t) / 4}}})
			}
			return map[string]any{"predictions": preds}
		}
	default:
		writeJSON(w, 404, json.RawMessage(openaiErr(404, "no route "+r.Method+" "+r.URL.Path)))
		return
	}
	select {
	case f := <-s.faults:
		for k, v := range f.Header {
			w.Header().Set(k, v)
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		status, body := f.Status, f.Body
		if status == 0 {
			status = 200
		} else if body == "" {
			body = openaiErr(status, http.StatusText(status))
			if req.Path != "/v1/embeddings" {
				body = geminiErr(status, http.StatusText(status))
			}
		}
		w.WriteHeader(status)
		fmt.Fprint(w, body)
		return
	default:
	}
	s.mu.Lock()
	s.seen = append(s.seen, req)
	s.mu.Unlock()
	writeJSON(w, 200, reply())
}

// vector is Vector(text), cut to dims when dims asks for fewer.
func (s *EmbedServer) vector(text string, dims int) []float32 {
	v := s.Vector(text)
	if dims > 0 && dims < len(v) {
		v = v[:dims]
	}
	return v
}
