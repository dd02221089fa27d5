// The real clock: time(2) and a seeded uniform generator for retry jitter.
#include "queue-manager/clock.h"

#include <ctime>
#include <memory>
#include <random>

namespace mta::queue {

Clock system_clock() {
    auto rng = std::make_shared<std::mt19937_64>(std::random_device{}());
    return Clock{[] { return uint64_t(time(nullptr)); },
                 [rng] { return std::uniform_real_distribution<double>(-1.0, 1.0)(*rng); }};
}

}  // namespace mta::queue
