# Flasher. Every target installs what it needs; pinned versions live in go.mod and tools/go.mod.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)
export GONOSUMDB := github.com/bmc-toolbox,github.com/metal-toolbox
# Pure Go everywhere (modernc SQLite needs no cgo): every binary is static and runs on any base.
export CGO_ENABLED := 0
PROTOVALIDATE_VERSION := v0.14.0
PKGS := ./...

.PHONY: debian-packages all build run demo test test-short generate generate-check lint tools proto-deps bench clean fuzz cover

all: build

# buf, grpcurl and staticcheck are pinned in tools/go.mod (kept apart so their dependencies do not
# touch the project's); the protoc plugins are pinned in go.mod's tool block.
$(BIN)/.tools-stamp: tools/go.mod tools/go.sum
	@mkdir -p $(BIN)
	cd tools && $(GO) build -o $(BIN)/ github.com/bufbuild/buf/cmd/buf github.com/fullstorydev/grpcurl/cmd/grpcurl honnef.co/go/tools/cmd/staticcheck github.com/pseudomuto/protoc-gen-doc/cmd/protoc-gen-doc
	@touch $@

$(BIN)/.plugins-stamp: go.mod go.sum
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc
	@touch $@

# The Python client is generated with Debian's protoc and grpc_python_plugin, whose versions match
# Debian's python3-protobuf and python3-grpcio (used by its test). Installed only when missing.
DEBIAN_PACKAGES := protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf
debian-packages:
	@if ! command -v protoc >/dev/null || ! command -v grpc_python_plugin >/dev/null || \
	   ! /usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null; then \
	  echo "installing $(DEBIAN_PACKAGES)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DEBIAN_PACKAGES); \
	fi

# grpcurl alone, for `make run`: its banner and the README's tour use it.
$(BIN)/grpcurl: tools/go.mod tools/go.sum
	@mkdir -p $(BIN)
	cd tools && $(GO) build -o $(BIN)/ github.com/fullstorydev/grpcurl/cmd/grpcurl

## tools: install the pinned buf, protoc plugins, grpcurl and staticcheck into bin/, and the
## Debian packages the Python client needs.
tools: $(BIN)/.tools-stamp $(BIN)/.plugins-stamp debian-packages

## proto-deps: copy buf/validate/validate.proto from the pinned Go module (no BSR needed).
proto-deps:
	@dir=$$($(GO) mod download -json github.com/bufbuild/protovalidate@$(PROTOVALIDATE_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
	test -n "$$dir" || { echo "cannot download github.com/bufbuild/protovalidate@$(PROTOVALIDATE_VERSION)"; exit 1; }; \
	mkdir -p third_party/protovalidate/buf/validate; \
	install -m 0644 "$$dir/proto/protovalidate/buf/validate/validate.proto" third_party/protovalidate/buf/validate/validate.proto

## generate: regenerate gen/ from proto/ with the pinned buf and local plugins.
generate: tools proto-deps
	buf format -w proto
	buf lint
	rm -rf gen/flasher
	buf generate
	buf generate --template buf.gen.doc.yaml
	rm -rf clients/python/flasher_api
	buf generate --template buf.gen.python.yaml

## generate-check: fail when gen/ or the proto formatting is stale.
generate-check: generate
	@git diff --exit-code -- gen proto docs/api.md clients/python || { echo "gen/, proto/, docs/api.md or clients/python is stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- gen proto docs/api.md clients/python)" || { git status --porcelain -- gen proto docs/api.md clients/python; echo "untracked generated files"; exit 1; }

## breaking: check the API for breaking changes against main.
breaking: tools proto-deps
	@if git rev-parse --verify -q origin/main >/dev/null; then ref=origin/main; else ref=main; fi; \
	if git cat-file -e $$ref:proto 2>/dev/null; then \
	  tmp=$$(mktemp -d); git archive $$ref proto | tar -x -C $$tmp; \
	  mkdir -p $$tmp/third_party && cp -r third_party/protovalidate $$tmp/third_party/; cp buf.yaml $$tmp/; \
	  buf breaking --against $$tmp; rc=$$?; rm -rf $$tmp; exit $$rc; \
	else echo "no proto on $$ref yet: nothing to compare"; fi

## build: build every binary into bin/.
build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/flasher-server ./server
	$(GO) build -o $(BIN)/flasher-sim ./sim
	CGO_ENABLED=0 $(GO) build -o $(BIN)/flasher-hosttool ./sim/hosttools/cmd/flasher-hosttool
	@for d in ctl:flasherctl agent:flasher-agent; do \
	  if ls $${d%%:*}/*.go >/dev/null 2>&1; then echo "$(GO) build -o $(BIN)/$${d##*:} ./$${d%%:*}"; $(GO) build -o $(BIN)/$${d##*:} ./$${d%%:*} || exit 1; fi; \
	done

## run: run flasher-server on the embedded defaults (SQLite, file inventory, simulated fleet).
run: build $(BIN)/grpcurl
	./scripts/run.sh

## demo: build everything, start a simulated fleet with agents and flasher-server, and walk
## through flasherctl (plan, refusal, out-of-band and in-band installs, an injected failure).
demo:
	./scripts/demo.sh

## test: run every test, the PostgreSQL ones against a throwaway PostgreSQL 15 that
## scripts/test-postgres.sh starts (installing the Debian package when missing) and stops.
test: tools
	./scripts/test-postgres.sh $(GO) test -count=1 -timeout 20m $(PKGS)

## lint: go vet, gofmt, staticcheck, buf lint and buf format.
lint: tools proto-deps
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); test -z "$$out" || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	staticcheck $(PKGS)
	buf lint
	buf format -d --exit-code proto

## bench: run the benchmark programs; each prints a table with its baseline.
## bench/replicas measures PostgreSQL: the programs run beside a throwaway PostgreSQL 15.
bench: build
	@./scripts/test-postgres.sh sh -c 'for d in bench/*/; do [ "$$d" = bench/internal/ ] && continue; echo; echo "## $$d"; $(GO) run ./$$d || exit 1; done'

cover:
	./scripts/test-postgres.sh $(GO) test -count=1 -coverprofile=cover.out $(PKGS) && $(GO) tool cover -func=cover.out | tail -1

clean:
	rm -rf $(BIN) third_party cover.out var
