package teacher

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/auth"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/teacher/teachertest"
)

// testConfig is a config for a fake endpoint: fast retries, no pauses that
// matter on a wall clock.
func testConfig(provider, baseURL string) Config {
	c := DefaultConfig()
	c.Provider, c.Model, c.BaseURL = provider, "test-model", baseURL
	c.APIKeyEnv = "STATJOB_TEST_TEACHER_KEY"
	if provider == ProviderVertex {
		c.APIKeyEnv, c.Project, c.Location = "", "proj", "us-central1"
	}
	c.Timeout = 5 * time.Second
	c.Retry.BaseDelay, c.Retry.MaxDelay = time.Millisecond, 5*time.Millisecond
	c.Limits.Concurrency = 8
	c.Batch.PollInterval = time.Millisecond
	c.Batch.MinItems = 1
	return c
}

func localStore(t testing.TB) storage.Store {
	t.Helper()
	s, err := storage.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type staticToken struct{}

func (staticToken) Token(context.Context) (*auth.Token, error) {
	return &auth.Token{Value: "test-token", Type: "Bearer", Expiry: time.Now().Add(time.Hour)}, nil
}

// logBuffer collects log lines (all levels) for inspection.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// newTeacher builds a Teacher against a fake server of the config's provider.
func newTeacher(t testing.TB, cfg Config, store storage.Store, logs *logBuffer) *Teacher {
	t.Helper()
	opts := &Options{}
	if logs != nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.Provider == ProviderVertex {
		opts.GoogleCredentials = auth.NewCredentials(&auth.CredentialsOptions{TokenProvider: staticToken{}})
	}
	if store == nil {
		cfg.Cache = false
	}
	tc, err := New(context.Background(), cfg, store, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// fake starts the fake server for a provider and returns it with a config
// pointing at it.
func fake(t testing.TB, provider string) (*teachertest.Server, Config) {
	t.Helper()
	t.Setenv("STATJOB_TEST_TEACHER_KEY", "sk-test-SECRETKEY-0123456789")
	if provider == ProviderOpenAI {
		s := teachertest.NewOpenAI(t)
		return s, testConfig(provider, s.URL+"/v1")
	}
	s := teachertest.NewGemini(t)
	return s, testConfig(provider, s.URL)
}

func userReq(text string, sample int) *Request {
	return &Request{Messages: []Message{{Role: User, Content: text}}, Params: Params{MaxTokens: 100}, Sample: sample}
}

var providers = []string{ProviderOpenAI, ProviderGemini, ProviderVertex}
