# Plain Makefile for the MTA. `make` builds everything into build/bin/; `make run` and `make check`
# first install missing Debian packages (skip with NO_DEPS=1); `make` and `make install` never do.
#
# Layout convention: every non-main .cpp of a directory goes into that directory's static library; each
# DIR/main_NAME.cpp is the entry point of program build/bin/NAME (see README.md, Layout).

CXX      ?= g++
BUILD    ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
PKGS     := libevent libevent_openssl openssl libunbound lmdb libpsl zlib
# CPPFLAGS/CXXFLAGS/LDFLAGS from the environment or the command line (a packager's, e.g. Debian's
# hardening flags) replace the defaults and reach every compile and link; the flags the build cannot do
# without are appended with `override`, so they survive both. -ffile-prefix-map keeps the checkout's
# path out of the objects: two builds of one commit in different directories are bit-identical.
CXXFLAGS ?= -O2 -g
override CXXFLAGS += -std=c++20 -Wall -Wextra -Werror -I. -MMD -MP -ffile-prefix-map=$(CURDIR)=. \
                     $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
override LDLIBS += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcrypt -lpthread

# The ASan+UBSan build uses clang: GCC's UBSan at -O1 compiles about four times slower, and clang's
# objects double as the fuzz targets' (fuzzer-no-link only adds coverage counters), so `make check`
# builds the project twice, not three times. Line tables are all a sanitizer report needs.
SAN_CXX  ?= clang++-14
ifeq ($(SAN),1)
BUILD    := build-asan
CXX      := $(SAN_CXX)
override CXXFLAGS += -O1 -gline-tables-only -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link \
            -fno-sanitize-recover=undefined
override LDFLAGS += -fsanitize=address,undefined
endif
# Crash points (common/fault.h) exist only in test builds: the ASan+UBSan one, or FAULT=1 (into build-fault).
ifeq ($(SAN),1)
override CXXFLAGS += -DMTA_FAULT
else ifeq ($(FAULT),1)
BUILD    := build-fault
override CXXFLAGS += -DMTA_FAULT
endif

