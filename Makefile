# slotproxy - top-level build.
#
#   make                 build common/libslotproxy.a (and the module and the
#                        backend once they exist)
#   make check           install missing packages, build, run every test
#   make check SUITE=ring    run one unit suite (Check's CK_RUN_SUITE)
#   make run             build and start httpd + backend on 127.0.0.1:8080
#   make bench           build and run the benchmarks (prints figures)
#   make fuzz            build libFuzzer targets with clang and run each for
#                        FUZZ_SECONDS (default 30)
#   make SANITIZE=address,undefined check
#                        the same, built with sanitizers into build-san/
#   make clean

SANITIZE ?=
ifeq ($(SANITIZE),)
BUILD ?= build
SANFLAGS :=
else
BUILD ?= build-san
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

CC ?= cc
OPT ?= -O2
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Werror \
	-Wno-unused-parameter -fPIC -pthread $(SANFLAGS)
CPPFLAGS_BASE := -Icommon
LDFLAGS_BASE := -pthread $(SANFLAGS)

CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm)

COMMON_SRC := $(sort $(wildcard common/*.c))
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libslotproxy.a

UNIT_SRC := $(sort $(wildcard tests/unit/*.c)) slotproxy-backend/config.c
UNIT_BIN := $(BUILD)/tests/sp_unit

BACKEND_SRC := $(filter-out %/sample_plugin.c,\
	$(sort $(wildcard slotproxy-backend/*.c slotproxy-backend/apps/*.c)))
BACKEND_HDR := $(wildcard slotproxy-backend/*.h slotproxy-backend/apps/*.h \
	slotproxy-backend/include/*.h)
BACKEND_CPP := -Islotproxy-backend -Islotproxy-backend/include
BACKEND_BIN := $(BUILD)/slotproxy-backend/slotproxy-backend
SAMPLE_PLUGIN := $(BUILD)/slotproxy-backend/sample_plugin.so

INTEG_SRC := $(sort $(wildcard tests/integration/*.c))
INTEG_BIN := $(BUILD)/tests/sp_integ

BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
BENCH_SH := $(sort $(wildcard bench/*.sh))
BENCH_MOD := $(BUILD)/bench/apps/mod_benchhello.so

FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BUILD := build-fuzz
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_SECONDS ?= 30

HEADERS := $(wildcard common/*.h)

# The httpd module: built against the installed httpd (Debian's
# apache2-dev) with the project's own flags, not `apxs -c` (libtool would
# drop -Werror and rebuild common/).  libslotproxy.a is -fPIC, so it links
# into the .so; --exclude-libs keeps its sp_* symbols out of httpd's
# namespace.
APXS ?= $(shell command -v apxs 2>/dev/null || command -v apxs2 2>/dev/null)
HTTPD_INCLUDEDIR := $(if $(APXS),$(shell $(APXS) -q INCLUDEDIR 2>/dev/null))
APR_INCLUDES := $(shell apr-1-config --includes 2>/dev/null) \
	$(shell apu-1-config --includes 2>/dev/null)
MOD_SRC := mod_slotproxy/mod_slotproxy.c mod_slotproxy/handler.c \
	mod_slotproxy/proxy.c mod_slotproxy/session.c
MOD_CPP := -Imod_slotproxy -I$(HTTPD_INCLUDEDIR) $(APR_INCLUDES) \
	-DLINUX -D_REENTRANT
MOD_SO := $(BUILD)/mod_slotproxy/mod_slotproxy.so

.PHONY: all lib backend module check unit integ deps run bench fuzz clean
all: lib backend module

module: $(MOD_SO)

$(MOD_SO): $(MOD_SRC) $(wildcard mod_slotproxy/*.h) $(HEADERS) $(LIB)
	@test -n "$(HTTPD_INCLUDEDIR)" || { echo "apxs not found: install \
apache2-dev (scripts/deps.sh check)" >&2; exit 1; }
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_BASE) $(MOD_CPP) $(CFLAGS_BASE) -shared $(MOD_SRC) \
		$(LIB) $(LDFLAGS_BASE) -Wl,--exclude-libs,ALL -lcrypto -o $@

backend: $(BACKEND_BIN) $(SAMPLE_PLUGIN)

lib: $(LIB)

$(BUILD)/common/%.o: common/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_BASE) $(CFLAGS_BASE) -c $< -o $@

$(LIB): $(COMMON_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BACKEND_BIN): $(BACKEND_SRC) $(BACKEND_HDR) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_BASE) $(BACKEND_CPP) $(CFLAGS_BASE) $(BACKEND_SRC) \
		$(LIB) $(LDFLAGS_BASE) -lcrypto -ldl -o $@

$(SAMPLE_PLUGIN): slotproxy-backend/apps/sample_plugin.c \
		slotproxy-backend/include/slotproxy_app.h
	@mkdir -p $(dir $@)
	$(CC) -Islotproxy-backend/include $(CFLAGS_BASE) -shared $< -o $@ \
		$(LDFLAGS_BASE)

# test_apps.c includes the apps' .c files itself.
$(UNIT_BIN): $(UNIT_SRC) $(wildcard tests/unit/*.h) $(BACKEND_HDR) $(LIB) \
		slotproxy-backend/apps/app_builtin.c slotproxy-backend/apps/app_cgi.c \
		slotproxy-backend/apps/app_plugin.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_BASE) -Itests/unit $(BACKEND_CPP) $(CFLAGS_BASE) \
		$(CHECK_CFLAGS) $(UNIT_SRC) $(LIB) $(LDFLAGS_BASE) $(CHECK_LIBS) \
		-lcrypto -ldl -o $@

$(INTEG_BIN): $(INTEG_SRC) $(wildcard tests/integration/*.h) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_BASE) -Itests/integration $(CFLAGS_BASE) \
		$(CHECK_CFLAGS) $(INTEG_SRC) $(LIB) $(LDFLAGS_BASE) $(CHECK_LIBS) \
		-lcrypto -lcurl -o $@

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_BASE) $(CFLAGS_BASE) $< $(LIB) $(LDFLAGS_BASE) -lm -lcrypto -o $@

# The benchmark's in-process baseline handler, built like the module.
$(BENCH_MOD): bench/apps/mod_benchhello.c
	@mkdir -p $(dir $@)
	$(CC) $(MOD_CPP) $(CFLAGS_BASE) -shared $< $(LDFLAGS_BASE) -o $@

deps:
	@scripts/deps.sh check

check: deps
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integ

TEST_ENV = SP_SAMPLE_PLUGIN=$(abspath $(SAMPLE_PLUGIN)) \
	SP_BACKEND=$(abspath $(BACKEND_BIN)) SP_TOP=$(abspath .) \
	SP_MODULE=$(abspath $(MOD_SO)) \
	CK_DEFAULT_TIMEOUT=$${CK_DEFAULT_TIMEOUT:-120} \
	$(if $(SUITE),CK_RUN_SUITE=$(SUITE))

# Check forks every test; CK_DEFAULT_TIMEOUT covers slow sanitizer builds.
unit: $(UNIT_BIN) $(SAMPLE_PLUGIN)
	$(TEST_ENV) $(UNIT_BIN)

integ: $(INTEG_BIN) $(BACKEND_BIN) $(SAMPLE_PLUGIN) $(MOD_SO)
	@if [ -n "$(INTEG_SRC)" ]; then $(TEST_ENV) $(INTEG_BIN); fi

# make run MPM=prefork|worker|event (default event), PORT=8080
run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run.sh $(BUILD) $(MPM)

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory OPT=-O2 SANITIZE= $(BENCH_BIN) \
		$(if $(BENCH_SH),$(BENCH_MOD) all)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done
	@for s in $(BENCH_SH); do echo "== $$s"; $$s $(BUILD) || exit 1; done

$(FUZZ_BUILD)/fuzz_config: tests/fuzz/fuzz_config.c slotproxy-backend/config.c \
		slotproxy-backend/config.h $(COMMON_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -Icommon -Islotproxy-backend \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		$< slotproxy-backend/config.c $(COMMON_SRC) -lcrypto -o $@

$(FUZZ_BUILD)/%: tests/fuzz/%.c $(COMMON_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -Icommon \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		$< $(COMMON_SRC) -lcrypto -o $@

fuzz:
	@scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); \
		mkdir -p $(FUZZ_BUILD)/corpus-$$n; \
		echo "== $$n ($(FUZZ_SECONDS)s)"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			$(FUZZ_BUILD)/corpus-$$n tests/fuzz/corpus/$${n#fuzz_} || exit 1; \
	done

clean:
	rm -rf build build-san build-fuzz
