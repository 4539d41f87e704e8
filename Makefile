# shadowcopy: build, test, benchmark, run the demo.
SWIFT ?= swift
PREFIX ?= /usr
DESTDIR ?=

.PHONY: build release test bench demo clean

build:
	$(SWIFT) build

release:
	$(SWIFT) build -c release

# The README's test command. Builds everything (the tests start the real shadowcopyd), runs every
# suite, and afterwards ends anything a crashed test run may have left behind.
test:
	$(SWIFT) build --build-tests
	@./scripts/check-test-deps
	$(SWIFT) test --skip-build; status=$$?; ./scripts/cleanup-test-leftovers; exit $$status

# Benchmarks against the floor (Peer.Ping on dbus-daemon itself), release build.
bench:
	$(SWIFT) build -c release --product shadowcopyd
	$(SWIFT) build -c release --product shadowcopy-bench
	./.build/release/shadowcopy-bench

# The README's main job: a private bus, the daemon, a writer, what the daemon shows.
demo:
	./scripts/demo

clean:
	$(SWIFT) package clean
