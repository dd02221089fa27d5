// The queue's IPC payloads as pure functions: validate smtpd's `commit` and a deliverer's
// `deliver_result` (trusting nothing: any inconsistency means malformed), and build `deliver`.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/ipc.h"
#include "queue-manager/records.h"

namespace mta::queue {

inline constexpr std::size_t kMaxCommitRecipients = 100000;

struct CommitRequest {
    uint64_t msgid = 0;
    MessageRecord msg;                    // size left 0: the queue measures the body itself
    std::vector<RecipientRecord> rcpts;
    bool has_arrival = false;
};

// False (with err) when the message is malformed: unknown or duplicate fields, bad values, no recipients.
bool parse_commit(const ipc::Message& m, CommitRequest& out, std::string& err);

struct RcptResult {
    uint32_t index = 0;
    ipc::DeliveryStatus status = ipc::DeliveryStatus::deferred;
    std::string text;
    uint8_t handoff = 0;  // ipc::Tag::dsn_handoff: 1 = relayed to a next hop without DSN, 2 = with DSN
};
struct DeliverResult {
    uint64_t msgid = 0;
    std::vector<RcptResult> results;
};
bool parse_deliver_result(const ipc::Message& m, DeliverResult& out, std::string& err);

// Lower-cased domain of a recipient ("" if it has none).
std::string rcpt_domain(std::string_view addr);

// `deliver` for the given recipients (rcpt first in each group, then rcpt_index, rcpt_notify, rcpt_orcpt);
// `tls_level` (from smtp_tls_policy_map) travels only when set.
ipc::Message make_deliver(uint64_t msgid, const MessageRecord& m, const std::string& nexthop,
                          const std::vector<std::pair<uint32_t, const RecipientRecord*>>& rcpts,
                          const std::string& tls_level = "");
// Bytes a recipient adds to a `deliver`, to keep each job under the IPC size cap.
std::size_t deliver_cost(const RecipientRecord& r);

}  // namespace mta::queue
