# shadowcopy: build, test, benchmark, run the demo.
SWIFT ?= swift
PREFIX ?= /usr
DESTDIR ?=

.PHONY: build release test bench demo clean install install-files uninstall

# Where `make install` takes the binaries from (the tests install a debug build).
BIN ?= .build/release

build:
	$(SWIFT) build

release:
	$(SWIFT) build -c release

# The README's test command. Builds everything (the tests start the real shadowcopyd), runs every
# suite, ends anything a crashed test run may have left behind, then runs the device-mapper
# suites in a VM when this kernel has no device-mapper (scripts/test-device-mapper).
test:
	$(SWIFT) build --build-tests
	@./scripts/check-test-deps
	$(SWIFT) test --skip-build; status=$$?; ./scripts/cleanup-test-leftovers; \
	  if [ $$status -eq 0 ]; then ./scripts/test-device-mapper; status=$$?; fi; exit $$status

# Benchmarks against the floor (Peer.Ping on dbus-daemon itself), release build.
bench:
	$(SWIFT) build -c release --product shadowcopyd
	$(SWIFT) build -c release --product shadowcopy-writer
	$(SWIFT) build -c release --product shadowcopy-bench
	$(SWIFT) build -c release --product shadowcopy
	./.build/release/shadowcopy-bench
	@if [ -e /sys/class/misc/device-mapper ]; then ./.build/release/shadowcopy-bench devicemapper; \
	  else echo "device-mapper benchmarks: in a VM (this kernel has no device-mapper)"; \
	  ./scripts/vm --memory 3072 -- ./.build/release/shadowcopy-bench devicemapper; fi

# The README's main job: a private bus, the daemon, a writer, what the daemon shows.
demo:
	./scripts/demo

# Installs where a Debian system expects things: binaries, the bus policy and activation file,
# the interface XML, the polkit policy (and the example rule as documentation), the systemd
# unit, man pages and shell completions. Paths inside the installed files follow PREFIX.
install: release install-files

install-files:
	install -D -m 755 $(BIN)/shadowcopyd $(DESTDIR)$(PREFIX)/libexec/shadowcopyd
	install -D -m 755 $(BIN)/shadowcopy $(DESTDIR)$(PREFIX)/bin/shadowcopy
	install -D -m 755 $(BIN)/shadowcopy-writer $(DESTDIR)$(PREFIX)/bin/shadowcopy-writer
	install -D -m 644 dbus/org.shadowcopy.ShadowCopy1.conf $(DESTDIR)$(PREFIX)/share/dbus-1/system.d/org.shadowcopy.ShadowCopy1.conf
	install -d $(DESTDIR)$(PREFIX)/share/dbus-1/system-services $(DESTDIR)$(PREFIX)/share/dbus-1/interfaces
	sed 's|/usr/libexec/shadowcopyd|$(PREFIX)/libexec/shadowcopyd|' dbus/org.shadowcopy.ShadowCopy1.service \
	    > $(DESTDIR)$(PREFIX)/share/dbus-1/system-services/org.shadowcopy.ShadowCopy1.service
	install -m 644 dbus/org.shadowcopy.ShadowCopy1.*.xml $(DESTDIR)$(PREFIX)/share/dbus-1/interfaces/
	install -D -m 644 polkit/org.shadowcopy.policy $(DESTDIR)$(PREFIX)/share/polkit-1/actions/org.shadowcopy.policy
	install -D -m 644 polkit/50-shadowcopy-backup-group.rules \
	    $(DESTDIR)$(PREFIX)/share/doc/shadowcopy/examples/50-shadowcopy-backup-group.rules
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's|/usr/libexec/shadowcopyd|$(PREFIX)/libexec/shadowcopyd|' systemd/shadowcopyd.service \
	    > $(DESTDIR)$(PREFIX)/lib/systemd/system/shadowcopyd.service
	install -d $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 644 man/shadowcopyd.8 $(DESTDIR)$(PREFIX)/share/man/man8/shadowcopyd.8
	./scripts/make-manpage $(BIN)/shadowcopy 8 > $(DESTDIR)$(PREFIX)/share/man/man8/shadowcopy.8
	./scripts/make-manpage $(BIN)/shadowcopy-writer 8 > $(DESTDIR)$(PREFIX)/share/man/man8/shadowcopy-writer.8
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions \
	    $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	$(BIN)/shadowcopy --generate-completion-script bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/shadowcopy
	$(BIN)/shadowcopy --generate-completion-script zsh > $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_shadowcopy
	$(BIN)/shadowcopy --generate-completion-script fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/shadowcopy.fish
	install -d -m 755 $(DESTDIR)/etc/shadowcopy/hooks.d

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/libexec/shadowcopyd $(DESTDIR)$(PREFIX)/bin/shadowcopy $(DESTDIR)$(PREFIX)/bin/shadowcopy-writer \
	    $(DESTDIR)$(PREFIX)/share/dbus-1/system.d/org.shadowcopy.ShadowCopy1.conf \
	    $(DESTDIR)$(PREFIX)/share/dbus-1/system-services/org.shadowcopy.ShadowCopy1.service \
	    $(DESTDIR)$(PREFIX)/share/dbus-1/interfaces/org.shadowcopy.ShadowCopy1.*.xml \
	    $(DESTDIR)$(PREFIX)/share/polkit-1/actions/org.shadowcopy.policy \
	    $(DESTDIR)$(PREFIX)/lib/systemd/system/shadowcopyd.service \
	    $(DESTDIR)$(PREFIX)/share/man/man8/shadowcopyd.8 $(DESTDIR)$(PREFIX)/share/man/man8/shadowcopy.8 \
	    $(DESTDIR)$(PREFIX)/share/man/man8/shadowcopy-writer.8 \
	    $(DESTDIR)$(PREFIX)/share/bash-completion/completions/shadowcopy \
	    $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_shadowcopy \
	    $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/shadowcopy.fish
	rm -rf $(DESTDIR)$(PREFIX)/share/doc/shadowcopy
	-rmdir $(DESTDIR)/etc/shadowcopy/hooks.d $(DESTDIR)/etc/shadowcopy 2>/dev/null

clean:
	$(SWIFT) package clean
