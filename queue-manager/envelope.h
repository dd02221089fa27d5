// The queue's IPC payloads as pure functions: validate smtpd's `commit` and a deliverer's
// `deliver_result` (trusting nothing: any inconsistency means malformed), and build `deliver`.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/ipc.h"
#include "common/wire/wire.h"
#include "queue-manager/records.h"

namespace mta::queue {

inline constexpr std::size_t kMaxCommitRecipients = wire::kMaxRecipients;

struct CommitRequest {
    uint64_t msgid = 0;
    MessageRecord msg;                    // size left 0: the queue measures the body itself
    std::vector<RecipientRecord> rcpts;
    bool has_arrival = false;
};

// wire::decode(Commit) into queue records. False (with err) when the message is malformed: unknown or
// duplicate fields, bad values, no recipients.
bool parse_commit(const ipc::Message& m, CommitRequest& out, std::string& err);

using RcptResult = wire::RcptResult;
using DeliverResult = wire::DeliverResult;
bool parse_deliver_result(const ipc::Message& m, DeliverResult& out, std::string& err);

// Lower-cased domain of a recipient ("" if it has none).
std::string rcpt_domain(std::string_view addr);

struct Nexthop;  // scheduler.h
// wire::encode(Deliver) for the given recipients to `to` (its host, and what is set of its TLS level,
// destination_policy's max_per_connection and the chosen source address). The caller adds the body fd.
ipc::Message make_deliver(uint64_t msgid, const MessageRecord& m,
                          const std::vector<std::pair<uint32_t, const RecipientRecord*>>& rcpts, const Nexthop& to);
// Bytes a recipient adds to a `deliver`, to keep each job under the IPC size cap.
std::size_t deliver_cost(const RecipientRecord& r);

}  // namespace mta::queue
