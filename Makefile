# skyrelay — one non-recursive GNU make.
#   make            build build/skyrelay and the test tools
#   make run        install missing packages, build, run the demo (scripts/run-demo.sh)
#   make test       install missing packages, build, run unit (ASan/UBSan) + integration tests
#   make bench      data-path benchmark (scripts/bench.sh), prints msg/s, CPU us/msg, peak RSS
#   make bench-compare  skyrelay side by side with nginx grpc_pass, same load, one table (test/bench/compare.py)
#   make bench-conns    skyrelay's RSS and fds with 1,000 agent connections streaming (test/bench/conns.py)
#   make soak       mixed traffic under node faults for SOAK_SECONDS (3600): lost ids, RSS, fds (test/soak/soak.py)
# V=1 shows the commands.

CC      ?= gcc
BUILD   := build
PKGS    := grpc gpr libprotobuf-c libuv yaml-0.1 libcurl json-c libisal libcrypto
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

# pkg-config is evaluated lazily (and once) so that `make run` / `make test` on a
# machine without the -dev packages can install them before anything is compiled.
PKG_CFLAGS = $(eval PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS)))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $(shell pkg-config --libs $(PKGS)))$(PKG_LIBS)
CMOCKA_LIBS = $(eval CMOCKA_LIBS := $(shell pkg-config --libs cmocka))$(CMOCKA_LIBS)

WARN    := -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wno-unused-parameter
OPT     ?= -O2 -g
CFLAGS_COMMON = -std=c11 -D_GNU_SOURCE -DSR_VERSION=\"$(VERSION)\" -Iinclude -I$(BUILD)/proto $(PKG_CFLAGS) -MMD -MP
CFLAGS  = $(OPT) $(WARN) $(CFLAGS_COMMON)
LDLIBS  = $(PKG_LIBS) -lpthread -lm
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

ifeq ($(V),1)
Q :=
else
Q := @
endif

