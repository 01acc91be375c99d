// Package teacher calls the teacher LLM that STAT asks what the student is
// missing: Gemini (Vertex AI or the Gemini API, through google.golang.org/genai)
// and any OpenAI-compatible endpoint (through openai-go).
//
// One call is messages + parameters (+ an optional JSON schema) + a sample
// index, answered by one reply: text, token usage and a finish reason. Every
// call passes through the same chain of wrappers around the one Model
// interface, outside in:
//
//	cache → budget → pacing → retry → provider
//
// The cache stores the raw reply under cache/teacher/<ab>/<sha256>.json in the
// job's Store as soon as it arrives, before anything parses it, so a reply is
// never paid for twice. The budget reserves input + max_tokens for each call in
// flight and settles with real usage (an attempt that timed out, whose usage
// is unknown, is charged its worst case). Pacing holds requests- and
// tokens-per-minute limits and an adaptive (AIMD) concurrency limit that
// halves on 429 and grows back as calls succeed. Retry re-sends on 5xx,
// timeouts and resets with exponential backoff and jitter; 400/401/403 fail at
// once.
//
// Above the chain, Generate parses each reply (JSON schema or tagged text),
// re-asks with the parse error when a reply does not parse, and reports
// truncated replies as ErrTruncated; Map and Each fan many calls out and
// return them in input order. Batch sends a stage's calls through the
// provider's batch API (Vertex batch prediction, OpenAI Batch API) and fills
// the same cache; Run does Batch (when the spec turns it on) and then Map.
//
// A stage's use:
//
//	t, err := teacher.New(ctx, spec.Teacher, store, &teacher.Options{Logger: log})
//	req, err := t.Request(teacher.Diagnose, data, teacher.Params{MaxTokens: 1024}, sample)
//	results := teacher.Run(ctx, t, "diagnose", reqs, teacher.ParseDiagnosis(skills))
//	fingerprint inputs: teacher.Diagnose.Hash(); manifest metrics: t.Stats()
package teacher

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Role of a message in a conversation.
type Role string

// Roles a message can have.
const (
	System    Role = "system"
	User      Role = "user"
	Assistant Role = "assistant"
)

// Message is one turn of the conversation sent to the model.
type Message struct {
	Role    Role   `json:"role"`
	Content string `json:"content"`
}

// Params are the sampling parameters of one call. Zero values mean the
// provider's default, except MaxTokens, which the chain always sends (the
// budget reserves it).
type Params struct {
	Temperature *float64 `json:"temperature,omitempty"`
	TopP        *float64 `json:"top_p,omitempty"`
	MaxTokens   int      `json:"max_tokens"`
	// Seed, when set, is sent as Seed + sample index, so samples differ and
	// each one is reproducible where the provider honours seeds.
	Seed *int64 `json:"seed,omitempty"`
}

// Request is one teacher call.
type Request struct {
	Messages []Message `json:"messages"`
	Params   Params    `json:"params"`
	// Schema is a JSON schema for the reply; nil asks for free text (or the
	// tagged text a prompt describes).
	Schema map[string]any `json:"schema,omitempty"`
	// Prompt names the template and version that produced Messages
	// ("label@2"); it enters the cache key.
	Prompt string `json:"prompt,omitempty"`
	// Sample is the sample index: three answers to one question are three
	// requests with Sample 0, 1, 2 and three replies.
	Sample int `json:"sample"`
}

// Finish says why the model stopped.
type Finish string

// Finish reasons, normalised across providers.
const (
	FinishStop   Finish = "stop"
	FinishLength Finish = "length" // truncated at max_tokens
	FinishOther  Finish = "other"  // safety, recitation, tool calls, ...
)

// Usage counts the tokens one reply was billed for.
type Usage struct {
	Input  int `json:"input"`
	Output int `json:"output"`
}

// Reply is the model's answer to one Request.
type Reply struct {
	Text   string `json:"text"`
	Usage  Usage  `json:"usage"`
	Finish Finish `json:"finish"`
	Model  string `json:"model,omitempty"`
	// Cached is true when the reply came from the response cache (nothing
	// was paid for it this time).
	Cached bool `json:"-"`
}

// Model is the one interface every provider and every wrapper implements.
type Model interface {
	Call(ctx context.Context, req *Request) (*Reply, error)
}

// ModelFunc adapts a function to Model.
type ModelFunc func(ctx context.Context, req *Request) (*Reply, error)

// Call calls f.
func (f ModelFunc) Call(ctx context.Context, req *Request) (*Reply, error) { return f(ctx, req) }

// Sentinel errors callers branch on.
var (
	// ErrTruncated: the reply stopped at max_tokens; its text is not whole.
	ErrTruncated = errors.New("reply truncated at max_tokens")
	// ErrMalformed: the reply did not parse, even after the allowed re-asks.
	ErrMalformed = errors.New("reply does not parse")
	// ErrBudget: the call would take the stage past its budget.
	ErrBudget = errors.New("teacher budget exhausted")
	// ErrRejected: the provider refused the request for good (400, 401,
	// 403, 404); retrying cannot help.
	ErrRejected = errors.New("request rejected by provider")
)

// APIError is a provider's HTTP error, with the key scrubbed from its text.
type APIError struct {
	Provider   string
	Status     int
	RetryAfter time.Duration // from Retry-After or rate-limit reset headers
	Message    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.Provider, e.Status, e.Message)
}

// Is makes errors.Is(err, ErrRejected) true for requests that cannot succeed.
func (e *APIError) Is(target error) bool {
	if target != ErrRejected {
		return false
	}
	switch e.Status {
	case 400, 401, 403, 404, 422:
		return true
	}
	return false
}
