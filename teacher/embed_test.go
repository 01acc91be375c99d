package teacher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/auth"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/teacher/teachertest"
)

const embedKey = "sk-test-EMBEDKEY-0123456789"

// embedFake starts the fake embeddings endpoint and a config for provider
// pointing at it.
func embedFake(t *testing.T, provider string) (*teachertest.EmbedServer, EmbedConfig) {
	t.Helper()
	t.Setenv("STATJOB_TEST_EMBED_KEY", embedKey)
	srv := teachertest.NewEmbed(t)
	c := DefaultEmbedConfig()
	c.Provider, c.Model, c.APIKeyEnv, c.BaseURL = provider, "embed-model", "STATJOB_TEST_EMBED_KEY", srv.URL
	switch provider {
	case ProviderOpenAI:
		c.BaseURL += "/v1"
	case ProviderVertex:
		c.APIKeyEnv, c.Project, c.Location = "", "proj", "us-central1"
	}
	c.BatchSize, c.Concurrency, c.Timeout = 3, 4, 5*time.Second
	c.Retry.BaseDelay, c.Retry.MaxDelay = time.Millisecond, 2*time.Millisecond
	return srv, c
}

func newEmbedder(t *testing.T, c EmbedConfig) Embedder {
	t.Helper()
	opts := &Options{}
	if c.Provider == ProviderVertex {
		opts.GoogleCredentials = auth.NewCredentials(&auth.CredentialsOptions{TokenProvider: staticToken{}})
	}
	e, err := NewEmbedder(context.Background(), c, opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func embedTexts(n int) []string {
	var ts []string
	for i := range n {
		ts = append(ts, fmt.Sprintf("question %d: what is %d + %d?", i, i, 2*i))
	}
	return ts
}

var embedProviders = []string{ProviderOpenAI, ProviderGemini, ProviderVertex}

// Each provider through its real SDK: batches of batch_size, the vectors
// back in input order (the OpenAI fake answers in reverse and the client
// must place them by index), the key in the provider's header, the
// dimensions asked for.
func TestEmbedWire(t *testing.T) {
	for _, p := range embedProviders {
		t.Run(p, func(t *testing.T) {
			srv, c := embedFake(t, p)
			c.Dimensions = 6
			texts := embedTexts(8)
			got, err := newEmbedder(t, c).Embed(context.Background(), texts)
			if err != nil {
				t.Fatal(err)
			}
			for i, text := range texts {
				if want := teachertest.HashVector(text)[:6]; !slices.Equal(got[i], want) {
					t.Fatalf("text %d: vector %v, want %v", i, got[i], want)
				}
			}
			reqs := srv.Requests()
			var sizes []int
			var sent []string
			for _, r := range reqs {
				sizes = append(sizes, len(r.Texts))
				sent = append(sent, r.Texts...)
				if r.Dimensions != 6 {
					t.Errorf("request asked for %d dimensions, want 6", r.Dimensions)
				}
				switch p {
				case ProviderOpenAI:
					if r.Path != "/v1/embeddings" || r.Model != "embed-model" || r.Header.Get("Authorization") != "Bearer "+embedKey {
						t.Errorf("openai request %s model %s auth %q", r.Path, r.Model, r.Header.Get("Authorization"))
					}
				case ProviderGemini:
					if !strings.HasSuffix(r.Path, "/models/embed-model:batchEmbedContents") || r.Header.Get("x-goog-api-key") != embedKey {
						t.Errorf("gemini request %s key %q", r.Path, r.Header.Get("x-goog-api-key"))
					}
				case ProviderVertex:
					if !strings.HasSuffix(r.Path, "/projects/proj/locations/us-central1/publishers/google/models/embed-model:predict") ||
						r.Header.Get("Authorization") != "Bearer test-token" || r.Header.Get("x-goog-api-key") != "" {
						t.Errorf("vertex request %s headers %v", r.Path, r.Header)
					}
				}
			}
			slices.Sort(sizes)
			slices.Sort(sent)
			want := slices.Clone(texts)
			slices.Sort(want)
			if !slices.Equal(sizes, []int{2, 3, 3}) || !slices.Equal(sent, want) {
				t.Errorf("batches of %v sending %v; want 2, 3, 3 sending each text once", sizes, sent)
			}
			if id := newEmbedder(t, c).ID(); id != p+":embed-model:6" || strings.Contains(id, embedKey) {
				t.Errorf("ID %q", id)
			}
		})
	}
}

// Vertex serves the newer Gemini embedding models through embedContent,
// one text per request, whatever batch_size says.
func TestEmbedVertexOneTextModels(t *testing.T) {
	srv, c := embedFake(t, ProviderVertex)
	c.Model, c.Dimensions = "gemini-embedding-2", 4
	texts := embedTexts(3)
	got, err := newEmbedder(t, c).Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range texts {
		if !slices.Equal(got[i], teachertest.HashVector(text)[:4]) {
			t.Errorf("text %d: %v", i, got[i])
		}
	}
	for _, r := range srv.Requests() {
		if len(r.Texts) != 1 || !strings.HasSuffix(r.Path, "/models/gemini-embedding-2:embedContent") || r.Dimensions != 4 {
			t.Errorf("request %s with %d texts, %d dimensions", r.Path, len(r.Texts), r.Dimensions)
		}
	}
	if len(srv.Requests()) != 3 {
		t.Errorf("%d requests, want 3", len(srv.Requests()))
	}
}

// The cache: a second embedder over the same store asks nothing, a text
// asked twice is embedded once, and only the texts not yet cached are sent.
func TestEmbedCache(t *testing.T) {
	for _, p := range embedProviders {
		t.Run(p, func(t *testing.T) {
			ctx := context.Background()
			srv, c := embedFake(t, p)
			st := localStore(t)
			texts := embedTexts(5)
			first, err := NewEmbedCache(newEmbedder(t, c), st, 2, nil).Embed(ctx, texts[:3])
			if err != nil {
				t.Fatal(err)
			}
			if srv.Texts() != 3 || len(srv.Requests()) != 2 {
				t.Fatalf("first run sent %d texts in %d requests, want 3 in 2 (chunk 2)", srv.Texts(), len(srv.Requests()))
			}
			// A restart: texts 0..2 come from the store, 3 and 4 (4 asked
			// twice) are embedded once.
			cache := NewEmbedCache(newEmbedder(t, c), st, 10, nil)
			ask := append(slices.Clone(texts), texts[4], texts[0])
			got, err := cache.Embed(ctx, ask)
			if err != nil {
				t.Fatal(err)
			}
			for i, text := range ask {
				if !slices.Equal(got[i], teachertest.HashVector(text)) {
					t.Fatalf("text %d: vector %v, want %v", i, got[i], teachertest.HashVector(text))
				}
			}
			for i := range first {
				if !slices.Equal(first[i], got[i]) {
					t.Errorf("cached vector %d differs", i)
				}
			}
			if srv.Texts() != 5 || cache.Hits() != 3 || cache.Misses() != 2 {
				t.Errorf("server embedded %d texts in all (want 5); hits %d misses %d (want 3, 2)", srv.Texts(), cache.Hits(), cache.Misses())
			}
			before := srv.Texts()
			if _, err := NewEmbedCache(newEmbedder(t, c), st, 10, nil).Embed(ctx, ask); err != nil {
				t.Fatal(err)
			}
			if srv.Texts() != before {
				t.Errorf("a fully cached run embedded %d texts", srv.Texts()-before)
			}
			// Another model is another cache key.
			c.Model = "other-model"
			if _, err := NewEmbedCache(newEmbedder(t, c), st, 10, nil).Embed(ctx, texts[:1]); err != nil {
				t.Fatal(err)
			}
			if srv.Texts() != before+1 {
				t.Errorf("another model reused the cache")
			}
		})
	}
}

// A damaged cache entry is embedded again and replaced.
func TestEmbedCacheDamagedEntry(t *testing.T) {
	ctx := context.Background()
	srv, c := embedFake(t, ProviderOpenAI)
	st := localStore(t)
	e := newEmbedder(t, c)
	key := embedObject(EmbedCacheKey(e.ID(), "q"))
	if _, err := st.Put(ctx, key, strings.NewReader("{not json"), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := NewEmbedCache(e, st, 10, nil).Embed(ctx, []string{"q"})
		if err != nil || !slices.Equal(got[0], teachertest.HashVector("q")) {
			t.Fatalf("got %v, %v", got, err)
		}
	}
	if srv.Texts() != 1 {
		t.Errorf("embedded %d times, want once (then from the replaced entry)", srv.Texts())
	}
}

func TestEmbedRetriesAndRefusals(t *testing.T) {
	for _, p := range embedProviders {
		t.Run(p, func(t *testing.T) {
			ctx := context.Background()
			srv, c := embedFake(t, p)
			e := newEmbedder(t, c)
			srv.Fail(teachertest.Fault{Status: 500}, teachertest.Fault{Status: 429, Header: map[string]string{"retry-after-ms": "1"}},
				teachertest.Fault{Body: "{not json"})
			got, err := e.Embed(ctx, []string{"a", "b"})
			if err != nil || len(got) != 2 || !slices.Equal(got[1], teachertest.HashVector("b")) {
				t.Fatalf("after retries: %v, %v", got, err)
			}

			// 400 and 401 fail at once, naming the provider and status,
			// without the key even when the server echoes it (Vertex takes
			// no key: its token comes from the credentials).
			for _, status := range []int{400, 401} {
				n := len(srv.Requests())
				srv.Fail(teachertest.Fault{Status: status, Body: `{"error": {"message": "bad key ` + embedKey + `", "code": 400}}`})
				_, err = e.Embed(ctx, []string{"a"})
				var ae *APIError
				if !errors.As(err, &ae) || ae.Status != status || !errors.Is(err, ErrRejected) {
					t.Fatalf("status %d: err %v", status, err)
				}
				if strings.Contains(err.Error(), embedKey) && p != ProviderVertex || !strings.Contains(err.Error(), p) {
					t.Errorf("error %q leaks the key or does not name %s", err, p)
				}
				if len(srv.Requests()) != n {
					t.Errorf("a refused request was retried")
				}
			}

			// Attempts run out on 5xx.
			c.Retry.Attempts = 2
			srv.Fail(teachertest.Fault{Status: 503}, teachertest.Fault{Status: 503})
			if _, err := newEmbedder(t, c).Embed(ctx, []string{"a"}); err == nil || !strings.Contains(err.Error(), "gave up after 2 attempts") {
				t.Errorf("5xx past retry.attempts: %v", err)
			}
			if _, err := e.Embed(ctx, []string{"a", " "}); err == nil || !strings.Contains(err.Error(), "text 1 is empty") {
				t.Errorf("empty text: %v", err)
			}
		})
	}
}

// Many batches in flight still come back in order.
func TestEmbedOrderUnderConcurrency(t *testing.T) {
	_, c := embedFake(t, ProviderOpenAI)
	c.BatchSize, c.Concurrency = 2, 8
	texts := embedTexts(41)
	got, err := newEmbedder(t, c).Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range texts {
		if !slices.Equal(got[i], teachertest.HashVector(text)) {
			t.Fatalf("text %d out of place", i)
		}
	}
}

func TestEmbedConfigValidate(t *testing.T) {
	for field, change := range map[string]func(*EmbedConfig){
		"provider:":         func(c *EmbedConfig) { c.Provider = "cohere" },
		"model:":            func(c *EmbedConfig) { c.Model = "" },
		"base_url:":         func(c *EmbedConfig) { c.BaseURL = "localhost:8000" },
		"api_key_env:":      func(c *EmbedConfig) { c.APIKeyEnv = "sk-pasted-key" },
		"batch_size:":       func(c *EmbedConfig) { c.BatchSize = 0 },
		"concurrency:":      func(c *EmbedConfig) { c.Concurrency = 0 },
		"dimensions:":       func(c *EmbedConfig) { c.Dimensions = -1 },
		"retry.attempts:":   func(c *EmbedConfig) { c.Retry.Attempts = 0 },
		"timeout:":          func(c *EmbedConfig) { c.Timeout = 0 },
		"project:":          func(c *EmbedConfig) { c.Provider = ProviderVertex },
		"retry.base_delay:": func(c *EmbedConfig) { c.Retry.BaseDelay = 0 },
	} {
		c := DefaultEmbedConfig()
		change(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
		if err != nil && strings.Contains(err.Error(), "sk-pasted-key") {
			t.Errorf("the error echoes a pasted key: %v", err)
		}
		if _, err := NewEmbedder(context.Background(), c, nil); err == nil {
			t.Errorf("%s: NewEmbedder took a bad config", field)
		}
	}
	c := DefaultEmbedConfig()
	if err := c.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	c.APIKeyEnv = "STATJOB_TEST_EMBED_UNSET"
	t.Setenv("STATJOB_TEST_EMBED_UNSET", "")
	if _, err := NewEmbedder(context.Background(), c, nil); err == nil || !strings.Contains(err.Error(), "api_key_env STATJOB_TEST_EMBED_UNSET") {
		t.Errorf("missing key: %v", err)
	}
}
