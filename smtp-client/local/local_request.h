// The mta-local side of the deliver / deliver_result exchange with the queue: strict validation of
// every field (the queue is more privileged, but nothing is trusted blindly) and the reply builder.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/ipc.h"
#include "common/wire/wire.h"
#include "smtp-client/local/local_maildir.h"

namespace mta::local {


struct Recipient {
    uint64_t index = 0;
    std::string address;  // canonical "local@domain" as the queue stored it
};

struct DeliverRequest {
    uint64_t reqid = 0;
    uint64_t msgid = 0;
    std::string sender;   // "" = null reverse path
    std::vector<Recipient> rcpts;
    UniqueFd body;        // O_RDONLY body file, read with pread()
};

// Takes a `deliver` message apart with wire::decode (moving its fd out). false + `err` means malformed:
// the caller treats the link as broken and exits.
bool parse_deliver(ipc::Message& m, DeliverRequest& out, std::string& err);

// The local part of "local@domain" (split at the last '@'), with a quoted-string local part
// unquoted and its quoted-pairs decoded. nullopt when it cannot be decoded unambiguously.
std::optional<std::string> recipient_local_part(std::string_view rcpt);

struct RcptResult {
    uint64_t index = 0;
    Outcome outcome;
};

// deliver_result with the request's reqid, through wire::encode (size cap, clean texts).
ipc::Message build_result(uint64_t reqid, uint64_t msgid, const std::vector<RcptResult>& results);

// The queue id as every log line shows it (wire::format_qid).
inline std::string qid_text(uint64_t msgid) { return wire::format_qid(msgid); }

}  // namespace mta::local
