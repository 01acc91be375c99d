package storagetest

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/statjob/statjob/storage"
)

// VersitygwBinary finds the versitygw binary: $VERSITYGW, then PATH, then
// $(go env GOPATH)/bin where scripts/test-deps.sh installs it. "" if none.
func VersitygwBinary() string {
	if p := os.Getenv("VERSITYGW"); p != "" {
		return p
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = string(bytes.TrimSpace(out))
		}
	}
	if p := gopath + "/bin/versitygw"; gopath != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

var versitygwPath = sync.OnceValue(VersitygwBinary)

// Versitygw starts a versitygw S3 gateway process (POSIX backend over a
// temp folder, on a free loopback port, root keys from its environment)
// with an empty bucket, stopped when t ends, and returns the Config of a
// store on it. ok is false when the binary is not installed (t fails
// instead under STATJOB_TEST_STRICT=1).
func Versitygw(t testing.TB) (c storage.Config, ok bool) {
	t.Helper()
	bin := versitygwPath()
	if bin == "" {
		if Strict() {
			t.Fatal("versitygw not installed (run scripts/test-deps.sh)")
		}
		t.Log("versitygw not installed: its backend is left out (scripts/test-deps.sh installs it)")
		return storage.Config{}, false
	}
	addr := freeAddr(t)
	dir := t.TempDir()
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--port", addr, "posix", dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+testAccessKey, "ROOT_SECRET_ACCESS_KEY="+testSecretKey)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	waitListening(t, addr, func() string { return logs.String() })
	c = s3Config("http://" + addr)
	createBucket(t, c)
	return c, true
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitListening polls until a server process accepts connections.
func waitListening(t testing.TB, addr string, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server on %s did not start: %v\n%s", addr, err, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// createBucket makes Bucket through the S3 API (the server keeps its own
// bucket metadata).
func createBucket(t testing.TB, c storage.Config) {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(c.S3.Region))
	if err != nil {
		t.Fatal(err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(c.S3.Endpoint)
		o.UsePathStyle = true
	})
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(Bucket)}); err != nil {
		t.Fatalf("create bucket on %s: %v", c.S3.Endpoint, err)
	}
}
