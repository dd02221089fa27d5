// libFuzzer target for the queue's decoders: stored records (records.cpp: message, recipient, suppression) and the commit /
// deliver_result IPC payloads (envelope.cpp). No crash or UB on any bytes; anything accepted re-encodes
// to the same bytes (records) or satisfies the documented limits (IPC).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/ipc.h"
#include "queue-manager/bounce_class.h"
#include "queue-manager/envelope.h"
#include "queue-manager/records.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta;
using namespace mta::queue;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    std::string err;
    MessageRecord m;
    // Older versions decode too and re-encode as the current version; a current one re-encodes to itself.
    const bool current = !in.empty() && uint8_t(in[0]) == kRecordVersion;
    if (decode(in, m, err)) require((!current || encode(m) == in) && m.nrcpt > 0 && clean_text(m.sender, kMaxAddress));
    RecipientRecord r;
    if (decode(in, r, err)) require((!current || encode(r) == in) && !r.addr.empty() && clean_text(r.addr, kMaxAddress));
    SuppressionRecord su;  // one version so far: whatever decodes re-encodes to itself
    if (decode(in, su, err)) require(encode(su) == in && su.bounce_class <= kBounceClassMax);

    ipc::Message msg;
    if (!ipc::decode(in, msg, err)) return 0;
    CommitRequest c;
    if (parse_commit(msg, c, err)) {
        require(!c.rcpts.empty() && c.rcpts.size() <= kMaxCommitRecipients && c.msgid != 0);
        for (auto& rc : c.rcpts) require(clean_text(rc.addr, kMaxAddress) && !rc.addr.empty() && rc.notify <= 15);
        require(c.msg.body_type <= 2 && c.msg.ret <= 2 && c.msg.smtputf8 <= 1 && c.msg.requiretls <= 1);
    }
    DeliverResult d;
    if (parse_deliver_result(msg, d, err)) {
        require(!d.results.empty());
        for (auto& x : d.results) require(uint64_t(x.status) <= 2);
    }
    return 0;
}
