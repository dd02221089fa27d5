// Source address pools and warm-up (issue 13): which local address a message leaves from, and how many
// messages a new address may send per day while receivers learn its reputation. The addresses come
// from the source_addresses table (pool membership, EHLO name, warm-up schedule); a message's pool list
// from sender_source_pools (its sender domain) or else destination_policy's pool=. The first pool with
// an address that has allowance left today is used, its addresses taken in turn; later pools in the
// list take the overflow ("spill"). With none left, the message waits for the next UTC day.
// Warm-up counts are per address, per destination class (destination_policy class=, else its key) and
// per UTC day; the day number of an address counts from the UTC day it first sent. Pure bookkeeping on
// the times it is given; the queue persists State in its store (see mta-queue(8), Source addresses).
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/routing.h"

namespace mta::queue {

class SourcePools {
public:
    // What an address has done: the UTC day (days since the epoch) it first sent, and the messages it
    // sent on `day` per destination class. Kept across restarts (encode/decode).
    struct State {
        uint64_t first_day = 0;  // 0 = never used
        uint64_t day = 0;        // the day `counts` are for
        std::map<std::string, uint64_t> counts;
        bool operator==(const State&) const = default;
    };
    static std::string encode(const State& s);
    static bool decode(std::string_view bytes, State& out, std::string& err);

    struct Choice {
        const SourceAddress* source = nullptr;  // null: nothing may go today (or the pools are empty)
        std::string pool;
        uint64_t wait_until = 0;  // null source: the next UTC midnight (0: the pools have no address at all)
        std::string why;          // null source: for the deferral text
    };

    // The table was (re)read: the addresses in force now. State of addresses no longer listed is kept
    // (they may come back), but they are not chosen.
    void configure(std::vector<SourceAddress> addresses);
    bool empty() const { return addresses_.empty(); }

    // A source for one message to destination class `cls`, from `pools` in order.
    Choice pick(const std::vector<std::string>& pools, const std::string& cls, uint64_t now);
    // One message was handed to a deliverer from `address`.
    void sent(const std::string& address, const std::string& cls, uint64_t now);

    // Messages `a` may still send today to `cls` (nullopt: no limit, it is warm).
    std::optional<uint64_t> allowance_left(const SourceAddress& a, const std::string& cls, uint64_t now) const;
    // 1 on the day of first use (and before any use), 2 the next UTC day, ...
    uint64_t day_number(const std::string& address, uint64_t now) const;

    // Persistence: load() at start-up; dirty() lists the addresses changed since the last call, with
    // their state encoded, for the store.
    void load(const std::string& address, const State& s) { state_[address] = s; }
    std::vector<std::pair<std::string, std::string>> dirty();
    // mtaqueue warmup set: the address counts as first used on `day` (days since the epoch).
    void set_first_day(const std::string& address, uint64_t day);

    // For mtaqueue warmup list.
    const std::vector<SourceAddress>& addresses() const { return addresses_; }
    const State* state(const std::string& address) const;

private:
    std::vector<SourceAddress> addresses_;
    std::unordered_map<std::string, std::vector<std::size_t>> members_;  // pool -> indexes into addresses_
    std::unordered_map<std::string, std::size_t> turn_;                  // pool -> next member to try
    std::unordered_map<std::string, State> state_;
    std::set<std::string> dirty_;  // addresses changed since the last dirty()
};

// "YYYY-MM-DD" -> days since the epoch; false when not a valid date.
bool parse_utc_date(std::string_view s, uint64_t& day);
std::string utc_date_text(uint64_t day);

}  // namespace mta::queue
