// Clock: time and randomness as the queue manager sees them, injected so tests are deterministic.
#pragma once
#include <cstdint>
#include <functional>

namespace mta::queue {

struct Clock {
    std::function<uint64_t()> now;       // unix seconds
    std::function<double()> jitter;      // uniform in [-1, 1]
};
Clock system_clock();

}  // namespace mta::queue