PROTOS      := $(wildcard proto/*.proto)
PROTO_C     := $(patsubst proto/%.proto,$(BUILD)/proto/%.pb-c.c,$(PROTOS))
PROTO_H     := $(PROTO_C:.c=.h)
PROTO_OBJ   := $(PROTO_C:.c=.o)

LIB_SRC     := $(filter-out src/main.c,$(shell find src -name '*.c' | sort))
LIB_OBJ     := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
LIB_OBJ_SAN := $(patsubst %.c,$(BUILD)/san/%.o,$(LIB_SRC))
PROTO_OBJ_SAN := $(patsubst $(BUILD)/proto/%.o,$(BUILD)/san/proto/%.o,$(PROTO_OBJ))

TOOL_SRC    := $(wildcard test/tools/*.c)
TOOL_BIN    := $(patsubst test/tools/%.c,$(BUILD)/%,$(TOOL_SRC))
TOOL_COMMON := $(wildcard test/tools/common/*.c)
TOOL_COMMON_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(TOOL_COMMON))
# benchmark-only tools (test/bench/*.c with a main of their own, gRPC only): the receive floor
BENCH_BIN   := $(BUILD)/grpc_floor

UNIT_SRC    := $(wildcard test/unit/test_*.c)
UNIT_BIN    := $(patsubst test/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRC))

.PHONY: all tools deps run test unit integration bench clean format unit-bins fuzz test-asan soak
.SECONDARY: $(PROTO_C) $(PROTO_H)
.DEFAULT_GOAL := all

all: $(BUILD)/skyrelay tools

tools: $(TOOL_BIN) $(BENCH_BIN)

deps:
	$(Q)scripts/install-deps.sh

run: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/run-demo.sh

test: deps
	$(Q)$(MAKE) --no-print-directory all unit-bins
	$(Q)$(MAKE) --no-print-directory unit integration

unit-bins: $(UNIT_BIN)

unit: $(UNIT_BIN)
	$(Q)scripts/run-unit.sh $(UNIT_BIN)

integration: $(BUILD)/skyrelay tools
	$(Q)scripts/run-integration.sh

# The real binary under ASan/LSan/UBSan against the integration tests (CI runs it after `make test`).
ASAN_OPT := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
test-asan: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan OPT="$(ASAN_OPT)" build-asan/skyrelay
	$(Q)scripts/run-asan-integration.sh

# skyrelay and nginx grpc_pass side by side (docs/performance.md, issue 13): loadgen and h2load
# loads, one table. Needs nginx and h2load (nghttp2-client; optional in scripts/install-deps.sh):
# it says so and skips without them. Uses the binaries of $(BUILD).
.PHONY: bench-compare
bench-compare: $(BUILD)/skyrelay tools
	$(Q)scripts/install-deps.sh --bench
	$(Q)SKYRELAY_BUILD=$(abspath $(BUILD)) /usr/bin/python3 test/bench/compare.py

# RSS with 1,000 agent connections held open and streaming (docs/performance.md, issue 13):
# shipped config, 3 fake nodes, ~45 s. CONNS_CONNECTIONS, CONNS_RATE, CONNS_SECONDS, CONNS_LOADGENS.
.PHONY: bench-conns
bench-conns: $(BUILD)/skyrelay tools
	$(Q)SKYRELAY_BUILD=$(abspath $(BUILD)) /usr/bin/python3 test/bench/conns.py

bench: $(BUILD)/skyrelay tools
	$(Q)scripts/bench.sh

# Soak (docs/reliability.md, "Soak"): one skyrelay, 3 fake OAP nodes restarted/frozen/taken down
# on a seeded schedule, agents coming and going; fails if an acknowledged id is lost, RSS grows
# over the second half or fds grow. SOAK_DISK=1: disk queue, with a skyrelay kill -9. SOAK_SEED,
# SOAK_DIR (work dir to keep) are passed through the environment.
SOAK_SECONDS ?= 3600
soak: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD)/skyrelay tools
	$(Q)SOAK_SECONDS=$(SOAK_SECONDS) SKYRELAY_BUILD=$(abspath $(BUILD)) /usr/bin/python3 test/soak/soak.py

# ---- generated protobuf-c code (tools, tests and self-telemetry only) ----
$(BUILD)/proto/%.pb-c.c $(BUILD)/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(dir $@)
	@echo "  PROTOC  $<"
	$(Q)protoc-c --proto_path=proto --c_out=$(BUILD)/proto $<

# generated code is not ours: compile it without -Werror
$(BUILD)/proto/%.pb-c.o: $(BUILD)/proto/%.pb-c.c $(PROTO_H)
	@echo "  CC      $<"
	$(Q)$(CC) $(OPT) $(CFLAGS_COMMON) -c $< -o $@
$(BUILD)/san/proto/%.pb-c.o: $(BUILD)/proto/%.pb-c.c $(PROTO_H)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(OPT) $(SAN) $(CFLAGS_COMMON) -c $< -o $@

$(BUILD)/%.o: %.c $(PROTO_H)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/san/%.o: %.c $(PROTO_H)
	@mkdir -p $(dir $@)
	@echo "  CC/SAN  $<"
	$(Q)$(CC) $(CFLAGS) $(SAN) -c $< -o $@

$(BUILD)/libskyrelay.a: $(LIB_OBJ) $(PROTO_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/libskyrelay-san.a: $(LIB_OBJ_SAN) $(PROTO_OBJ_SAN)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/skyrelay: $(BUILD)/src/main.o $(BUILD)/libskyrelay.a
	@echo "  LD      $@"
	$(Q)$(CC) $(OPT) -o $@ $^ $(LDLIBS)

$(BUILD)/%: $(BUILD)/test/tools/%.o $(TOOL_COMMON_OBJ) $(BUILD)/libskyrelay.a
	@echo "  LD      $@"
	$(Q)$(CC) $(OPT) -o $@ $^ $(LDLIBS)

# receive-only gRPC server of issue 13 (docs/performance.md, "Receive side and the gRPC floor")
$(BUILD)/grpc_floor: $(BUILD)/test/bench/grpc_floor.o
	@echo "  LD      $@"
	$(Q)$(CC) $(OPT) -o $@ $^ $(LDLIBS)

$(BUILD)/unit/%: $(BUILD)/san/test/unit/%.o $(BUILD)/libskyrelay-san.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(OPT) $(SAN) -o $@ $^ $(CMOCKA_LIBS) $(LDLIBS)

# libFuzzer targets (clang): `make fuzz` runs each for FUZZ_SECONDS on the seeds in
# test/fuzz/corpus/<name>; new inputs are kept in $(BUILD)/fuzz/corpus-<name>. The config
# target also starts from the shipped config/skyrelay.yaml, copied (never kept by hand).
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?= wire config schema disklog k8s http
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-std=c11 -D_GNU_SOURCE -DSR_VERSION=\"$(VERSION)\" -Iinclude $(PKG_CFLAGS)
$(BUILD)/fuzz/fuzz_wire: test/fuzz/fuzz_wire.c src/receiver/wire.c src/receiver/context.c
	@mkdir -p $(dir $@)
	$(Q)clang $(FUZZ_FLAGS) -o $@ $^ $(PKG_LIBS)
# the config keys of every pipe come from the pipe table (src/core/pipes.c), which names the
# receivers' context specs and the messages' descriptors
# (src/config/merge.c, the reload's "needs restart" list, formats with src/core/buf.c)
$(BUILD)/fuzz/fuzz_config: test/fuzz/fuzz_config.c $(wildcard src/config/*.c) src/core/log.c \
		src/core/buf.c src/core/pipes.c src/receiver/context.c src/receiver/wire.c $(PROTO_C) \
		| $(PROTO_H)
	@mkdir -p $(dir $@)
	$(Q)clang $(FUZZ_FLAGS) -I$(BUILD)/proto -o $@ $(filter %.c,$^) $(PKG_LIBS)
# the schema validation against the generated descriptors (+ protobuf-c's unpack as the oracle)
$(BUILD)/fuzz/fuzz_schema: test/fuzz/fuzz_schema.c src/receiver/schema.c src/core/pipes.c \
		src/receiver/context.c src/receiver/wire.c $(PROTO_C) | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(Q)clang $(FUZZ_FLAGS) -I$(BUILD)/proto -o $@ $(filter %.c,$^) $(PKG_LIBS)
# the disk queue's recovery (scan, read-back, acknowledgement mark) on arbitrary files
$(BUILD)/fuzz/fuzz_disklog: test/fuzz/fuzz_disklog.c src/queue/disklog.c src/queue/diskfile.c src/queue/diskread.c \
		src/core/clock.c src/core/log.c
	@mkdir -p $(dir $@)
	$(Q)clang $(FUZZ_FLAGS) -o $@ $^ $(PKG_LIBS)
# the Kubernetes watch stream splitter and the Pod / EndpointSlice / Status readers
$(BUILD)/fuzz/fuzz_k8s: test/fuzz/fuzz_k8s.c src/discovery/k8s_parse.c src/discovery/k8s_table.c src/core/buf.c
	@mkdir -p $(dir $@)
	$(Q)clang $(FUZZ_FLAGS) -o $@ $^ $(PKG_LIBS)
# the admin port's request-head parser and its bearer-token check
$(BUILD)/fuzz/fuzz_http: test/fuzz/fuzz_http.c src/admin/http_parse.c src/server/auth.c
	@mkdir -p $(dir $@)
	$(Q)clang $(FUZZ_FLAGS) -o $@ $^ $(PKG_LIBS)
FUZZ_CONFIG_SEED := $(BUILD)/fuzz/corpus-config-seed/shipped.yaml
$(FUZZ_CONFIG_SEED): config/skyrelay.yaml
	@mkdir -p $(dir $@)
	$(Q)cp $< $@
fuzz: $(BUILD)/fuzz/fuzz_wire $(BUILD)/fuzz/fuzz_config $(BUILD)/fuzz/fuzz_schema \
		$(BUILD)/fuzz/fuzz_disklog $(BUILD)/fuzz/fuzz_k8s $(BUILD)/fuzz/fuzz_http $(FUZZ_CONFIG_SEED)
	$(Q)for t in $(FUZZ_TARGETS); do \
	    seeds=test/fuzz/corpus/$$t; \
	    case $$t in config) seeds="$$seeds $(dir $(FUZZ_CONFIG_SEED))";; esac; \
	    mkdir -p $(BUILD)/fuzz/corpus-$$t; \
	    $(BUILD)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        $(BUILD)/fuzz/corpus-$$t $$seeds || exit 1; \
	done

clean:
	rm -rf $(BUILD) build-asan

format:
	clang-format -i $$(find src include test -name '*.[ch]')

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
