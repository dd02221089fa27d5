# Plain Makefile for the MTA. `make` builds everything into build/bin/; `make run` and `make check`
# first install missing Debian packages (skip with NO_DEPS=1); `make` and `make install` never do.
#
# Layout convention: every non-main .cpp in a component dir goes into that dir's static library;
# each DIR/main_NAME.cpp is the entry point of program build/bin/NAME.

CXX      ?= g++
BUILD    ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
PKGS     := libevent libevent_openssl openssl libunbound lmdb libpsl
CXXFLAGS ?= -O2 -g
CXXFLAGS += -std=c++20 -Wall -Wextra -Werror -I. -MMD -MP $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcrypt -lpthread

ifeq ($(SAN),1)
BUILD    := build-asan
CXXFLAGS += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif

COMPONENTS := common smtpd queue-manager smtp-client resolver msgauth master
# Link order: components first, common last (everyone depends on it).
LINK_ORDER := master smtpd queue-manager smtp-client resolver msgauth common

lib_srcs  = $(filter-out $(1)/main_%.cpp,$(wildcard $(1)/*.cpp))
lib_file  = $(BUILD)/lib/lib$(1).a
LIBS      := $(foreach c,$(LINK_ORDER),$(if $(call lib_srcs,$(c)),$(call lib_file,$(c))))
MAINS     := $(foreach c,$(COMPONENTS),$(wildcard $(c)/main_*.cpp))
PROGRAMS  := $(foreach m,$(MAINS),$(BUILD)/bin/$(patsubst main_%.cpp,%,$(notdir $(m))))
UNIT_SRCS := $(wildcard tests/unit/*.cpp)
UNIT_BIN  := $(BUILD)/bin/unit-tests
ALL_OBJS  := $(patsubst %.cpp,$(BUILD)/obj/%.o,$(foreach c,$(COMPONENTS),$(wildcard $(c)/*.cpp)) $(UNIT_SRCS))

DEB_PACKAGES := g++ make pkg-config libevent-dev libssl-dev libunbound-dev liblmdb-dev lmdb-utils doctest-dev \
                libcrypt-dev dns-root-data python3 swaks nsd ldnsutils dnsutils openssl postfix \
                python3-aiosmtpd clang-14 libclang-rt-14-dev procps psmisc libpsl-dev publicsuffix

.PHONY: all run check check-asan test unit fuzz bench install clean deps asan
all: $(PROGRAMS) $(UNIT_BIN)

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

define LIB_RULE
$(call lib_file,$(1)): $(patsubst %.cpp,$(BUILD)/obj/%.o,$(call lib_srcs,$(1)))
	@mkdir -p $$(dir $$@)
	rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach c,$(COMPONENTS),$(if $(call lib_srcs,$(c)),$(eval $(call LIB_RULE,$(c)))))

# A program links its own component's library and common's, nothing else: roles stay separate.
prog_libs = $(filter $(call lib_file,$(patsubst %/,%,$(dir $(1)))) $(call lib_file,common),$(LIBS))
define PROG_RULE
$(BUILD)/bin/$(patsubst main_%.cpp,%,$(notdir $(1))): $(BUILD)/obj/$(1:.cpp=.o) $(call prog_libs,$(1))
	@mkdir -p $$(dir $$@)
	$(CXX) $(LDFLAGS) -o $$@ $$< $(call prog_libs,$(1)) $(LDLIBS)
endef
$(foreach m,$(MAINS),$(eval $(call PROG_RULE,$(m))))

$(UNIT_BIN): $(patsubst %.cpp,$(BUILD)/obj/%.o,$(UNIT_SRCS)) $(LIBS)
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) -o $@ $(patsubst %.cpp,$(BUILD)/obj/%.o,$(UNIT_SRCS)) $(LIBS) $(LDLIBS)

-include $(ALL_OBJS:.o=.d)

# Installs only what is missing, and only for the targets that promise it (run, check, bench).
deps:
ifneq ($(NO_DEPS),1)
	@missing=""; for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing missing Debian packages:$$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	  systemctl disable --now postfix >/dev/null 2>&1 || true; \
	fi
endif

# The targets that build on the user's behalf (run, check, asan, bench) use every core: JOBS=1 for a
# serial build. Plain `make` is left as make's own -j says.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
SUBMAKE = $(MAKE) -j$(JOBS)

run: deps
	$(SUBMAKE) all
	$(BUILD)/bin/mtad -d

asan:
	$(SUBMAKE) SAN=1 all

unit: all
	$(UNIT_BIN)

check: deps
	$(SUBMAKE) all
	$(SUBMAKE) SAN=1 all
	tests/run-all

bench: deps
	$(SUBMAKE) all
	tests/bench/run

fuzz: deps
	tests/fuzz/build

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/libexec/mta $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)/etc/mta \
	  $(DESTDIR)/lib/systemd/system
	for p in $(PROGRAMS); do case $$(basename $$p) in mta-*) install -m 0755 $$p $(DESTDIR)$(PREFIX)/libexec/mta/ ;; *) install -m 0755 $$p $(DESTDIR)$(PREFIX)/sbin/ ;; esac; done
	for m in man/*.[158]; do [ -f "$$m" ] && install -m 0644 $$m $(DESTDIR)$(PREFIX)/share/man/man$${m##*.}/; done; true
	[ -f $(DESTDIR)/etc/mta/mta.conf ] || sed 's|@LIBEXEC@|$(PREFIX)/libexec/mta|' master/mta.conf.sample > $(DESTDIR)/etc/mta/mta.conf
	sed 's|@SBIN@|$(PREFIX)/sbin|' master/mtad.service > $(DESTDIR)/lib/systemd/system/mtad.service

clean:
	rm -rf build build-asan build-fuzz
