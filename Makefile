# Lethe's front door. The quick start is two commands, each doing its own set-up:
#   make run    build, then run Lethe's main job
#   make test   build, then run every test through ctest
# Everything else is CMake + Ninja underneath; these targets only wrap it.

BUILD_DIR    ?= build
BUILD_TYPE   ?= RelWithDebInfo
LETHE_WERROR ?= OFF
JOBS         ?= $(shell nproc)
CMAKE_FLAGS  ?=

.PHONY: all deps build run test test-asan test-tsan sanitize warnings format clean

all: build

deps:
	@bash scripts/install-deps.sh

# $(1): build directory, $(2): extra CMake flags
define configure_and_build
	@if [ ! -f $(1)/build.ninja ]; then \
	  cmake -S . -B $(1) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	        -DLETHE_WERROR=$(LETHE_WERROR) $(2) $(CMAKE_FLAGS); \
	fi
	@cmake --build $(1) -j $(JOBS)
endef

build: deps
	$(call configure_and_build,$(BUILD_DIR),)
	@ln -sf $(BUILD_DIR)/compile_commands.json compile_commands.json

run: build
	@bash scripts/run-main-job.sh $(BUILD_DIR)

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# ASan + UBSan build of everything, and its tests.
test-asan: deps
	$(call configure_and_build,$(BUILD_DIR)-asan,-DLETHE_SANITIZE=address)
	@cd $(BUILD_DIR)-asan && ctest --output-on-failure -j $(JOBS)

# ThreadSanitizer build, and its tests (the concurrency suite is what it is for).
test-tsan: deps
	$(call configure_and_build,$(BUILD_DIR)-tsan,-DLETHE_SANITIZE=thread)
	@cd $(BUILD_DIR)-tsan && ctest --output-on-failure -j $(JOBS)

sanitize: test-asan test-tsan

# Compile only, warnings as errors, in the build types and with the compiler the test runs do
# not use: each optimisation level and clang see warnings the others miss. COMPILER:TYPE each.
WARN_BUILDS = gcc:Debug gcc:Release gcc:MinSizeRel clang:RelWithDebInfo
warnings: deps
	@for b in $(WARN_BUILDS); do \
	  cc=$${b%%:*}; t=$${b#*:}; dir=$(BUILD_DIR)-warn-$$cc-$$t; \
	  echo "== $$cc $$t"; \
	  [ -f $$dir/build.ninja ] || \
	    CC=$$cc cmake -S . -B $$dir -G Ninja -DCMAKE_BUILD_TYPE=$$t -DLETHE_WERROR=ON \
	          $(CMAKE_FLAGS) >/dev/null || exit 1; \
	  cmake --build $$dir -j $(JOBS) >/dev/null || { cmake --build $$dir -j 1; exit 1; }; \
	done

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD_DIR) $(BUILD_DIR)-asan $(BUILD_DIR)-tsan $(BUILD_DIR)-warn-* compile_commands.json
