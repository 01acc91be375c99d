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

# The race detector covers the packages with concurrency and the stages that
# fan out teacher calls; the model-driven stages run GoMLX's SimpleGo
# executor, whose parallel scheduler (v0.26.0) trips the detector on its own:
# it reads use counts outside its lock (backends/simplego/exec.go).
# STATJOB_TEST_STRICT=1 turns "tool not installed" skips into failures.
test: test-deps
	$(GO) vet ./...
	test -z "$$(gofmt -l .)" || (gofmt -l . && exit 1)
	STATJOB_TEST_STRICT=1 $(GO) test -race -timeout 40m $(RACE_PKGS)
	STATJOB_TEST_STRICT=1 $(GO) test -race -timeout 40m -run 'Skills|Label|Diagnose|Dataset' ./stages/
	STATJOB_TEST_STRICT=1 $(GO) test -timeout 40m $$($(GO) list ./... | grep -v -E '/(storage|job|teacher)(/|$$)')
