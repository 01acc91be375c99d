package teachertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NewGemini starts a fake Gemini endpoint serving both the Gemini API paths
// (/v1beta/models/M:generateContent) and the Vertex AI paths
// (/v1beta1/projects/P/locations/L/publishers/google/models/M:generateContent,
// …/batchPredictionJobs). Point the SDK's BaseURL at URL.
func NewGemini(t testing.TB) *Server { return newServer(t, routeGemini) }

func geminiErr(status int, msg string) string {
	st := map[int]string{400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
		404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}[status]
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": status, "message": msg, "status": st}})
	return string(b)
}

type part struct {
	Text string `json:"text"`
}
type content struct {
	Role  string `json:"role"`
	Parts []part `json:"parts"`
}

type genRequest struct {
	Contents          []content `json:"contents"`
	SystemInstruction *content  `json:"systemInstruction"`
	GenerationConfig  struct {
		MaxOutputTokens    int             `json:"maxOutputTokens"`
		Seed               *int64          `json:"seed"`
		ResponseJSONSchema json.RawMessage `json:"responseJsonSchema"`
		ResponseSchema     json.RawMessage `json:"responseSchema"`
	} `json:"generationConfig"`
}

func (q *genRequest) call(model string) Call {
	c := Call{Model: model, MaxTokens: q.GenerationConfig.MaxOutputTokens, Seed: q.GenerationConfig.Seed,
		Schema: len(q.GenerationConfig.ResponseJSONSchema) > 0 || len(q.GenerationConfig.ResponseSchema) > 0}
	if q.SystemInstruction != nil {
		for _, p := range q.SystemInstruction.Parts {
			c.System += p.Text
		}
	}
	for _, ct := range q.Contents {
		role := ct.Role
		if role == "model" {
			role = "assistant"
		}
		var text string
		for _, p := range ct.Parts {
			text += p.Text
		}
		c.Messages = append(c.Messages, Msg{Role: role, Text: text})
	}
	return c
}

func genResponse(model string, a Answer) map[string]any {
	finish := "STOP"
	if a.Truncated {
		finish = "MAX_TOKENS"
	}
	return map[string]any{
		"candidates": []any{map[string]any{"index": 0, "finishReason": finish,
			"content": map[string]any{"role": "model", "parts": []any{map[string]any{"text": a.Text}}}}},
		"usageMetadata": map[string]any{"promptTokenCount": a.Input, "candidatesTokenCount": a.Output,
			"thoughtsTokenCount": a.Thoughts, "totalTokenCount": a.Input + a.Output + a.Thoughts},
		"modelVersion": model,
	}
}

var (
	genPath   = regexp.MustCompile(`^/v1[a-z0-9]*/(?:projects/[^/]+/locations/[^/]+/publishers/google/)?models/([^/:]+):generateContent$`)
	batchPath = regexp.MustCompile(`^/v1[a-z0-9]*/(projects/[^/]+/locations/[^/]+)/batchPredictionJobs(?:/([^/]+))?$`)
)

func routeGemini(s *Server, w http.ResponseWriter, r *http.Request) {
	if m := genPath.FindStringSubmatch(r.URL.Path); m != nil && r.Method == "POST" {
		var q genRequest
		if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
			writeJSON(w, 400, json.RawMessage(geminiErr(400, "bad json: "+err.Error())))
			return
		}
		a, ok := s.serve(w, r, q.call(m[1]), geminiErr)
		if ok {
			writeJSON(w, 200, genResponse(m[1], a))
		}
		return
	}
	if m := batchPath.FindStringSubmatch(r.URL.Path); m != nil {
		if r.Method == "POST" && m[2] == "" {
			s.createVertexBatch(w, r, m[1])
			return
		}
		if r.Method == "GET" && m[2] != "" {
			s.getVertexBatch(w, r, m[1]+"/batchPredictionJobs/"+m[2])
			return
		}
		if r.Method == "GET" {
			s.listVertexBatches(w, r, m[1])
			return
		}
	}
	writeJSON(w, 404, json.RawMessage(geminiErr(404, "no route "+r.Method+" "+r.URL.Path)))
}

func (s *Server) createVertexBatch(w http.ResponseWriter, r *http.Request, parent string) {
	var q map[string]any
	if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
		writeJSON(w, 400, json.RawMessage(geminiErr(400, "bad json")))
		return
	}
	in, _ := q["inputConfig"].(map[string]any)
	src, _ := in["gcsSource"].(map[string]any)
	uris, _ := src["uris"].([]any)
	out, _ := q["outputConfig"].(map[string]any)
	dst, _ := out["gcsDestination"].(map[string]any)
	prefix, _ := dst["outputUriPrefix"].(string)
	if len(uris) != 1 || prefix == "" || in["instancesFormat"] != "jsonl" {
		writeJSON(w, 400, json.RawMessage(geminiErr(400, "want one jsonl gcsSource uri and a gcsDestination")))
		return
	}
	model, _ := q["model"].(string)
	b := &batch{id: parent + "/batchPredictionJobs/" + strings.TrimPrefix(s.newID("job"), "job-"),
		input: uris[0].(string), prefix: prefix, model: model, created: q}
	s.addBatch(b)
	writeJSON(w, 200, vertexJob(b, "JOB_STATE_PENDING"))
}

