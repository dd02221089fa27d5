// Per-destination traffic shaping (see shaping.h).
#include "queue-manager/shaping.h"

#include <algorithm>

#include "common/address.h"
#include "queue-manager/bounce_class.h"

namespace mta::queue {
namespace {

const DestinationPolicy kNoPolicy{};
constexpr uint64_t kCutQuiet = 60;  // the other replies of the same burst do not cut again

uint32_t min_limit(uint32_t a, uint32_t b) { return a == 0 ? b : b == 0 ? a : std::min(a, b); }

}  // namespace

// A slot counts until its end has left the window: never early, at most one slot late, so no true
// sliding window of `span` seconds ever holds more than a limit allowed.
void WindowCount::prune(uint64_t now) {
    while (!slots_.empty() && slots_.front().first + slot_ + span_ <= now) slots_.pop_front();
}

void WindowCount::add(uint64_t now, uint64_t n) {
    uint64_t start = now - now % slot_;
    if (!slots_.empty() && slots_.back().first == start) slots_.back().second += n;
    else slots_.emplace_back(start, n);
    prune(now);
}

uint64_t WindowCount::count(uint64_t now) {
    prune(now);
    uint64_t n = 0;
    for (auto& s : slots_) n += s.second;
    return n;
}

uint64_t WindowCount::free_at(uint64_t now, uint64_t limit) {
    uint64_t n = count(now);
    if (n < limit) return 0;
    for (auto& [start, c] : slots_) {
        n -= c;
        if (n < limit) return start + slot_ + span_;
    }
    return now + span_;  // not reached: the last slot leaves the window by then
}

void Shaper::configure(uint64_t slowdown_time, std::vector<std::string> patterns) {
    slowdown_time_ = std::max<uint64_t>(1, slowdown_time);
    patterns_ = std::move(patterns);
}

void Shaper::set_policy(const std::string& key, const DestinationPolicy& p) { state_[key].policy = p; }

const DestinationPolicy& Shaper::policy(const std::string& key) const {
    auto it = state_.find(key);
    return it == state_.end() ? kNoPolicy : it->second.policy;
}

uint32_t Shaper::per_minute(const std::string& key) const {
    auto it = state_.find(key);
    return it == state_.end() ? 0 : min_limit(it->second.policy.max_per_minute, it->second.cut);
}

bool Shaper::throttled(const std::string& key) const {
    auto it = state_.find(key);
    return it != state_.end() && it->second.cut != 0;
}

uint64_t Shaper::next_free(const std::string& key, uint64_t now, std::string& why) {
    auto it = state_.find(key);
    if (it == state_.end()) return 0;
    State& s = it->second;
    uint64_t t = 0;
    if (uint32_t pm = min_limit(s.policy.max_per_minute, s.cut)) {
        t = s.minute.free_at(now, pm);
        if (t)
            why = s.cut && (s.policy.max_per_minute == 0 || s.cut < s.policy.max_per_minute)
                      ? "rate cut to " + std::to_string(pm) + "/minute after a slow-down reply"
                      : "max_per_minute=" + std::to_string(pm) + " (destination_policy " + s.policy.key + ")";
    }
    if (s.policy.max_per_hour) {
        if (uint64_t h = s.hour.free_at(now, s.policy.max_per_hour); h > t) {
            t = h;
            why = "max_per_hour=" + std::to_string(s.policy.max_per_hour) + " (destination_policy " + s.policy.key + ")";
        }
    }
    return t;
}

void Shaper::sent(const std::string& key, uint64_t now) {
    State& s = state_[key];
    s.minute.add(now);
    if (s.policy.max_per_hour) s.hour.add(now);
}

uint64_t Shaper::spacing(const std::string& key) const {
    auto it = state_.find(key);
    if (it == state_.end()) return 1;
    if (uint32_t pm = min_limit(it->second.policy.max_per_minute, it->second.cut)) return std::max<uint64_t>(1, 60 / pm);
    if (it->second.policy.max_per_hour) return std::max<uint64_t>(1, 3600 / it->second.policy.max_per_hour);
    return 1;
}

bool Shaper::is_slowdown(const std::string& text) const {
    if (slowdown_reply(text)) return true;
    if (patterns_.empty()) return false;
    std::string t = addr::lower(std::string_view(text).substr(0, 2048));
    for (auto& p : patterns_)
        if (t.find(p) != std::string::npos) return true;
    return false;
}

Shaper::Event Shaper::slowdown(const std::string& key, uint64_t now) {
    State& s = state_[key];
    if (!s.policy.adaptive || (s.cut && now < s.last_change + kCutQuiet)) return {};
    // What went out in the last minute is the rate the receiver complained about, unless a limit was lower.
    auto observed = uint32_t(std::min<uint64_t>(s.minute.count(now), UINT32_MAX));
    uint32_t current = min_limit(min_limit(s.policy.max_per_minute, s.cut), std::max<uint32_t>(observed, 1));
    if (!s.cut) s.cut_from = min_limit(s.policy.max_per_minute, std::max<uint32_t>(observed, 2));
    s.cut = std::max<uint32_t>(1, current / 2);
    s.last_change = now;
    return {Event::cut, s.cut};
}

Shaper::Event Shaper::recover(const std::string& key, uint64_t now) {
    auto it = state_.find(key);
    if (it == state_.end() || !it->second.cut || now < it->second.last_change + slowdown_time_) return {};
    State& s = it->second;
    s.last_change = now;
    uint32_t next = s.cut + s.cut / 2 + 1;
    if (next >= s.cut_from) {
        s.cut = s.cut_from = 0;
        return {Event::restored, s.policy.max_per_minute};
    }
    s.cut = next;
    return {Event::step, s.cut};
}

bool Shaper::idle(const std::string& key, uint64_t now) {
    auto it = state_.find(key);
    if (it == state_.end()) return true;
    State& s = it->second;
    return !s.cut && s.minute.empty(now) && s.hour.empty(now);
}

}  // namespace mta::queue
