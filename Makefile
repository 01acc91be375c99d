# statjob: `make demo` runs STAT on the demo world (statjob demo), `make test` runs every test.
GO ?= go
# Packages with concurrency run under the race detector.
RACE_PKGS := ./storage/... ./job/... ./teacher/...

.PHONY: build demo test test-deps
build:
	$(GO) build -o bin/statjob .

demo: build
	./bin/statjob demo

test-deps:
	./scripts/test-deps.sh

# The race detector covers the packages with concurrency and every stage.
# The stages run GoMLX's SimpleGo executor one op at a time there
# (ops_sequential): its parallel op scheduler (v0.26.0) hands buffers between
# goroutines without synchronisation (backends/simplego/exec.go reads use
# counts outside its lock), which the detector reports on its own. The
# parallel scheduler, the CPU default, runs in every other package's tests and
# in the demo's end-to-end test.
# STATJOB_TEST_STRICT=1 turns "tool not installed" skips into failures.
test: test-deps
	$(GO) vet ./...
	test -z "$$(gofmt -l .)" || (gofmt -l . && exit 1)
	STATJOB_TEST_STRICT=1 $(GO) test -race -timeout 40m $(RACE_PKGS)
	STATJOB_TEST_STRICT=1 GOMLX_BACKEND=go:ops_sequential $(GO) test -race -timeout 40m ./stages/...
	STATJOB_TEST_STRICT=1 $(GO) test -timeout 40m $$($(GO) list ./... | grep -v -E '/(storage|job|teacher|stages)(/|$$)')
