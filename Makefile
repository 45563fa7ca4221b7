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
# short run of every fuzz target (20 000 inputs each, a second or two). A
# count, not a duration: Go 1.26's fuzz coordinator can fail a duration run
# with a bare "context deadline exceeded" when the time runs out under load
# (golang/go#75804, fixed in 1.27); a count never reaches that deadline.
test: vet
	$(GO) test -race -timeout 25m ./...
	cd third_party/go-smtp && $(GO) test -race .
	$(MAKE) fuzz FUZZTIME=20000x

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

# --- Container image and a three-node docker-compose cluster (deploy/) ---
# `make image` builds the binaries on this machine and wraps them in a scratch
# image: no base image is pulled. deploy/Dockerfile.multistage is the
# equivalent for machines that can pull golang:1.26.
IMAGE ?= clustermail:dev
IMAGE_CONTEXT := bin/image
COMPOSE ?= docker-compose
COMPOSE_TLS := deploy/compose-tls
COMPOSE_TLS_HOSTS := localhost 127.0.0.1 n1 n2 n3 n1.clustermail.test n2.clustermail.test n3.clustermail.test

.PHONY: image compose-up compose-down compose-tls

image:
	rm -rf $(IMAGE_CONTEXT)
	mkdir -p $(IMAGE_CONTEXT)
	mkdir -m 0700 $(IMAGE_CONTEXT)/data
	CGO_ENABLED=0 $(GO) build -trimpath -tags timetzdata -ldflags '-s -w' -o $(IMAGE_CONTEXT)/clustermail ./cmd/clustermail
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(IMAGE_CONTEXT)/healthcheck ./deploy/healthcheck
	cp deploy/Dockerfile $(IMAGE_CONTEXT)/Dockerfile
	docker build --pull=false -t $(IMAGE) $(IMAGE_CONTEXT)

# A self-signed pair for the compose cluster, made once. The key is made
# world-readable (the containers run as uid 65532): test certificates only.
compose-tls: $(COMPOSE_TLS)/cert.pem

$(COMPOSE_TLS)/cert.pem:
	mkdir -p $(COMPOSE_TLS)
	if command -v openssl >/dev/null 2>&1; then \
	  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
	    -subj '/O=clustermail dev/CN=clustermail.test' \
	    -addext "subjectAltName=$$(echo $(COMPOSE_TLS_HOSTS) | tr ' ' '\n' | sed -E 's/^([0-9.]+)$$/IP:\1/; t; s/^/DNS:/' | paste -sd, -)" \
	    -addext 'extendedKeyUsage=serverAuth' \
	    -keyout $(COMPOSE_TLS)/key.pem -out $(COMPOSE_TLS)/cert.pem; \
	else \
	  $(GO) run ./deploy/gencert -dir $(COMPOSE_TLS) $(COMPOSE_TLS_HOSTS); \
	fi
	chmod 0755 $(COMPOSE_TLS)
	chmod 0644 $(COMPOSE_TLS)/cert.pem $(COMPOSE_TLS)/key.pem

# Build the image, start n1 n2 n3 and wait until every node is healthy.
compose-up: image compose-tls
	$(COMPOSE) up -d
	@echo "waiting for the three nodes to be healthy ..."
	@for i in $$(seq 1 90); do \
	  n=$$(docker inspect -f '{{.State.Health.Status}}' $$($(COMPOSE) ps -q) 2>/dev/null | grep -c '^healthy$$'); \
	  [ "$$n" = 3 ] && { $(COMPOSE) ps; exit 0; }; sleep 2; \
	done; $(COMPOSE) ps; $(COMPOSE) logs --tail 30; echo "the cluster did not become healthy"; exit 1

# Stop the cluster and delete its volumes (all mail in it).
compose-down:
	$(COMPOSE) down -v

# Fault-injection suite against the docker-compose cluster (faults/README.md).
# Needs Docker and docker-compose; builds the image itself; about 7 minutes.
.PHONY: test-faults
test-faults:
	CLUSTERMAIL_FAULTS=1 $(GO) test -count=1 -v -timeout 20m ./faults/
