package teacher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/statjob/statjob/teacher/teachertest"
)

// Each provider through its real SDK against a server speaking its wire
// format: messages, parameters, schema, usage, finish reasons.
func TestProvidersWire(t *testing.T) {
	for _, p := range providers {
		t.Run(p, func(t *testing.T) {
			srv, cfg := fake(t, p)
			srv.Answer = func(c teachertest.Call) teachertest.Answer {
				a := teachertest.Answer{Text: fmt.Sprintf("sys=%s|n=%d|max=%d|schema=%v|last=%s",
					c.System, len(c.Messages), c.MaxTokens, c.Schema, c.Last()), Input: 11, Output: 5}
				if p == ProviderOpenAI {
					a.Output = 7
				} else {
					a.Thoughts = 2 // Gemini bills thinking as output
				}
				return a
			}
			tc := newTeacher(t, cfg, nil, nil)
			seed := int64(40)
			req := &Request{Messages: []Message{{System, "be brief"}, {User, "q1"}, {Assistant, "a1"}, {User, "q2"}},
				Params: Params{MaxTokens: 50, Seed: &seed}, Schema: map[string]any{"type": "object"}, Sample: 2}
			r, err := tc.Call(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			want := "sys=be brief|n=3|max=50|schema=true|last=q2"
			if r.Text != want || r.Usage != (Usage{11, 7}) || r.Finish != FinishStop {
				t.Fatalf("reply %+v, want text %q usage {11 7} finish stop", r, want)
			}
			seen := srv.Seen()
			if len(seen) != 1 || seen[0].Seed == nil || *seen[0].Seed != 42 {
				t.Fatalf("seed sent %v, want seed+sample = 42", seen[0].Seed)
			}
			if seen[0].Messages[1].Role != "assistant" {
				t.Fatalf("assistant turn sent as %q", seen[0].Messages[1].Role)
			}
			// Each provider reaches its own endpoint with its own credentials:
			// the key from the variable for the Gemini API and OpenAI, the
			// Google token (never the key) on Vertex.
			const key = "sk-test-SECRETKEY-0123456789"
			h, path := seen[0].Header, seen[0].Path
			var ok bool
			switch p {
			case ProviderOpenAI:
				ok = path == "/v1/chat/completions" && h.Get("Authorization") == "Bearer "+key
			case ProviderGemini:
				ok = strings.HasSuffix(path, "/models/test-model:generateContent") && !strings.Contains(path, "/projects/") &&
					h.Get("x-goog-api-key") == key
			case ProviderVertex:
				ok = strings.HasSuffix(path, "/projects/proj/locations/us-central1/publishers/google/models/test-model:generateContent") &&
					h.Get("Authorization") == "Bearer test-token" && h.Get("x-goog-api-key") == ""
			}
			if !ok {
				t.Fatalf("%s request to %s with headers %v", p, path, h)
			}
		})
	}
}

func TestProvidersFaults(t *testing.T) {
	for _, p := range providers {
		t.Run(p, func(t *testing.T) {
			ctx := context.Background()
			t.Run("5xx and malformed wire replies are retried", func(t *testing.T) {
				srv, cfg := fake(t, p)
				tc := newTeacher(t, cfg, nil, nil)
				srv.Fail(teachertest.Fault{Status: 500}, teachertest.Fault{Status: 503},
					teachertest.Fault{Body: "{not json"})
				r, err := tc.Call(ctx, userReq("hello", 0))
				if err != nil || r.Text != "hello" {
					t.Fatalf("got %v, %v; want hello after retries", r, err)
				}
				if srv.Calls() != 4 || tc.Stats().Retries != 3 {
					t.Fatalf("calls %d retries %d, want 4 and 3", srv.Calls(), tc.Stats().Retries)
				}
			})
			t.Run("429 honours Retry-After and is retried", func(t *testing.T) {
				srv, cfg := fake(t, p)
				tc := newTeacher(t, cfg, nil, nil)
				srv.Fail(teachertest.Fault{Status: 429, Header: map[string]string{"retry-after-ms": "1"}})
				if _, err := tc.Call(ctx, userReq("x", 0)); err != nil {
					t.Fatal(err)
				}
				if st := tc.Stats(); st.RateLimited != 1 || srv.Calls() != 2 {
					t.Fatalf("rate limited %d calls %d, want 1 and 2", st.RateLimited, srv.Calls())
				}
			})
			t.Run("Retry-After reaches the pacer through the SDK", func(t *testing.T) {
				srv, cfg := fake(t, p)
				cfg.Retry.RateLimited = 0 // fail on the first 429, to look at it
				tc := newTeacher(t, cfg, nil, nil)
				srv.Fail(teachertest.Fault{Status: 429, RetryAfter: "7"})
				_, err := tc.Call(ctx, userReq("x", 0))
				var ae *APIError
				if !errors.As(err, &ae) || ae.Status != 429 || ae.RetryAfter != 7*time.Second {
					t.Fatalf("err %#v, want a 429 with RetryAfter 7s", err)
				}
			})
			for _, status := range []int{400, 401, 403} {
				t.Run(fmt.Sprintf("%d fails at once", status), func(t *testing.T) {
					srv, cfg := fake(t, p)
					tc := newTeacher(t, cfg, nil, nil)
					srv.Fail(teachertest.Fault{Status: status})
					_, err := tc.Call(ctx, userReq("x", 0))
					var ae *APIError
					if !errors.Is(err, ErrRejected) || !errors.As(err, &ae) || ae.Status != status {
						t.Fatalf("err %v, want a rejected APIError %d", err, status)
					}
					if srv.Calls() != 1 {
						t.Fatalf("%d calls, want 1 (no retry)", srv.Calls())
					}
					want := map[string]string{ProviderOpenAI: "$STATJOB_TEST_TEACHER_KEY", ProviderGemini: "$STATJOB_TEST_TEACHER_KEY",
						ProviderVertex: "Google credentials given in Options, project proj"}[p]
					if status != 400 && !strings.Contains(err.Error(), want) {
						t.Fatalf("err %v does not say the credentials came from %s", err, want)
					}
				})
			}
			t.Run("a hung attempt times out and is retried", func(t *testing.T) {
				srv, cfg := fake(t, p)
				cfg.Timeout = 300 * 1e6 // 300ms: the hang ends by the client's deadline, not by waiting for it
				tc := newTeacher(t, cfg, nil, nil)
				srv.Fail(teachertest.Fault{Hang: true})
				r, err := tc.Call(ctx, userReq("late", 0))
				if err != nil || r.Text != "late" {
					t.Fatalf("got %v, %v", r, err)
				}
				if tc.Stats().Retries != 1 {
					t.Fatalf("retries %d, want 1", tc.Stats().Retries)
				}
			})
			t.Run("a reset after a 5xx is reported as a reset", func(t *testing.T) {
				srv, cfg := fake(t, p)
				cfg.Retry.Attempts = 2
				tc := newTeacher(t, cfg, nil, nil)
				srv.Fail(teachertest.Fault{Status: 502}, teachertest.Fault{Reset: true})
				_, err := tc.Call(ctx, userReq("x", 0))
				var ae *APIError
				if err == nil || errors.As(err, &ae) || srv.Calls() != 2 {
					t.Fatalf("err %v after %d calls; want the reset, not the earlier HTTP status", err, srv.Calls())
				}
			})
			t.Run("retries give up after the attempts", func(t *testing.T) {
				srv, cfg := fake(t, p)
				cfg.Retry.Attempts = 3
				tc := newTeacher(t, cfg, nil, nil)
				srv.Fail(teachertest.Fault{Status: 500}, teachertest.Fault{Status: 500}, teachertest.Fault{Status: 500})
				_, err := tc.Call(ctx, userReq("x", 0))
				if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") {
					t.Fatalf("err %v", err)
				}
			})
			t.Run("truncated replies are reported, not parsed", func(t *testing.T) {
				srv, cfg := fake(t, p)
				srv.Answer = func(c teachertest.Call) teachertest.Answer {
					return teachertest.Answer{Text: `{"question": "half`, Truncated: true}
				}
				tc := newTeacher(t, cfg, nil, nil)
				res := Generate(ctx, tc, userReq("x", 0), ParseQuestion)
				if !errors.Is(res.Err, ErrTruncated) || res.Raw != `{"question": "half` || res.Reasks != 0 {
					t.Fatalf("result %+v, want ErrTruncated with the raw text and no re-ask", res)
				}
				if tc.Stats().Truncated != 1 {
					t.Fatal("truncation not counted")
				}
			})
		})
	}
}

