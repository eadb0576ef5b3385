# mapguard: a thin layer over CMake + ctest.
#   make run    build, then run `mapguard doctor` (the CLI's main job)
#   make test   build (gcc, -Werror) and run every test tier, then the same
#               suites under ASan+UBSan with clang, plus the libFuzzer run
#   make bench  the peer comparison of ../shared/workload.md (minutes)
# Both `run` and `test` first install missing Debian packages.

BUILD     ?= build
SANBUILD  ?= build-san
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

.PHONY: all deps build build-san run test test-main test-san bench install clean

all: build

deps:
	@sh scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMG_WERROR=ON $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(SANBUILD)/CMakeCache.txt:
	CC=clang CXX=clang++ cmake -S . -B $(SANBUILD) -DCMAKE_BUILD_TYPE=Debug \
	  -DMG_WERROR=ON -DMG_SANITIZE=address,undefined -DMG_FUZZ=ON \
	  -DMG_BENCH=OFF -DMG_GO_TESTS=OFF $(CMAKE_ARGS)

build-san: deps $(SANBUILD)/CMakeCache.txt
	cmake --build $(SANBUILD) -j $(JOBS)

run: build
	./$(BUILD)/mapguard doctor

test-main: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-san: build-san
	cd $(SANBUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) -LE 'bench|diff|integration|slow'

test: test-main test-san

bench: build
	./$(BUILD)/bench/mapguard-bench-compare $(BENCH_ARGS)

install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

clean:
	rm -rf $(BUILD) $(SANBUILD)
