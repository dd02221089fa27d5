// Validation of commit/deliver_result messages and construction of deliver messages. The peers are less
// privileged than the queue, so every field is checked; the caller treats a false return as malformed.
#include "queue-manager/envelope.h"

namespace mta::queue {
namespace {

using ipc::Tag;

bool u64_in(const ipc::Field& f, uint64_t max, uint64_t& v) {
    auto x = ipc::as_u64(f.value);
    if (!x || *x > max) return false;
    v = *x;
    return true;
}

// Envelope-level tags may appear once each.
bool once(uint64_t& seen, Tag t) {
    uint64_t bit = uint64_t(1) << (uint16_t(t) - uint16_t(Tag::msgid));
    if (seen & bit) return false;
    seen |= bit;
    return true;
}

bool rcpt_field(const ipc::Field& f, CommitRequest& out, bool& has_notify, bool& has_orcpt, std::string& err) {
    if (f.tag == Tag::rcpt) {
        if (out.rcpts.size() >= kMaxCommitRecipients) { err = "too many recipients"; return false; }
        if (f.value.empty() || !clean_text(f.value, kMaxAddress)) { err = "bad rcpt"; return false; }
        out.rcpts.emplace_back();
        out.rcpts.back().addr = f.value;
        has_notify = has_orcpt = false;
        return true;
    }
    if (out.rcpts.empty()) { err = "recipient field before rcpt"; return false; }
    RecipientRecord& r = out.rcpts.back();
    if (f.tag == Tag::rcpt_notify) {
        if (has_notify || !u64_in(f, 15, r.notify)) { err = "bad rcpt_notify"; return false; }
        has_notify = true;
        return true;
    }
    if (has_orcpt || !clean_text(f.value, kMaxAddress)) { err = "bad rcpt_orcpt"; return false; }
    r.orcpt = f.value;
    has_orcpt = true;
    return true;
}

bool envelope_field(const ipc::Field& f, CommitRequest& out, std::string& err) {
    MessageRecord& m = out.msg;
    uint64_t v = 0;
    switch (f.tag) {
    case Tag::msgid: if (!u64_in(f, UINT64_MAX, out.msgid) || out.msgid == 0) { err = "bad msgid"; return false; } break;
    case Tag::sender: if (!clean_text(f.value, kMaxAddress)) { err = "bad sender"; return false; } m.sender = f.value; break;
    case Tag::size: if (!u64_in(f, UINT64_MAX, v)) { err = "bad size"; return false; } break;  // declared only
    case Tag::body_type: if (!u64_in(f, 2, v)) { err = "bad body_type"; return false; } m.body_type = uint8_t(v); break;
    case Tag::smtputf8: if (!u64_in(f, 1, v)) { err = "bad smtputf8"; return false; } m.smtputf8 = uint8_t(v); break;
    case Tag::ret: if (!u64_in(f, 2, v)) { err = "bad ret"; return false; } m.ret = uint8_t(v); break;
    case Tag::requiretls: if (!u64_in(f, 1, v)) { err = "bad requiretls"; return false; } m.requiretls = uint8_t(v); break;
    case Tag::arrival: if (!u64_in(f, UINT64_MAX, m.arrival)) { err = "bad arrival"; return false; } out.has_arrival = true; break;
    case Tag::envid:
        if (!clean_text(f.value, kMaxEnvid) || f.value.find(' ') != std::string::npos) { err = "bad envid"; return false; }
        m.envid = f.value;
        break;
    case Tag::client_addr: if (!clean_text(f.value, kMaxClientField)) { err = "bad client_addr"; return false; } m.client_addr = f.value; break;
    case Tag::client_helo: if (!clean_text(f.value, kMaxClientField)) { err = "bad client_helo"; return false; } m.client_helo = f.value; break;
    case Tag::auth_user: if (!clean_text(f.value, kMaxClientField)) { err = "bad auth_user"; return false; } m.auth_user = f.value; break;
    default: err = "unexpected field " + std::to_string(uint16_t(f.tag)); return false;
    }
    return true;
}

}  // namespace

bool parse_commit(const ipc::Message& m, CommitRequest& out, std::string& err) {
    out = CommitRequest{};
    if (!m.fds.empty()) { err = "unexpected fd"; return false; }
    uint64_t seen = 0;
    bool has_notify = false, has_orcpt = false;
    for (auto& f : m.fields) {
        if (f.tag == Tag::rcpt || f.tag == Tag::rcpt_notify || f.tag == Tag::rcpt_orcpt) {
            if (!rcpt_field(f, out, has_notify, has_orcpt, err)) return false;
            continue;
        }
        if (uint16_t(f.tag) < uint16_t(Tag::msgid) || uint16_t(f.tag) > uint16_t(Tag::requiretls)) {
            err = "unexpected field " + std::to_string(uint16_t(f.tag));
            return false;
        }
        if (!once(seen, f.tag)) { err = "duplicate field " + std::to_string(uint16_t(f.tag)); return false; }
        if (!envelope_field(f, out, err)) return false;
    }
    if (!(seen & (uint64_t(1) << 0))) { err = "missing msgid"; return false; }
    if (!(seen & (uint64_t(1) << (uint16_t(Tag::sender) - uint16_t(Tag::msgid))))) { err = "missing sender"; return false; }
    if (out.rcpts.empty()) { err = "no recipients"; return false; }
    out.msg.nrcpt = uint32_t(out.rcpts.size());
    return true;
}

bool parse_deliver_result(const ipc::Message& m, DeliverResult& out, std::string& err) {
    out = DeliverResult{};
    if (!m.fds.empty()) { err = "unexpected fd"; return false; }
    bool has_msgid = false, has_status = false, has_text = false;
    for (auto& f : m.fields) {
        uint64_t v = 0;
        switch (f.tag) {
        case Tag::msgid:
            if (has_msgid || !u64_in(f, UINT64_MAX, out.msgid)) { err = "bad msgid"; return false; }
            has_msgid = true;
            break;
        case Tag::rcpt_index:
            if (!out.results.empty() && !has_status) { err = "result without status"; return false; }
            if (!u64_in(f, UINT32_MAX, v)) { err = "bad rcpt_index"; return false; }
            out.results.push_back({uint32_t(v), ipc::DeliveryStatus::deferred, {}, 0});
            has_status = has_text = false;
            break;
        case Tag::status:
            if (out.results.empty() || has_status || !u64_in(f, 2, v)) { err = "bad status"; return false; }
            out.results.back().status = ipc::DeliveryStatus(v);
            has_status = true;
            break;
        case Tag::text:
            if (out.results.empty() || has_text || f.value.size() > 4096) { err = "bad text"; return false; }
            out.results.back().text = f.value;
            has_text = true;
            break;
        case Tag::dsn_handoff:
            if (!has_status || out.results.back().handoff || !u64_in(f, 2, v) || v == 0 ||
                out.results.back().status != ipc::DeliveryStatus::delivered) { err = "bad dsn_handoff"; return false; }
            out.results.back().handoff = uint8_t(v);
            break;
        default: err = "unexpected field " + std::to_string(uint16_t(f.tag)); return false;
        }
    }
    if (!has_msgid) { err = "missing msgid"; return false; }
    if (out.results.empty() || !has_status) { err = "no complete result"; return false; }
    return true;
}

std::string rcpt_domain(std::string_view addr) {
    auto at = addr.rfind('@');
    if (at == std::string_view::npos) return {};
    std::string d(addr.substr(at + 1));
    for (char& c : d)
        if (c >= 'A' && c <= 'Z') c = char(c + 32);
    return d;
}

ipc::Message make_deliver(uint64_t msgid, const MessageRecord& m, const std::string& nexthop,
                          const std::vector<std::pair<uint32_t, const RecipientRecord*>>& rcpts,
                          const std::string& tls_level) {
    ipc::Message d(ipc::Type::deliver, msgid);
    d.add_u64(Tag::msgid, msgid).add(Tag::sender, m.sender).add(Tag::nexthop, nexthop);
    d.add_u64(Tag::size, m.size).add_u64(Tag::body_type, m.body_type).add_u64(Tag::smtputf8, m.smtputf8);
    if (!m.envid.empty()) d.add(Tag::envid, m.envid);
    d.add_u64(Tag::ret, m.ret).add_u64(Tag::requiretls, m.requiretls);
    if (!tls_level.empty()) d.add(Tag::tls_level, tls_level);
    for (auto& [index, r] : rcpts) {
        d.add(Tag::rcpt, r->addr).add_u64(Tag::rcpt_index, index).add_u64(Tag::rcpt_notify, r->notify);
        if (!r->orcpt.empty()) d.add(Tag::rcpt_orcpt, r->orcpt);
    }
    return d;
}

std::size_t deliver_cost(const RecipientRecord& r) { return 4 * 6 + 16 + r.addr.size() + r.orcpt.size(); }

}  // namespace mta::queue
