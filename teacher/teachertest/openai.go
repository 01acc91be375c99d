package teachertest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NewOpenAI starts a fake OpenAI-compatible endpoint; its base URL for the
// SDK is URL + "/v1".
func NewOpenAI(t testing.TB) *Server { return newServer(t, routeOpenAI) }

func openaiErr(status int, msg string) string {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": "error", "code": fmt.Sprintf("http_%d", status)}})
	return string(b)
}

type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string `json:"role"`
		Content any    `json:"content"`
	} `json:"messages"`
	MaxTokens           int             `json:"max_tokens"`
	MaxCompletionTokens int             `json:"max_completion_tokens"`
	Seed                *int64          `json:"seed"`
	ResponseFormat      json.RawMessage `json:"response_format"`
}

func (q *chatRequest) call() Call {
	c := Call{Model: q.Model, MaxTokens: max(q.MaxTokens, q.MaxCompletionTokens), Seed: q.Seed,
		Schema: bytes.Contains(q.ResponseFormat, []byte("json_schema"))}
	for _, m := range q.Messages {
		text, _ := m.Content.(string)
		if parts, ok := m.Content.([]any); ok {
			for _, p := range parts {
				if pm, ok := p.(map[string]any); ok {
					t, _ := pm["text"].(string)
					text += t
				}
			}
		}
		if m.Role == "system" || m.Role == "developer" {
			c.System += text
			continue
		}
		c.Messages = append(c.Messages, Msg{Role: m.Role, Text: text})
	}
	return c
}

func chatCompletion(model string, a Answer) map[string]any {
	finish := "stop"
	if a.Truncated {
		finish = "length"
	}
	return map[string]any{
		"id": "chatcmpl-1", "object": "chat.completion", "created": time.Now().Unix(), "model": model,
		"choices": []any{map[string]any{"index": 0, "finish_reason": finish,
			"message": map[string]any{"role": "assistant", "content": a.Text}}},
		"usage": map[string]any{"prompt_tokens": a.Input, "completion_tokens": a.Output, "total_tokens": a.Input + a.Output},
	}
}

func routeOpenAI(s *Server, w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/v1")
	switch {
	case r.Method == "POST" && p == "/chat/completions":
		var q chatRequest
		if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
			writeJSON(w, 400, json.RawMessage(openaiErr(400, "bad json: "+err.Error())))
			return
		}
		a, ok := s.serve(w, r, q.call(), openaiErr)
		if ok {
			writeJSON(w, 200, chatCompletion(q.Model, a))
		}
	case r.Method == "POST" && p == "/files":
		f, _, err := r.FormFile("file")
		if err != nil {
			writeJSON(w, 400, json.RawMessage(openaiErr(400, "no file: "+err.Error())))
			return
		}
		b, _ := io.ReadAll(f)
		id := s.newID("file")
		s.mu.Lock()
		s.files[id] = b
		s.mu.Unlock()
		writeJSON(w, 200, map[string]any{"id": id, "object": "file", "bytes": len(b), "created_at": time.Now().Unix(),
			"filename": "input.jsonl", "purpose": r.FormValue("purpose"), "status": "processed"})
	case r.Method == "GET" && strings.HasPrefix(p, "/files/") && strings.HasSuffix(p, "/content"):
		id := strings.TrimSuffix(strings.TrimPrefix(p, "/files/"), "/content")
		s.mu.Lock()
		b, ok := s.files[id]
		s.mu.Unlock()
		if !ok {
			writeJSON(w, 404, json.RawMessage(openaiErr(404, "no such file")))
			return
		}
		w.Write(b)
	case r.Method == "POST" && p == "/batches":
		var q struct {
			InputFileID string            `json:"input_file_id"`
			Endpoint    string            `json:"endpoint"`
			Metadata    map[string]string `json:"metadata"`
		}
		json.NewDecoder(r.Body).Decode(&q)
		b := &batch{id: s.newID("batch"), input: q.InputFileID, metadata: q.Metadata}
		s.addBatch(b)
		writeJSON(w, 200, openaiBatch(b, "validating", nil))
	case r.Method == "GET" && p == "/batches":
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		if limit == 0 {
			limit = 20
		}
		page, more := s.listBatches(r.URL.Query().Get("after"), limit, func(*batch) bool { return true })
		data := []any{}
		for _, b := range page {
			status := "in_progress"
			if b.output != "" {
				status = "completed"
			}
			data = append(data, openaiBatch(b, status, nil))
		}
		list := map[string]any{"object": "list", "data": data, "has_more": more}
		if len(page) > 0 {
			list["first_id"], list["last_id"] = page[0].id, page[len(page)-1].id
		}
		writeJSON(w, 200, list)
	case r.Method == "GET" && strings.HasPrefix(p, "/batches/"):
		id := strings.TrimPrefix(p, "/batches/")
		s.bmu.Lock()
		defer s.bmu.Unlock()
		s.mu.Lock()
		b, ok := s.batches[id]
		if ok {
			b.polls++
		}
		s.mu.Unlock()
		if !ok {
			writeJSON(w, 404, json.RawMessage(openaiErr(404, "no such batch")))
			return
		}
		if s.OnPoll != nil {
			s.OnPoll(b.id, b.polls)
		}
		if b.polls <= s.BatchPolls {
			writeJSON(w, 200, openaiBatch(b, "in_progress", nil))
			return
		}
		if b.output == "" {
			s.runOpenAIBatch(b)
		}
		writeJSON(w, 200, openaiBatch(b, "completed", nil))
	default:
		writeJSON(w, 404, json.RawMessage(openaiErr(404, "no route "+r.Method+" "+r.URL.Path)))
	}
}

func openaiBatch(b *batch, status string, _ any) map[string]any {
	m := map[string]any{"id": b.id, "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": b.input,
		"completion_window": "24h", "status": status, "created_at": time.Now().Unix()}
	if b.output != "" {
		m["output_file_id"] = b.output
	}
	if b.metadata != nil {
		m["metadata"] = b.metadata
	}
	return m
}

// runOpenAIBatch answers every line of the batch's input file.
func (s *Server) runOpenAIBatch(b *batch) {
	s.mu.Lock()
	in := s.files[b.input]
	s.mu.Unlock()
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(in))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var line struct {
			CustomID string      `json:"custom_id"`
			Body     chatRequest `json:"body"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			continue
		}
		var res map[string]any
		if s.BatchFail != nil && s.BatchFail(line.CustomID) {
			res = map[string]any{"id": "r", "custom_id": line.CustomID, "response": map[string]any{
				"status_code": 500, "request_id": "x", "body": json.RawMessage(openaiErr(500, "internal"))}, "error": nil}
		} else {
			c := line.Body.call()
			a := s.Answer(c)
			if a.Output == 0 {
				a.Output = len(a.Text)/4 + 1
			}
			if a.Input == 0 {
				a.Input = 10
			}
			res = map[string]any{"id": "r", "custom_id": line.CustomID, "response": map[string]any{
				"status_code": 200, "request_id": "x", "body": chatCompletion(line.Body.Model, a)}, "error": nil}
		}
		json.NewEncoder(&out).Encode(res)
	}
	id := s.newID("file")
	s.mu.Lock()
	s.files[id] = out.Bytes()
	b.output = id
	s.mu.Unlock()
}
