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
# not use: each optimisation level and clang see warnings the others miss.
WARN_BUILDS = Debug Release MinSizeRel
warnings: deps
	@for t in $(WARN_BUILDS); do \
	  echo "== gcc $$t"; \
	  [ -f $(BUILD_DIR)-warn-$$t/build.ninja ] || \
	    cmake -S . -B $(BUILD_DIR)-warn-$$t -G Ninja -DCMAKE_BUILD_TYPE=$$t -DLETHE_WERROR=ON \
	          $(CMAKE_FLAGS) >/dev/null || exit 1; \
	  cmake --build $(BUILD_DIR)-warn-$$t -j $(JOBS) >/dev/null || \
	    { cmake --build $(BUILD_DIR)-warn-$$t -j 1; exit 1; }; \
	done
	@echo "== clang RelWithDebInfo"
	@[ -f $(BUILD_DIR)-warn-clang/build.ninja ] || \
	  CC=clang cmake -S . -B $(BUILD_DIR)-warn-clang -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	        -DLETHE_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_DIR)-warn-clang -j $(JOBS) >/dev/null || \
	  { cmake --build $(BUILD_DIR)-warn-clang -j 1; exit 1; }

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD_DIR) $(BUILD_DIR)-asan $(BUILD_DIR)-tsan $(BUILD_DIR)-warn-* compile_commands.json
