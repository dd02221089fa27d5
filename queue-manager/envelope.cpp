// The queue's side of commit, deliver and deliver_result: the common/wire codecs (which check every field:
// the peers are less privileged; the caller treats a false return as malformed) mapped to queue records.
#include "queue-manager/envelope.h"

#include "queue-manager/scheduler.h"

namespace mta::queue {

bool parse_commit(const ipc::Message& m, CommitRequest& out, std::string& err) {
    out = CommitRequest{};
    wire::Commit c;
    if (!wire::decode(m, c, err)) return false;
    out.msgid = c.msgid;
    out.has_arrival = c.has_arrival;
    MessageRecord& r = out.msg;
    r.arrival = c.arrival;  // c.size is only what the client declared: the queue measures the body itself
    r.body_type = uint8_t(c.body_type);
    r.smtputf8 = c.smtputf8;
    r.ret = uint8_t(c.ret);
    r.requiretls = c.requiretls;
    r.sender = std::move(c.sender);
    r.envid = std::move(c.envid);
    r.client_addr = std::move(c.client_addr);
    r.client_helo = std::move(c.client_helo);
    r.auth_user = std::move(c.auth_user);
    r.hold_reason = std::move(c.hold_reason);
    for (wire::CommitRcpt& x : c.rcpts) {
        out.rcpts.emplace_back();
        out.rcpts.back().addr = std::move(x.addr);
        out.rcpts.back().notify = x.notify;
        out.rcpts.back().orcpt = std::move(x.orcpt);
    }
    r.nrcpt = uint32_t(out.rcpts.size());
    return true;
}

bool parse_deliver_result(const ipc::Message& m, DeliverResult& out, std::string& err) {
    return wire::decode(m, out, err);
}

std::string rcpt_domain(std::string_view addr) {
    auto at = addr.rfind('@');
    if (at == std::string_view::npos) return {};
    std::string d(addr.substr(at + 1));
    for (char& c : d)
        if (c >= 'A' && c <= 'Z') c = char(c + 32);
    return d;
}

ipc::Message make_deliver(uint64_t msgid, const MessageRecord& m,
                          const std::vector<std::pair<uint32_t, const RecipientRecord*>>& rcpts, const Nexthop& to) {
    wire::Deliver d;
    d.msgid = msgid;
    d.sender = m.sender;
    d.nexthop = to.host;
    d.size = m.size;
    d.body_type = m.body_type;
    d.smtputf8 = m.smtputf8;
    d.envid = m.envid;
    d.ret = m.ret;
    d.requiretls = m.requiretls;
    d.tls_level = to.tls_level;
    d.max_per_connection = to.policy.max_per_connection;
    d.source_address = to.source;
    d.source_helo = to.source_helo;
    for (auto& [index, r] : rcpts) d.rcpts.push_back({index, r->addr, r->notify, r->orcpt});
    return wire::encode(d, msgid);
}

std::size_t deliver_cost(const RecipientRecord& r) { return 4 * 6 + 16 + r.addr.size() + r.orcpt.size(); }

}  // namespace mta::queue
