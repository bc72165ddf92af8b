# Thin entry points over the npm scripts.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
ROOT := $(abspath .)

.PHONY: build install uninstall test bench

build:
	npm run build

install: build
	install -d $(DESTDIR)$(BINDIR)
	ln -sf $(ROOT)/bin/banger $(DESTDIR)$(BINDIR)/banger
	ln -sf $(ROOT)/bin/bangerd $(DESTDIR)$(BINDIR)/bangerd

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/banger $(DESTDIR)$(BINDIR)/bangerd

test:
	npm test

bench:
	npm run bench
