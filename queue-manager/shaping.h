// Per-destination traffic shaping (issue 13): the limits of destination_policy (messages per minute and
// per hour over sliding windows) and the adaptive rule (a "slow down" reply halves the destination's
// rate per minute for destination_slowdown_time, after which it grows back by half a step at a time
// until it is where it was). Pure bookkeeping on an injected clock; the scheduler asks before each job
// and the queue postpones what may not go yet. See mta-queue(8), Traffic shaping.
#pragma once
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/routing.h"

namespace mta::queue {

// Messages counted in slots of `slot` seconds over the last `span` seconds.
class WindowCount {
public:
    WindowCount(uint64_t slot, uint64_t span) : slot_(slot), span_(span) {}
    void add(uint64_t now, uint64_t n = 1);
    uint64_t count(uint64_t now);
    // 0 when fewer than `limit` are counted now; else the first time at which fewer will be.
    uint64_t free_at(uint64_t now, uint64_t limit);
    bool empty(uint64_t now) { return count(now) == 0; }

private:
    void prune(uint64_t now);
    uint64_t slot_, span_;
    std::deque<std::pair<uint64_t, uint64_t>> slots_;  // (slot start, count), oldest first
};

class Shaper {
public:
    struct Event {  // what changed, for the log line
        enum Kind { none, cut, step, restored } kind = none;
        uint32_t rate = 0;  // per minute now (restored: the limit of the policy, 0 = none)
    };

    void configure(uint64_t slowdown_time, std::vector<std::string> patterns);
    // The policy routing found for the destination's latest recipient.
    void set_policy(const std::string& key, const DestinationPolicy& p);
    const DestinationPolicy& policy(const std::string& key) const;
    // Messages per minute allowed now: the policy's, or the adaptive cut when lower; 0 = no limit.
    uint32_t per_minute(const std::string& key) const;
    bool throttled(const std::string& key) const;  // an adaptive cut is in force

    // 0: a message may go now. Otherwise the first second at which one may, and `why` says which limit.
    uint64_t next_free(const std::string& key, uint64_t now, std::string& why);
    void sent(const std::string& key, uint64_t now);
    // Seconds between two messages at the limit that holds the destination now (for spreading a backlog).
    uint64_t spacing(const std::string& key) const;

    // Whether a reply means "slow down": slowdown_reply() (bounce_class.h) or one of the patterns.
    bool is_slowdown(const std::string& text) const;
    // A slow-down reply for the destination: cuts its rate (at most once a minute; not with adaptive=no).
    Event slowdown(const std::string& key, uint64_t now);
    // The rate grows back step by step once destination_slowdown_time has passed since the last change.
    Event recover(const std::string& key, uint64_t now);
    // Nothing to remember (no cut, no counts): the state may go.
    bool idle(const std::string& key, uint64_t now);
    void forget(const std::string& key) { state_.erase(key); }

private:
    struct State {
        DestinationPolicy policy;
        WindowCount minute{1, 60}, hour{60, 3600};
        uint32_t cut = 0;       // adaptive per-minute limit (0 = none)
        uint32_t cut_from = 0;  // the rate in force before the first cut: where recovery stops
        uint64_t last_change = 0;
    };
    uint64_t slowdown_time_ = 600;
    std::vector<std::string> patterns_;
    std::unordered_map<std::string, State> state_;
};

}  // namespace mta::queue