COMPONENTS := common smtpd queue-manager smtp-client resolver msgauth master
# A program that is not its component's daemon (a user or admin tool, a second daemon) has a directory of
# its own below the component it serves, holding its main_*.cpp and the sources only it uses.
SUBDIRS    := $(patsubst %/,%,$(sort $(dir $(wildcard $(addsuffix /*/main_*.cpp,$(COMPONENTS))))))
DIRS       := $(SUBDIRS) $(COMPONENTS)
# Link order: program directories first, then components, common last (everyone depends on it).
LINK_ORDER := $(SUBDIRS) master smtpd queue-manager smtp-client resolver msgauth common
# What a program directory links besides its own library and common's. Nothing else: roles stay
# separate, and sendmail (which every user runs) carries none of the queue manager.
DEPS_msgauth/mtadkim := msgauth
# mtadns --check-sender checks SPF, DKIM keys and DMARC records with msgauth's own code.
DEPS_resolver/mtadns := msgauth
# mtad -n loads the DKIM keys the way mta-msgauth will, to report a bad one before anything starts.
DEPS_master := msgauth

# common/wire/ (the message layer between roles) is part of the common library.
sub_srcs  = $(if $(filter common,$(1)),$(wildcard common/wire/*.cpp))
lib_srcs  = $(strip $(filter-out $(1)/main_%.cpp,$(wildcard $(1)/*.cpp)) $(call sub_srcs,$(1)))
lib_file  = $(BUILD)/lib/lib$(subst /,-,$(1)).a
LIBS      := $(foreach c,$(LINK_ORDER),$(if $(call lib_srcs,$(c)),$(call lib_file,$(c))))
MAINS     := $(foreach c,$(DIRS),$(wildcard $(c)/main_*.cpp))
PROGRAMS  := $(foreach m,$(MAINS),$(BUILD)/bin/$(patsubst main_%.cpp,%,$(notdir $(m))))
UNIT_SRCS := $(wildcard tests/unit/*.cpp)
UNIT_BIN  := $(BUILD)/bin/unit-tests
# Test tools (tests/tools/NAME.cpp -> build/tests/NAME with _ as -): never installed.
TOOL_SRCS := $(wildcard tests/tools/*.cpp)
TOOL_BINS := $(patsubst tests/tools/%.cpp,$(BUILD)/tests/%,$(subst _,-,$(TOOL_SRCS)))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.cpp)
FUZZ_BINS := $(patsubst tests/fuzz/%.cpp,$(BUILD)/fuzz/%,$(FUZZ_SRCS))
ALL_OBJS  := $(patsubst %.cpp,$(BUILD)/obj/%.o,$(foreach c,$(DIRS),$(wildcard $(c)/*.cpp) $(call sub_srcs,$(c))) $(UNIT_SRCS) $(TOOL_SRCS))

DEB_PACKAGES := g++ make pkg-config libevent-dev libssl-dev libunbound-dev liblmdb-dev lmdb-utils doctest-dev \
                libcrypt-dev dns-root-data python3 swaks libnet-ssleay-perl libauthen-sasl-perl nsd ldnsutils \
                dnsutils openssl postfix python3-aiosmtpd clang-14 libclang-rt-14-dev procps psmisc \
                libpsl-dev publicsuffix python3-dkim python3-spf opendkim-tools zlib1g-dev rsyslog util-linux \
                systemd man-db prometheus python3-milter opendkim rspamd faketime iproute2

.PHONY: all run check unit fuzz fuzz-long fuzz-targets test-tools bench torture install clean deps asan repro FORCE
all: $(PROGRAMS) $(UNIT_BIN)

# Precompiled headers: common/pch.h (standard and system headers) for the sources; tests/unit/pch.h (the
# same plus doctest) and tests/fuzz/pch.h for the test code, which builds with other flags. Parsing those
# headers was a third of every compile. A PCH is used only with exactly the flags it was built with;
# -Winvalid-pch turns a mismatch into an error instead of a silent slow build. The header is copied
# beside its PCH so that the compiler, finding the PCH unusable, would still have the text.
# PCH=1 (what run, check, asan and bench use) turns them on; a plain `make` (a packager's) includes the
# headers as text: GCC's precompiled image is not reproducible and its objects' debug information
# follows it, while without it two builds of one commit are bit-identical (make repro).
PCH ?= 0
PCH_EXT    := $(if $(filter 1,$(SAN)),pch,gch)
PCH_COMMON := $(BUILD)/pch/common/pch.h
TEST_KINDS := unit fuzz
PCH_FILES  := $(foreach h,$(PCH_COMMON) $(foreach k,$(TEST_KINDS),$(BUILD)/pch/tests/$(k)/pch.h),$(h).$(PCH_EXT))
override CXXFLAGS += -Winvalid-pch

# Built by a pattern rule, so make would delete them as intermediate files after each build.
.SECONDARY: $(PCH_FILES)
$(BUILD)/pch/%.h.$(PCH_EXT): %.h
	@mkdir -p $(dir $@)
	cp $< $(BUILD)/pch/$*.h
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -x c++-header $< -o $@

pch_dep = $(if $(filter 1,$(PCH)),$(1).$(PCH_EXT))
pch_include = -include $(if $(filter 1,$(PCH)),$(1),$(patsubst $(BUILD)/pch/%,%,$(1)))
$(BUILD)/obj/%.o: %.cpp $(call pch_dep,$(PCH_COMMON))
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) $(PCH_FLAGS) -c $< -o $@
PCH_FLAGS = $(call pch_include,$(PCH_COMMON))

# Test code is not worth optimizing: unit tests at -O0 build three times faster and run in a second.
define TEST_OBJ_RULE
$(BUILD)/obj/tests/$(1)/%.o: tests/$(1)/%.cpp $(call pch_dep,$(BUILD)/pch/tests/$(1)/pch.h)
	@mkdir -p $$(dir $$@)
	$$(CXX) $$(CPPFLAGS) $$(CXXFLAGS) $$(PCH_FLAGS) -c $$< -o $$@
$(BUILD)/obj/tests/$(1)/%.o: PCH_FLAGS = $(call pch_include,$(BUILD)/pch/tests/$(1)/pch.h)
$(BUILD)/obj/tests/$(1)/%.o $(BUILD)/pch/tests/$(1)/pch.h.$(PCH_EXT): override CXXFLAGS += -O0
endef
$(foreach k,$(TEST_KINDS),$(eval $(call TEST_OBJ_RULE,$(k))))
# doctest's main must define its implementation macro before doctest is first included.
$(BUILD)/obj/tests/unit/main.o: PCH_FLAGS =

# The version every program prints with --version: a top-level VERSION file, else `git describe`, else
# "unknown"; never a date, so builds are reproducible. Only common/version.o is compiled with it, and
# the stamp file is rewritten only when the string changes, so a new commit rebuilds that one object.
VERSION := $(shell { head -n1 VERSION 2>/dev/null || git describe --tags --always --dirty 2>/dev/null || echo unknown; } | tr -cd 'A-Za-z0-9._+~-')
ifeq ($(VERSION),)
VERSION := unknown
endif
VERSION_STAMP := $(BUILD)/version.stamp
$(VERSION_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' > $@
$(BUILD)/obj/common/version.o: $(VERSION_STAMP)
$(BUILD)/obj/common/version.o: override CXXFLAGS += -DMTA_VERSION='"$(VERSION)"'

define LIB_RULE
$(call lib_file,$(1)): $(patsubst %.cpp,$(BUILD)/obj/%.o,$(call lib_srcs,$(1)))
	@mkdir -p $$(dir $$@)
	rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach c,$(DIRS),$(if $(call lib_srcs,$(c)),$(eval $(call LIB_RULE,$(c)))))

# A program links its own directory's library, the DEPS_ of that directory, and common's.
prog_dir  = $(patsubst %/,%,$(dir $(1)))
prog_libs = $(filter $(foreach d,$(call prog_dir,$(1)) $(DEPS_$(call prog_dir,$(1))) common,$(call lib_file,$(d))),$(LIBS))
define PROG_RULE
$(BUILD)/bin/$(patsubst main_%.cpp,%,$(notdir $(1))): $(BUILD)/obj/$(1:.cpp=.o) $(call prog_libs,$(1))
	@mkdir -p $$(dir $$@)
	$(CXX) $(LDFLAGS) -o $$@ $$< $(call prog_libs,$(1)) $(LDLIBS)
endef
$(foreach m,$(MAINS),$(eval $(call PROG_RULE,$(m))))

$(UNIT_BIN): $(patsubst %.cpp,$(BUILD)/obj/%.o,$(UNIT_SRCS)) $(LIBS)
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) -o $@ $(patsubst %.cpp,$(BUILD)/obj/%.o,$(UNIT_SRCS)) $(LIBS) $(LDLIBS)

# A test tool links the queue manager's library and common's.
define TOOL_RULE
$(BUILD)/tests/$(subst _,-,$(1)): $(BUILD)/obj/tests/tools/$(1).o $(call lib_file,queue-manager) $(call lib_file,common)
	@mkdir -p $$(dir $$@)
	$(CXX) $(LDFLAGS) -o $$@ $$^ $(LDLIBS)
endef
$(foreach t,$(TOOL_SRCS),$(eval $(call TOOL_RULE,$(basename $(notdir $(t))))))
test-tools: $(TOOL_BINS)

# libFuzzer targets (SAN=1 only), built with the sanitizer build's objects. Like the unit tests they link
# every library; the linker takes only the objects a target uses.
define FUZZ_RULE
$(BUILD)/fuzz/$(1): $(BUILD)/obj/tests/fuzz/$(1).o $(LIBS)
	@mkdir -p $$(dir $$@)
	$(CXX) $(LDFLAGS) -fsanitize=fuzzer -o $$@ $$^ $(LDLIBS)
endef
ifeq ($(SAN),1)
$(foreach f,$(FUZZ_SRCS),$(eval $(call FUZZ_RULE,$(basename $(notdir $(f))))))
fuzz-targets: $(FUZZ_BINS)
else
fuzz-targets:
	$(MAKE) SAN=1 fuzz-targets
endif

-include $(ALL_OBJS:.o=.d) $(patsubst %.cpp,$(BUILD)/obj/%.d,$(FUZZ_SRCS)) $(PCH_FILES:.$(PCH_EXT)=.d)

# Installs only what is missing, and only for the targets that promise it (run, check, bench).
deps:
ifneq ($(NO_DEPS),1)
	@missing=""; for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing missing Debian packages:$$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  policy=""; if [ ! -e /usr/sbin/policy-rc.d ]; then policy=/usr/sbin/policy-rc.d; \
	    printf '#!/bin/sh\n# mta: no service starts while its test tools are installed\nexit 101\n' >$$policy; chmod 755 $$policy; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  rc=$$?; [ -n "$$policy" ] && rm -f $$policy; [ $$rc -eq 0 ] || exit 1; \
	  for s in $$missing; do case $$s in postfix|opendkim|rsyslog|prometheus|rspamd) systemctl disable --now $$s >/dev/null 2>&1 || true;; esac; done; \
	fi
endif

# The targets that build on the user's behalf (run, check, asan, bench) use every core: JOBS=1 for a
# serial build. Plain `make` is left as make's own -j says.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
SUBMAKE = $(MAKE) -j$(JOBS) PCH=1

run: deps
	$(SUBMAKE) all
	$(BUILD)/bin/mtad -d

asan:
	$(SUBMAKE) SAN=1 all

unit: all
	$(UNIT_BIN)

check: deps
	$(SUBMAKE) all test-tools
	$(SUBMAKE) SAN=1 all fuzz-targets
	tests/run-all

bench: deps
	$(SUBMAKE) all test-tools
	tests/bench/run

# Short runs as in `make check`; fuzz-long runs every target for FUZZ_RUNS executions, keeping what it
# finds in tests/fuzz/corpus (commit the new inputs that are worth keeping).
fuzz: deps
	$(SUBMAKE) SAN=1 fuzz-targets
	tests/fuzz/run

FUZZ_RUNS ?= 10000000
# Outside CI: the random kill matrix (tests/torture), TORTURE_RUNS runs against the normal build.
TORTURE_RUNS ?= 200
torture: deps
	$(SUBMAKE) all
	tests/torture --runs $(TORTURE_RUNS)

fuzz-long: deps
	$(SUBMAKE) SAN=1 fuzz-targets
	tests/fuzz/run --long $(FUZZ_RUNS)

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/libexec/mta $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)/etc/mta \
	  $(DESTDIR)/lib/systemd/system $(DESTDIR)/var/spool/mta
	for p in $(PROGRAMS); do case $$(basename $$p) in mta-*) install -m 0755 $$p $(DESTDIR)$(PREFIX)/libexec/mta/ ;; *) install -m 0755 $$p $(DESTDIR)$(PREFIX)/sbin/ ;; esac; done
	for m in man/*.[158]; do [ -f "$$m" ] && install -m 0644 $$m $(DESTDIR)$(PREFIX)/share/man/man$${m##*.}/; done; true
	[ -f $(DESTDIR)/etc/mta/mta.conf ] || sed 's|@LIBEXEC@|$(PREFIX)/libexec/mta|' master/mta.conf.sample > $(DESTDIR)/etc/mta/mta.conf
	sed 's|@SBIN@|$(PREFIX)/sbin|' master/mtad.service > $(DESTDIR)/lib/systemd/system/mtad.service

# Two builds of HEAD in different directories, every installed file compared (tests/repro).
repro:
	tests/repro

clean:
	rm -rf build build-asan
