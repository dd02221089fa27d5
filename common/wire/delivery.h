// deliver (queue -> mta-smtp / mta-local) and deliver_result (deliverer -> queue): one struct, one
// encoder and one strict decoder each, used by the queue and by both deliverers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/ipc.h"
#include "common/wire/envelope.h"

namespace mta::wire {

inline constexpr uint64_t kMaxRcptIndex = UINT32_MAX;  // the queue numbers a message's recipients with u32
// Recipients in one deliver (the queue's job size): small enough that the result for all of them, at
// its fixed 34 octets per recipient plus some text, always fits one datagram.
inline constexpr std::size_t kMaxDeliverRecipients = 1000;

struct DeliverRcpt {
    uint64_t index = 0;   // the queue's recipient index, unique within one deliver
    std::string addr;     // canonical "local@domain", never empty
    uint64_t notify = 0;  // ipc::kNotify* bits, 0 = not given
    std::string orcpt;    // DSN ORCPT "type;address" as received, "" = not given
};

struct Deliver : Envelope {
    uint64_t msgid = 0;
    std::string nexthop;    // domain, or [host]:port; "" only for a local recipient without a domain
                            // (RCPT TO:<Postmaster>), which mta-smtp never gets
    std::string tls_level;  // per-destination level from smtp_tls_policy_map, "" = smtp_tls_level
    uint64_t max_per_connection = 0;  // destination_policy: a connection carries at most this many; 0 = any
    std::string source_address;  // source pools: the local address to connect from ("" = smtp_bind_address)
    std::string source_helo;     // its EHLO name ("" = smtp_helo_name); only with source_address
    std::vector<DeliverRcpt> rcpts;
    UniqueFd body;          // O_RDONLY body file
};

// Fields in the queue's order (envelope, then per recipient rcpt, rcpt_index, rcpt_notify, rcpt_orcpt);
// empty optional texts are left out. The body fd travels when `d.body` holds one (it is moved).
ipc::Message encode(Deliver& d, uint64_t reqid);
// Strict: msgid, sender, nexthop (may be "") and one body fd required; every recipient group needs rcpt and
// rcpt_index (in either order: see fields.h), indexes unique. Moves the fd out of `m`.
bool decode(ipc::Message& m, Deliver& out, std::string& err);

struct RcptResult {
    uint32_t index = 0;
    ipc::DeliveryStatus status = ipc::DeliveryStatus::deferred;
    std::string text;     // clean text, at most kMaxResultText
    uint8_t handoff = 0;  // delivered only: 1 = relayed to a next hop without DSN, 2 = with DSN
};

inline constexpr std::size_t kMaxTlsrpt = 16 * 1024;  // a job's TLS-RPT counts, encoded

struct DeliverResult {
    uint64_t msgid = 0;
    std::vector<RcptResult> results;
    // TLS-RPT (optional): this attempt's sessions under DANE/MTA-STS policies (tlsrpt::Aggregate::encode,
    // at most kMaxTlsrpt; the queue decodes it as untrusted bytes) and the policy domain's mailto rua
    // addresses, comma-separated.
    std::string tlsrpt, tlsrpt_rua;
    std::string mx_host;  // optional: the recipient domain's most preferred MX host (destination_policy mx:)
};

// msgid [, tlsrpt, tlsrpt_rua] [, mx_host], then per recipient rcpt_index, status, text [, dsn_handoff]. Texts are made clean and cut to an
// equal share of the IPC size cap (at most kMaxResultText), so the result for every recipient one
// deliver can carry fits one datagram (a result's fixed part per recipient is smaller than a deliver's).
ipc::Message encode(const DeliverResult& r, uint64_t reqid);
// Strict: groups open at rcpt_index and need a status; dsn_handoff only on a delivered recipient.
bool decode(const ipc::Message& m, DeliverResult& out, std::string& err);

}  // namespace mta::wire
