// libFuzzer target over every common/wire decoder. The input is one framed IPC message (ipc::decode);
// its first byte also picks how many fds ride along. Each accepted message must re-encode into one
// that decodes to the same struct, and every decoded text must obey the shared text rules.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/wire/wire.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta;

namespace {


void add_fds(ipc::Message& m, unsigned n) {
    for (unsigned i = 0; i < n; i++) m.add_fd(UniqueFd(open("/dev/null", O_RDONLY | O_CLOEXEC)));
}

// Decode; when accepted, encode again and require the same struct back (compared through a second
// encoding, which is a pure function of the struct).
template <typename T>
void round_trip(ipc::Message& m) {
    T first;
    std::string err;
    if (!wire::decode(m, first, err)) {
        require(!err.empty());
        return;
    }
    ipc::Message again = wire::encode(first, m.reqid);
    require(ipc::encode(again).size() <= ipc::kMaxMessage);
    T second;
    require(wire::decode(again, second, err));
    ipc::Message third = wire::encode(second, m.reqid);
    require(ipc::encode(again) == ipc::encode(third));
    require(again.fds.size() == third.fds.size());
}

void check_deliver(ipc::Message& m) {
    wire::Deliver d;
    std::string err;
    if (!wire::decode(m, d, err)) return;
    require(d.body.valid() && !d.rcpts.empty());
    require(wire::clean_text(d.sender, wire::kMaxAddress));
    for (auto& r : d.rcpts) require(!r.addr.empty() && wire::clean_text(r.addr, wire::kMaxAddress));
    // The result for every recipient of any deliver fits one datagram.
    wire::DeliverResult res;
    res.msgid = d.msgid;
    for (auto& r : d.rcpts) res.results.push_back({uint32_t(r.index), ipc::DeliveryStatus::bounced, std::string(2000, 'x'), 0});
    ipc::Message rm = wire::encode(res, 1);
    require(ipc::encode(rm).size() <= ipc::kMaxMessage);
    wire::DeliverResult back;
    require(wire::decode(rm, back, err));
}

// An accepted msgauth_reply is safe to write into a message: a valid header block, ordered cuts.
void check_msgauth_reply(const ipc::Message& m) {
    wire::MsgauthReply r;
    std::string err;
    if (!wire::decode(m, r, err)) return;
    require(wire::valid_header_block(r.prepend) && r.prepend.size() <= wire::kMaxMsgauthPrepend);
    require(wire::clean_text(r.text, wire::kMaxMsgauthText));
    uint64_t end = 0;
    for (auto& c : r.cuts) {
        require(c.length > 0 && c.offset >= end);
        end = c.offset + c.length;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const std::string buf(reinterpret_cast<const char*>(data + 1), size - 1);  // exact-size copy for ASan
    ipc::Message m;
    std::string err;
    if (!ipc::decode(buf, m, err)) return 0;
    add_fds(m, data[0] % 3);
    using ipc::Type;
    switch (m.type) {
    case Type::hello: round_trip<wire::Hello>(m); break;
    case Type::config: round_trip<wire::Config>(m); break;
    case Type::peer: round_trip<wire::Peer>(m); break;
    case Type::listen: round_trip<wire::Listen>(m); break;
    case Type::stop: round_trip<wire::Stop>(m); break;
    case Type::loglevel: round_trip<wire::LogLevel>(m); break;
    case Type::resolve_request: round_trip<wire::ResolveRequest>(m); break;
    case Type::resolve_reply: round_trip<wire::ResolveReply>(m); break;
    case Type::admin_request: round_trip<wire::AdminRequest>(m); break;
    case Type::admin_reply: round_trip<wire::AdminReply>(m); break;
    case Type::body_open: round_trip<wire::BodyOpen>(m); break;
    case Type::body_open_ok: round_trip<wire::BodyOpenOk>(m); break;
    case Type::fail: round_trip<wire::Fail>(m); break;
    case Type::commit: round_trip<wire::Commit>(m); break;
    case Type::commit_ok: round_trip<wire::CommitOk>(m); break;
    case Type::abort: round_trip<wire::Abort>(m); break;
    case Type::spool_probe: round_trip<wire::SpoolProbe>(m); break;
    case Type::deliver: {
        ipc::Message copy;
        copy.type = m.type;
        copy.reqid = m.reqid;
        copy.fields = m.fields;
        add_fds(copy, unsigned(m.fds.size()));
        check_deliver(copy);
        round_trip<wire::Deliver>(m);
        break;
    }
    case Type::deliver_result: round_trip<wire::DeliverResult>(m); break;
    case Type::msgauth_request: round_trip<wire::MsgauthRequest>(m); break;
    case Type::msgauth_reply:
        check_msgauth_reply(m);
        round_trip<wire::MsgauthReply>(m);
        break;
    case Type::anvil_connect: round_trip<wire::AnvilConnect>(m); break;
    case Type::anvil_verdict: round_trip<wire::AnvilVerdict>(m); break;
    case Type::anvil_disconnect: round_trip<wire::AnvilDisconnect>(m); break;
    case Type::anvil_auth_fail: round_trip<wire::AnvilAuthFail>(m); break;
    case Type::anvil_auth_count: round_trip<wire::AnvilAuthCount>(m); break;
    case Type::milter_connect: round_trip<wire::MilterConnect>(m); break;
    case Type::milter_socket: round_trip<wire::MilterSocket>(m); break;
    case Type::admin_more: round_trip<wire::AdminMore>(m); break;
    case Type::stats_request: round_trip<wire::StatsRequest>(m); break;
    case Type::stats_reply: round_trip<wire::StatsReply>(m); break;
    }
    return 0;
}
