// Validation of `deliver` requests from the queue and construction of `deliver_result` replies.
// Any inconsistency in a well-framed message is reported as malformed, never guessed around.
#include "smtp-client/local_request.h"

#include <cstdio>
#include <set>

namespace mta::local {
namespace {

// Envelope text as the queue stores it: no control bytes (CR/LF/NUL would inject header lines).
bool clean_text(std::string_view s) {
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return false;
    return true;
}

bool parse_fields(const ipc::Message& m, DeliverRequest& out, std::string& err) {
    std::set<uint64_t> indexes;
    bool have_index = false;
    for (const ipc::Field& f : m.fields) {
        switch (f.tag) {
        case ipc::Tag::rcpt:
            if (!out.rcpts.empty() && !have_index) { err = "recipient without rcpt_index"; return false; }
            if (f.value.empty() || f.value.size() > kMaxAddress || !clean_text(f.value)) {
                err = "bad rcpt";
                return false;
            }
            if (out.rcpts.size() >= kMaxRecipients) { err = "too many recipients"; return false; }
            out.rcpts.push_back({0, f.value});
            have_index = false;
            break;
        case ipc::Tag::rcpt_index: {
            auto v = ipc::as_u64(f.value);
            if (out.rcpts.empty() || have_index || !v) { err = "bad rcpt_index"; return false; }
            if (!indexes.insert(*v).second) { err = "duplicate rcpt_index"; return false; }
            out.rcpts.back().index = *v;
            have_index = true;
            break;
        }
        case ipc::Tag::rcpt_notify:
            if (out.rcpts.empty() || !ipc::as_u64(f.value)) { err = "bad rcpt_notify"; return false; }
            break;
        case ipc::Tag::rcpt_orcpt:
            if (out.rcpts.empty()) { err = "rcpt_orcpt outside a recipient"; return false; }
            break;
        default:
            break;  // envelope fields local delivery does not use (nexthop, envid, ...)
        }
    }
    if (out.rcpts.empty()) { err = "no recipients"; return false; }
    if (!have_index) { err = "recipient without rcpt_index"; return false; }
    return true;
}

}  // namespace

bool parse_deliver(ipc::Message& m, DeliverRequest& out, std::string& err) {
    if (m.type != ipc::Type::deliver) { err = "not a deliver message"; return false; }
    if (m.fds.size() != 1 || !m.fds[0]) { err = "deliver needs exactly one body fd"; return false; }
    auto msgid = m.get_u64(ipc::Tag::msgid);
    if (!msgid) { err = "missing msgid"; return false; }
    const std::string* sender = m.get(ipc::Tag::sender);
    if (!sender || sender->size() > kMaxAddress || !clean_text(*sender)) { err = "missing or bad sender"; return false; }
    out.reqid = m.reqid;
    out.msgid = *msgid;
    out.sender = *sender;
    out.rcpts.clear();
    if (!parse_fields(m, out, err)) return false;
    out.body = std::move(m.fds[0]);
    return true;
}

std::optional<std::string> recipient_local_part(std::string_view rcpt) {
    size_t at = rcpt.rfind('@');
    if (at == std::string_view::npos || at == 0 || at + 1 == rcpt.size()) return std::nullopt;
    std::string_view local = rcpt.substr(0, at);
    if (local.front() != '"') {
        if (local.find('"') != std::string_view::npos || local.find('\\') != std::string_view::npos)
            return std::nullopt;
        return std::string(local);
    }
    if (local.size() < 2 || local.back() != '"') return std::nullopt;
    std::string out;
    for (size_t i = 1; i + 1 < local.size(); i++) {
        char c = local[i];
        if (c == '"') return std::nullopt;  // an unescaped quote inside: not one quoted-string
        if (c == '\\') {
            if (i + 2 >= local.size()) return std::nullopt;  // the escape would eat the closing quote
            c = local[++i];
        }
        out.push_back(c);
    }
    return out;
}

ipc::Message build_result(uint64_t reqid, uint64_t msgid, const std::vector<RcptResult>& results) {
    ipc::Message m(ipc::Type::deliver_result, reqid);
    m.add_u64(ipc::Tag::msgid, msgid);
    for (const RcptResult& r : results) {
        m.add_u64(ipc::Tag::rcpt_index, r.index);
        m.add_u64(ipc::Tag::status, uint64_t(r.outcome.status));
        m.add(ipc::Tag::text, r.outcome.text);
    }
    return m;
}

std::string qid_text(uint64_t msgid) {
    char buf[17];
    snprintf(buf, sizeof buf, "%016llX", (unsigned long long)msgid);
    return buf;
}

}  // namespace mta::local
