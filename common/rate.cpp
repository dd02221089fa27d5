// Fixed-window per-key event counters for the per-client rate limits (see rate.h).
#include "common/rate.h"

namespace mta {

uint64_t RateCounter::hit(const std::string& key, std::time_t now) {
    if (now - last_prune_ >= window_ || now < last_prune_) prune(now);
    auto it = entries_.find(key);
    if (it == entries_.end()) {
        if (entries_.size() >= max_keys_) prune(now);
        if (entries_.size() >= max_keys_) return 1;
        it = entries_.emplace(key, Entry{now, 0}).first;
    }
    Entry& e = it->second;
    if (e.count == 0 || expired(e, now)) e = Entry{now, 0};
    return ++e.count;
}

uint64_t RateCounter::count(const std::string& key, std::time_t now) const {
    auto it = entries_.find(key);
    if (it == entries_.end() || expired(it->second, now)) return 0;
    return it->second.count;
}

void RateCounter::prune(std::time_t now) {
    last_prune_ = now;
    for (auto it = entries_.begin(); it != entries_.end();)
        it = expired(it->second, now) ? entries_.erase(it) : std::next(it);
}

}  // namespace mta