// The key never reaches an error or a log line, even when a hostile or
// buggy server echoes it back.
func TestNoKeyInErrorsOrLogs(t *testing.T) {
	const key = "sk-test-SECRETKEY-0123456789"
	for _, p := range []string{ProviderOpenAI, ProviderGemini} {
		t.Run(p, func(t *testing.T) {
			srv, cfg := fake(t, p)
			var logs logBuffer
			store := localStore(t)
			tc := newTeacher(t, cfg, store, &logs)
			echo := func(st int) teachertest.Fault {
				return teachertest.Fault{Status: st, Body: `{"error": {"code": "` + fmt.Sprint(st) +
					`", "message": "bad key ` + key + `", "status": "X"}}`}
			}
			srv.Fail(echo(401))
			_, err1 := tc.Call(context.Background(), userReq("a", 0))
			srv.Fail(echo(500), echo(500), echo(500), echo(500), echo(500))
			_, err2 := tc.Call(context.Background(), userReq("b", 0))
			srv.Fail(teachertest.Fault{Body: "garbage " + key})
			srv.Answer = func(c teachertest.Call) teachertest.Answer { return teachertest.Answer{Text: "no tags"} }
			res := Generate(context.Background(), tc, userReq("c", 0), ParseQuestion)
			for i, err := range []error{err1, err2} {
				if err == nil {
					t.Fatalf("call %d: no error", i)
				}
				if strings.Contains(err.Error(), key) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), key) {
					t.Fatalf("key in error: %v", err)
				}
				if !strings.Contains(err.Error(), "[redacted]") {
					t.Fatalf("error lost its message: %v", err)
				}
			}
			if res.Err == nil || strings.Contains(res.Err.Error(), key) {
				t.Fatalf("result error %v", res.Err)
			}
			if strings.Contains(logs.String(), key) {
				t.Fatalf("key in logs:\n%s", logs.String())
			}
		})
	}
	t.Run("config", func(t *testing.T) {
		c := DefaultConfig()
		c.APIKeyEnv = key
		err := c.Validate()
		if err == nil || strings.Contains(err.Error(), key) {
			t.Fatalf("Validate with a pasted key: %v", err)
		}
	})
}
