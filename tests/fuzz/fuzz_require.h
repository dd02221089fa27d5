// The fuzz targets' assertion: a broken invariant aborts, which libFuzzer reports as a crash and saves
// the input that caused it.
#pragma once
#include <cstdlib>

inline void require(bool cond) {
    if (!cond) std::abort();
}
