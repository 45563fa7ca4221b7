# clustermail: the two commands a newcomer needs are `make dev` and `make test`.
GO ?= go
BIN := bin/clustermail

.PHONY: build dev test test-short fuzz vet clean

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/clustermail

# A working three-node cluster on loopback; Ctrl-C stops it.
dev: build
	./$(BIN) dev

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

# Everything CI runs: unit tests, end-to-end tests with real processes, and a
# short run of every fuzz target.
test: vet
	$(GO) test -race -timeout 25m ./...
	$(MAKE) fuzz FUZZTIME=10s

# Unit tests only (no real processes).
test-short:
	$(GO) test -short ./...

FUZZTIME ?= 60s
fuzz:
	@for t in $$($(GO) test -list '^Fuzz' ./... 2>/dev/null | grep -E '^Fuzz'); do \
	  pkg=$$(grep -rl "func $$t(" --include='*_test.go' . | head -1 | xargs dirname); \
	  echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

clean:
	rm -rf bin
