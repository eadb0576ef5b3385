# mapguard: a thin layer over CMake + ctest.
#   make run    build, then run `mapguard doctor` (the CLI's main job)
#   make test   build (gcc, -Werror) and run every test tier, then the same
#               suites under ASan+UBSan with clang, plus the libFuzzer run,
#               then the modes and stress tiers under ThreadSanitizer
#   make bench  the peer comparisons of ../shared/workload.md (minutes):
#               the concurrent knee benchmark (`mapguard bench`, CSV and PNG
#               in $(BUILD)/), the single-thread comparison and the memory
#               per entry of each mode
#   make bench-obs  the observability layer compiled in vs compiled out
# Both `run` and `test` first install missing Debian packages.

BUILD     ?= build
SANBUILD  ?= build-san
TSANBUILD ?= build-tsan
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

.PHONY: all deps build build-san build-tsan run test test-main test-san test-tsan bench bench-obs install clean

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

# ThreadSanitizer: the modes and stress tiers (clang, its own build).  Every
# suppression in tests/tsan.supp says why it is there.
$(TSANBUILD)/CMakeCache.txt:
	CC=clang CXX=clang++ cmake -S . -B $(TSANBUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DMG_WERROR=ON -DMG_SANITIZE=thread -DMG_BENCH=OFF -DMG_GO_TESTS=OFF $(CMAKE_ARGS)

build-tsan: deps $(TSANBUILD)/CMakeCache.txt
	cmake --build $(TSANBUILD) -j $(JOBS)

run: build
	./$(BUILD)/mapguard doctor

test-main: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-san: build-san
	cd $(SANBUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) -LE 'bench|diff|integration|slow'

test-tsan: build-tsan
	cd $(TSANBUILD) && \
	  TSAN_OPTIONS=suppressions=$(CURDIR)/tests/tsan.supp:halt_on_error=1:second_deadlock_stack=1 \
	  ctest --output-on-failure -j $(JOBS) -L 'stress|modes|metrics'

test: test-main test-san test-tsan

bench: build
	./$(BUILD)/mapguard bench --csv $(BUILD)/knee.csv --png $(BUILD)/knee.png $(BENCH_ARGS)
	./$(BUILD)/mapguard bench single
	./$(BUILD)/bench/mapguard-modes-mem

# The observability layer's cost when nobody looks: compiled in vs out.
bench-obs: deps
	sh bench/obs_cost.sh $(BENCH_OBS_ARGS)

install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

clean:
	rm -rf $(BUILD) $(SANBUILD) $(TSANBUILD)
