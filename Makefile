# The two set-up commands of the README:
#   make run    installs what is missing, builds, boots the default guest
#   make test   installs what is missing, builds, runs every test (ctest)
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all setup configure build run test bench fuzz format clean

all: build

setup:
	@scripts/setup-host.sh

$(BUILD)/build.ninja: | setup
	CC=clang CXX=clang++ cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

configure: $(BUILD)/build.ninja

build: setup configure
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/src/cli/hostvisor run $(ARGS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

bench: build
	bench/run-all.sh $(BUILD)

fuzz: build
	scripts/fuzz-all.sh $(BUILD)

format:
	find src tests fuzz bench guest -name '*.cpp' -o -name '*.h' -o -name '*.c' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
