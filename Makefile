# The tutorial's top-level Makefile: every chapter builds on its own
# (`make -C 01-blocking`); this file only runs them all together.
#
#   make                  build every chapter and the test client
#   make test             build everything, then run every chapter's bats tests
#   make test CH=02       ... only one chapter's tests
#   make run              build and start the newest chapter's server
#   make run CH=01 ARGS='-v -p 7000'
#   make doctor           what the tutorial needs, and whether this machine has it
#   make diff CH=03       what chapter 03 changed in server.c since 02: its lesson
#   make bench            benchmarks (see bench/README.md)
#   make mutants          plant each known bug (mutants/) and check the tests catch it
#   make syscalls         system calls per echo, each server under strace (docs/syscalls.md)
#   make stress           make test 10 times on a busy machine (tools/stress)
#   make stress RUNS=5 WHAT='make mutants' LOAD=cpu
#   make clean
#
# Switches, passed down to every chapter:
#   SANITIZE=1   build with AddressSanitizer and UndefinedBehaviorSanitizer
#   WERROR=1     turn every warning into an error (CI uses it)
#   CC=clang     another compiler

CHAPTERS := $(sort $(wildcard [0-9][0-9]-*))
NEWEST   := $(lastword $(CHAPTERS))
CH       ?=
# CH=01 or CH=01-blocking both name a chapter.
CHAPTER   = $(if $(CH),$(firstword $(filter $(CH)%,$(CHAPTERS))),$(NEWEST))
ARGS     ?=

.PHONY: all test run bench clean $(CHAPTERS) tests

all: $(CHAPTERS) tests

$(CHAPTERS):
	$(MAKE) -C $@

tests:
	$(MAKE) -C tests SANITIZE=

# Tests wait on events with deadlines; under the sanitizers everything runs
# several times slower, so the deadlines grow with them.
test: all
	@tests/ensure-bats
	$(if $(SANITIZE),WAIT_SECONDS=20 )bats $(if $(CH),tests/$(CHAPTER).bats,tests)

# Also builds the test client, to talk to the server with (README.md).
run: tests
	@test -n "$(CHAPTER)" || { echo "no chapter matches CH=$(CH)" >&2; exit 2; }
	$(MAKE) -C $(CHAPTER)
	./$(CHAPTER)/echo-server $(ARGS)

# One line for each thing make test needs; fails only if one is missing.
.PHONY: doctor
doctor:
	@CC="$(CC)" tools/doctor

# A chapter's server.c against the chapter before's (default: the newest
# chapter), with git's histogram diff, which keeps a moved or rewritten
# function in one piece more often than plain diff -u; diff -u without git.
# A chapter grown from an earlier one than the one before says so here:
# 06 is 04's server turned from readiness to completion (06's README says
# why not 05's).
DIFF_BASE_06-io-uring := 04-epoll
.PHONY: diff
diff:
	@test -n "$(CHAPTER)" || { echo "no chapter matches CH=$(CH)" >&2; exit 2; }
	@previous=$(DIFF_BASE_$(CHAPTER)); \
	if [ -z "$$previous" ]; then for ch in $(CHAPTERS); do [ $$ch = $(CHAPTER) ] && break; previous=$$ch; done; fi; \
	if [ -z "$$previous" ]; then \
		echo "$(CHAPTER) is the first chapter: read its server.c from the top" >&2; exit 2; \
	fi; \
	if command -v git >/dev/null 2>&1; then \
		git diff --no-index --histogram $$previous/server.c $(CHAPTER)/server.c; \
	else \
		diff -u $$previous/server.c $(CHAPTER)/server.c; \
	fi; \
	test $$? -le 1

bench: all
	$(MAKE) -C bench

# Counts, not timing (bench/README.md): writes its table into docs/syscalls.md.
.PHONY: syscalls
syscalls: all
	SYSCALLS_COMMAND='make syscalls' bench/syscalls --publish

# The planted bugs (mutants/README.md; spoilers for the exercises): each is
# applied to a scratch copy of its chapter, built, and the tests named for it
# run. Fails unless every one is caught. `make mutants NAMES=small-echoes-lag-40ms`
# tries some only.
.PHONY: mutants
mutants: tests
	mutants/run $(NAMES)

# A check run RUNS times beside busy loops on every core and a second copy
# of the suite (LOAD=cpu|suite|both|none): a test that fails one run in
# twenty fails somebody's class.
RUNS ?= 10
LOAD ?= both
WHAT ?= make test
.PHONY: stress
stress:
	tools/stress -n "$(RUNS)" -l "$(LOAD)" $(WHAT)

clean:
	for dir in $(CHAPTERS) tests; do $(MAKE) -C $$dir clean; done

# Exercises (exercises/README.md): bug hunts and builds that check themselves.
#   make exercise               the list
#   make exercise EX=NAME       your own copy of the chapter, in work/NAME
#   make check EX=NAME          builds your copy and runs its tests: PASSED or NOT YET
#                               (a bug hunt: the bug's tests, then the whole chapter)
#   make hint EX=NAME [LEVEL=N] one more hint each time (or hint N)
.PHONY: exercise check hint
exercise:
	@exercises/run $(if $(EX),start "$(EX)",list)

hint:
	@exercises/run hint "$(EX)" $(LEVEL)

# The checks drive the learner's server with the test client.
check:
	@$(MAKE) -s --no-print-directory tests
	@FULL="$(FULL)" exercises/run check "$(EX)"
