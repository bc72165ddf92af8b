# Thin entry points over the npm scripts.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
ROOT := $(abspath .)

.PHONY: build install uninstall test bench

node_modules: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch node_modules

build: node_modules
	npm run build

install: build
	install -d $(DESTDIR)$(BINDIR)
	ln -sf $(ROOT)/bin/banger $(DESTDIR)$(BINDIR)/banger
	ln -sf $(ROOT)/bin/bangerd $(DESTDIR)$(BINDIR)/bangerd

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/banger $(DESTDIR)$(BINDIR)/bangerd

test: node_modules
	npm test

bench:
	npm run bench
