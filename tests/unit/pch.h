// Precompiled for the unit tests (see common/pch.h): the same headers plus doctest, whose parse is most of
// what compiling a test file costs. main.cpp builds without it, since it must define doctest's
// implementation macro before the first include.

#include "common/pch.h"

#include <doctest/doctest.h>
