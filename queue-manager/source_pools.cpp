// Source pools and warm-up allowances (see source_pools.h).
#include "queue-manager/source_pools.h"

#include "common/text.h"

#include <charconv>
#include <ctime>

namespace mta::queue {
namespace {

constexpr uint64_t kDay = 86400;
constexpr std::size_t kMaxClasses = 1000;  // per address and day, in a stored state

bool parse_u64(std::string_view s, uint64_t& out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

// "1 FIRST_DAY DAY CLASS=COUNT ..." (classes are table keys or names: no spaces, no '=').
std::string SourcePools::encode(const State& s) {
    std::string out = "1 " + std::to_string(s.first_day) + " " + std::to_string(s.day);
    for (auto& [cls, n] : s.counts) out.append(" ").append(cls).append("=").append(std::to_string(n));
    return out;
}

bool SourcePools::decode(std::string_view bytes, State& out, std::string& err) {
    out = State{};
    std::vector<std::string_view> w = split(bytes, ' ');
    if (w.size() < 3 || w[0] != "1") { err = "unknown warm-up state format"; return false; }
    if (!parse_u64(w[1], out.first_day) || !parse_u64(w[2], out.day)) { err = "bad warm-up day"; return false; }
    if (w.size() - 3 > kMaxClasses) { err = "too many classes"; return false; }
    for (std::size_t i = 3; i < w.size(); i++) {
        std::size_t eq = w[i].rfind('=');
        uint64_t n = 0;
        if (eq == std::string_view::npos || eq == 0 || !parse_u64(w[i].substr(eq + 1), n)) {
            err = "bad warm-up count";
            return false;
        }
        out.counts[std::string(w[i].substr(0, eq))] = n;
    }
    return true;
}

void SourcePools::configure(std::vector<SourceAddress> addresses) {
    addresses_ = std::move(addresses);
    members_.clear();
    for (std::size_t i = 0; i < addresses_.size(); i++)
        for (auto& pool : addresses_[i].pools) members_[pool].push_back(i);
    for (auto it = turn_.begin(); it != turn_.end();)
        it = members_.count(it->first) ? std::next(it) : turn_.erase(it);
}

const SourcePools::State* SourcePools::state(const std::string& address) const {
    auto it = state_.find(address);
    return it == state_.end() ? nullptr : &it->second;
}

uint64_t SourcePools::day_number(const std::string& address, uint64_t now) const {
    const State* s = state(address);
    uint64_t today = now / kDay;
    if (!s || !s->first_day || s->first_day > today) return 1;
    return today - s->first_day + 1;
}

std::optional<uint64_t> SourcePools::allowance_left(const SourceAddress& a, const std::string& cls, uint64_t now) const {
    uint64_t n = day_number(a.address, now);
    if (a.warmup.empty() || n > a.warmup.size()) return std::nullopt;
    uint64_t limit = a.warmup[n - 1], used = 0;
    if (const State* s = state(a.address); s && s->day == now / kDay)
        if (auto c = s->counts.find(cls); c != s->counts.end()) used = c->second;
    return used >= limit ? 0 : limit - used;
}

SourcePools::Choice SourcePools::pick(const std::vector<std::string>& pools, const std::string& cls, uint64_t now) {
    Choice c;
    std::string used_up;  // which allowances are spent, for the deferral text
    for (auto& pool : pools) {
        auto m = members_.find(pool);
        if (m == members_.end()) continue;
        std::size_t& turn = turn_[pool];
        for (std::size_t k = 0; k < m->second.size(); k++) {
            const SourceAddress& a = addresses_[m->second[(turn + k) % m->second.size()]];
            auto left = allowance_left(a, cls, now);
            if (left && *left == 0) {
                uint64_t day = day_number(a.address, now);  // within the schedule: its allowance is spent
                if (!used_up.empty()) used_up += ", ";
                used_up += a.address + " day " + std::to_string(day) + ": " + std::to_string(a.warmup[day - 1]);
                continue;
            }
            turn = (turn + k + 1) % m->second.size();
            c.source = &a;
            c.pool = pool;
            return c;
        }
    }
    const std::string names = join(pools);
    if (used_up.empty()) {
        c.why = "source pool " + names + " has no address in source_addresses";
        return c;
    }
    c.wait_until = (now / kDay + 1) * kDay;
    c.why = "warm-up allowance for today used up in source pool " + names + " to destination class " + cls + " (" +
            used_up + "); waits until " + utc_date_text(now / kDay + 1) + " 00:00 UTC";
    return c;
}

void SourcePools::sent(const std::string& address, const std::string& cls, uint64_t now) {
    State& s = state_[address];
    uint64_t today = now / kDay;
    if (!s.first_day) s.first_day = today;
    if (s.day != today) {
        s.day = today;
        s.counts.clear();
    }
    if (s.counts.size() < kMaxClasses || s.counts.count(cls)) s.counts[cls]++;
    dirty_.insert(address);
}

void SourcePools::set_first_day(const std::string& address, uint64_t day) {
    state_[address].first_day = day;
    dirty_.insert(address);
}

std::vector<std::pair<std::string, std::string>> SourcePools::dirty() {
    std::vector<std::pair<std::string, std::string>> out;
    for (auto& a : dirty_) out.emplace_back(a, encode(state_[a]));
    dirty_.clear();
    return out;
}

bool parse_utc_date(std::string_view s, uint64_t& day) {
    uint64_t y = 0, m = 0, d = 0;
    if (s.size() != 10 || s[4] != '-' || s[7] != '-' || !parse_u64(s.substr(0, 4), y) || !parse_u64(s.substr(5, 2), m) ||
        !parse_u64(s.substr(8, 2), d) || y < 1970 || m < 1 || m > 12 || d < 1 || d > 31)
        return false;
    struct tm tm {};
    tm.tm_year = int(y) - 1900;
    tm.tm_mon = int(m) - 1;
    tm.tm_mday = int(d);
    time_t t = timegm(&tm);
    struct tm back {};
    if (t < 0 || !gmtime_r(&t, &back) || back.tm_mday != int(d)) return false;  // 2026-02-30
    day = uint64_t(t) / kDay;
    return true;
}

std::string utc_date_text(uint64_t day) {
    time_t t = time_t(day * kDay);
    struct tm tm {};
    gmtime_r(&t, &tm);
    char buf[16];
    strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
    return buf;
}

}  // namespace mta::queue