// displayNameFilter is the one list filter the fake understands:
// display_name="X" (the value a JSON string).
var displayNameFilter = regexp.MustCompile(`^display_name\s*=\s*(".*")$`)

// listVertexBatches serves batchPredictionJobs.list; its page token is the
// name of the last job of the page before.
func (s *Server) listVertexBatches(w http.ResponseWriter, r *http.Request, parent string) {
	q := r.URL.Query()
	keep := func(b *batch) bool { return strings.HasPrefix(b.id, parent+"/") }
	if f := q.Get("filter"); f != "" {
		m := displayNameFilter.FindStringSubmatch(f)
		var want string
		if m == nil || json.Unmarshal([]byte(m[1]), &want) != nil {
			writeJSON(w, 400, json.RawMessage(geminiErr(400, "unsupported filter "+f)))
			return
		}
		keep = func(b *batch) bool { return strings.HasPrefix(b.id, parent+"/") && b.created["displayName"] == want }
	}
	size, _ := strconv.Atoi(q.Get("pageSize"))
	page, more := s.listBatches(q.Get("pageToken"), size, keep)
	jobs := []any{}
	for _, b := range page {
		state := "JOB_STATE_RUNNING"
		if b.output != "" {
			state = "JOB_STATE_SUCCEEDED"
		}
		jobs = append(jobs, vertexJob(b, state))
	}
	resp := map[string]any{"batchPredictionJobs": jobs}
	if more {
		resp["nextPageToken"] = page[len(page)-1].id
	}
	writeJSON(w, 200, resp)
}

func vertexJob(b *batch, state string) map[string]any {
	j := map[string]any{}
	for k, v := range b.created {
		j[k] = v
	}
	j["name"], j["state"], j["createTime"] = b.id, state, time.Now().UTC().Format(time.RFC3339)
	if b.output != "" {
		j["outputInfo"] = map[string]any{"gcsOutputDirectory": b.output}
	}
	return j
}

func (s *Server) getVertexBatch(w http.ResponseWriter, r *http.Request, id string) {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	s.mu.Lock()
	b, ok := s.batches[id]
	if ok {
		b.polls++
	}
	s.mu.Unlock()
	if !ok {
		writeJSON(w, 404, json.RawMessage(geminiErr(404, "no such job "+id)))
		return
	}
	if s.OnPoll != nil {
		s.OnPoll(b.id, b.polls)
	}
	if b.polls <= s.BatchPolls {
		writeJSON(w, 200, vertexJob(b, "JOB_STATE_RUNNING"))
		return
	}
	if b.output == "" {
		if err := s.runVertexBatch(r.Context(), b); err != nil {
			writeJSON(w, 200, map[string]any{"name": b.id, "state": "JOB_STATE_FAILED",
				"error": map[string]any{"code": 3, "message": err.Error()}})
			return
		}
	}
	writeJSON(w, 200, vertexJob(b, "JOB_STATE_SUCCEEDED"))
}

// runVertexBatch reads the request JSONL from the store and writes
// predictions.jsonl under the output prefix, as Vertex does.
func (s *Server) runVertexBatch(ctx context.Context, b *batch) error {
	key, err := s.storeKey(b.input)
	if err != nil {
		return err
	}
	rc, err := s.Store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	var out bytes.Buffer
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	model := b.model[strings.LastIndex(b.model, "/")+1:]
	for sc.Scan() {
		var line map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return err
		}
		var id string
		json.Unmarshal(line["key"], &id)
		if s.BatchFail != nil && s.BatchFail(id) {
			line["status"], _ = json.Marshal("INTERNAL: item failed")
		} else {
			var q genRequest
			if err := json.Unmarshal(line["request"], &q); err != nil {
				return err
			}
			a := s.Answer(q.call(model))
			if a.Output == 0 {
				a.Output = len(a.Text)/4 + 1
			}
			if a.Input == 0 {
				a.Input = 10
			}
			line["response"], _ = json.Marshal(genResponse(model, a))
			line["status"], _ = json.Marshal("")
		}
		b, _ := json.Marshal(line)
		out.Write(append(b, '\n'))
	}
	dir := strings.TrimSuffix(b.prefix, "/") + "/prediction-model-2026-01-01T00:00:00.000000Z"
	okey, err := s.storeKey(dir + "/predictions.jsonl")
	if err != nil {
		return err
	}
	if _, err := s.Store.Put(ctx, okey, &out, storagePut); err != nil {
		return err
	}
	b.output = dir
	return nil
}
