// Per-client event counters for the rate limits (connections, AUTH failures): a fixed window per key
// that starts with the key's first event, like Postfix's anvil. Pure bookkeeping, no I/O; keys are
// numeric client addresses checked by the caller. At most `max_keys` keys are tracked: past that, an
// event for a new key is not recorded (fail open) rather than letting a flood of addresses grow memory.
#pragma once
#include <cstdint>
#include <ctime>
#include <map>
#include <string>

namespace mta {

class RateCounter {
public:
    explicit RateCounter(std::time_t window = 60, std::size_t max_keys = 100000)
        : window_(window), max_keys_(max_keys) {}

    // Records one event for `key` at `now`; returns the events in the key's current window, this one
    // included (1 when the table is full and the key is new: the event is not recorded).
    uint64_t hit(const std::string& key, std::time_t now);
    // Events in the key's current window, without recording one.
    uint64_t count(const std::string& key, std::time_t now) const;
    std::size_t size() const { return entries_.size(); }

private:
    struct Entry {
        std::time_t start = 0;
        uint64_t count = 0;
    };
    bool expired(const Entry& e, std::time_t now) const { return now - e.start >= window_ || now < e.start; }
    void prune(std::time_t now);  // memory: only keys seen within the last window stay

    std::time_t window_;
    std::size_t max_keys_;
    std::time_t last_prune_ = 0;
    std::map<std::string, Entry> entries_;
};

}  // namespace mta
