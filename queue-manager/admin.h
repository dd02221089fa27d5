// The queue's admin commands as pure functions: parse the command line mtad relays from mtaqueue/mailq
// (untrusted: any local user may send one), match messages against filters, and format listings as
// text or JSON. No I/O here; queue-manager/admin_ops.cpp applies them to the live queue.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/json.h"
#include "queue-manager/bounce_class.h"
#include "queue-manager/records.h"
#include "queue-manager/source_pools.h"

namespace mta::queue {

struct AdminFilter {
    std::vector<uint64_t> ids;        // explicit queue ids (any of)
    std::string from, to, domain;     // exact, case-insensitive; from "<>" is the null sender
    uint64_t older_than = 0;          // seconds; 0 = no age filter
    std::string state;                // queued|deferred|held|bounced|in-flight|corrupt; "" = any
    bool empty() const { return ids.empty() && from.empty() && to.empty() && domain.empty() && !older_than && state.empty(); }
};

struct AdminCommand {
    std::string verb;     // list, show, why, hold, release, delete, flush, requeue, stats, suppression, warmup, tlsrpt
    AdminFilter filter;
    bool json = false;
    bool corrupt = false; // list --corrupt: only messages in the corrupt state, plus quarantined records
    bool all = false;     // hold/release/delete without filters need --all
    // suppression list|add|remove: the sub-command, its addresses (lower-cased) and add's --ttl (0 = the
    // configured suppression_ttl).
    std::string sub;
    std::vector<std::string> addresses;
    uint64_t ttl = 0;
    // warmup list | warmup set ADDRESS --first-used DATE: sub, addresses[0] and the day (days since the epoch).
    uint64_t first_day = 0;
    // Who may run it: everyone may list/show their own mail and read the counters and the source
    // addresses; the rest is the admin's.
    bool privileged_only() const {
        return verb != "list" && verb != "show" && verb != "why" && verb != "stats" && !(verb == "warmup" && sub == "list");
    }
};

// Parses "VERB [ID...] [--from A] [--to A] [--domain D] [--older-than DUR] [--state S] [--json] [--corrupt]
// [--all]", "stats [--json]", "suppression list|add|remove [ADDRESS...] [--ttl DUR] [--json]" and
// "warmup [list] [--json]" / "warmup set IP-ADDRESS --first-used YYYY-MM-DD", "tlsrpt [list] [--json]" /
// "tlsrpt send". False
// with a human-readable err on anything unexpected.
bool parse_admin(std::string_view line, AdminCommand& out, std::string& err);

struct RcptView {
    uint32_t index = 0;
    RecipientRecord rec;
    bool inflight = false;  // being delivered right now (in memory only)
};
struct MessageView {
    uint64_t msgid = 0;
    MessageRecord msg;
    std::vector<RcptView> rcpts;
    std::string headers;    // show: the message's header block
};

std::string rcpt_state_name(const RcptView& r);
std::string message_state_name(const MessageView& v);  // corrupt, in-flight, held, deferred, queued, bounced

// Printable for a terminal: escapes anything outside printable ASCII as \xHH.
std::string printable(std::string_view s);

// "2026-12-03 11:09:03Z", "-" for 0: the admin tools' time format.
std::string utc_text(uint64_t t);

bool matches(const AdminFilter& f, const MessageView& v, uint64_t now);

using mta::json_string;  // common/json.h

// A listing as it streams (mtaqueue list on a big queue): begin(), add() for each message in queue order,
// then end(), each giving the text that follows. JSON has "count" last, where it is known.
class ListFormatter {
public:
    ListFormatter(bool json, uint64_t now, std::size_t quarantined) : json_(json), now_(now), quarantined_(quarantined) {}
    std::string begin() const;
    std::string add(const MessageView& v);
    std::string end() const;
    std::size_t count() const { return count_; }

private:
    bool json_;
    uint64_t now_;
    std::size_t quarantined_, count_ = 0, rcpts_ = 0;
    uint64_t bytes_ = 0;
};
std::string format_list_text(const std::vector<MessageView>& msgs, uint64_t now);
std::string format_list_json(const std::vector<MessageView>& msgs, uint64_t now, std::size_t quarantined);
std::string format_show_text(const MessageView& v, uint64_t now);
std::string format_show_json(const MessageView& v, uint64_t now);

// mtaqueue stats: failed attempts by bounce class since mta-queue started, and the suppression list size.
std::string format_stats_text(const ClassCounts& c, std::size_t suppressed, uint64_t now);
std::string format_stats_json(const ClassCounts& c, std::size_t suppressed, uint64_t now);

// mtaqueue warmup: every source address with its pools, EHLO name, day of warm-up and today's counts.
std::string format_warmup_text(const SourcePools& sp, uint64_t now);
std::string format_warmup_json(const SourcePools& sp, uint64_t now);

struct SuppressionView {
    std::string address;
    SuppressionRecord rec;
};
std::string format_suppression_text(const std::vector<SuppressionView>& list);
std::string format_suppression_json(const std::vector<SuppressionView>& list, uint64_t now);

}  // namespace mta::queue
