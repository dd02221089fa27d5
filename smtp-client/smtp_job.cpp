// Decoding of `deliver` and encoding of `deliver_result`. Every field is bounded and checked; strings that
// end up on the SMTP wire must be free of CR, LF, NUL and other control bytes.
#include "smtp-client/smtp_job.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <sys/stat.h>

namespace mta::smtp {
namespace {

using ipc::Tag;

bool clean(const std::string& s, std::size_t max) {
    if (s.size() > max) return false;
    return std::none_of(s.begin(), s.end(), [](char ch) {
        auto c = static_cast<unsigned char>(ch);
        return c < 0x20 || c == 0x7f;
    });
}

bool get_u64(const ipc::Field& f, uint64_t& v) {
    auto x = ipc::as_u64(f.value);
    if (!x) return false;
    v = *x;
    return true;
}

struct Group {
    Recipient r;
    bool has_rcpt = false, has_index = false, has_notify = false, has_orcpt = false;
};

bool parse_rcpt_field(const ipc::Field& f, std::vector<Group>& groups, std::string& err) {
    bool is_rcpt = f.tag == Tag::rcpt, is_index = f.tag == Tag::rcpt_index;
    bool is_notify = f.tag == Tag::rcpt_notify, is_orcpt = f.tag == Tag::rcpt_orcpt;
    if (groups.empty() || (is_rcpt && groups.back().has_rcpt) || (is_index && groups.back().has_index) ||
        (is_notify && groups.back().has_notify) || (is_orcpt && groups.back().has_orcpt)) {
        if (groups.size() >= kMaxJobRecipients) { err = "too many recipients"; return false; }
        groups.emplace_back();
    }
    Group& g = groups.back();
    if (is_rcpt) {
        if (f.value.empty() || !clean(f.value, kMaxAddressLength)) { err = "bad rcpt"; return false; }
        g.r.addr = f.value;
        g.has_rcpt = true;
    } else if (is_index) {
        if (!get_u64(f, g.r.index)) { err = "bad rcpt_index"; return false; }
        g.has_index = true;
    } else if (is_notify) {
        if (!get_u64(f, g.r.notify) || g.r.notify > 15) { err = "bad rcpt_notify"; return false; }
        g.has_notify = true;
    } else {
        if (!clean(f.value, kMaxAddressLength)) {
            err = "bad rcpt_orcpt";
            return false;
        }
        g.r.orcpt = f.value;
        g.has_orcpt = true;
    }
    return true;
}

}  // namespace

std::string format_qid(uint64_t msgid) {
    char buf[17];
    snprintf(buf, sizeof buf, "%016llX", static_cast<unsigned long long>(msgid));
    return buf;
}

std::string Job::qid() const { return format_qid(msgid); }

void Job::settle_rest(ipc::DeliveryStatus st, const std::string& text) {
    for (auto& r : rcpts) {
        if (r.final) continue;
        r.final = true;
        r.status = st;
        r.text = text;
    }
}

std::size_t Job::open_count() const {
    return std::size_t(std::count_if(rcpts.begin(), rcpts.end(), [](const Recipient& r) { return !r.final; }));
}

bool Job::envelope_utf8() const {
    auto hi = [](const std::string& s) {
        return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
    };
    return hi(sender) || std::any_of(rcpts.begin(), rcpts.end(), [&](const Recipient& r) { return hi(r.addr); });
}

std::string content_refusal(const Job& job, bool smtputf8, bool eightbitmime, const std::string& host,
                            const std::function<bool()>& body_8bit) {
    if (job.smtputf8 && !smtputf8 && job.envelope_utf8())
        return "5.6.7 SMTPUTF8 is required, but was not offered by host " + host;
    if (job.body_type != 0 && !eightbitmime && body_8bit && body_8bit())
        return "5.6.3 8-bit message, but host " + host + " does not offer 8BITMIME (no conversion to 7 bit)";
    return "";
}

std::string size_refusal(uint64_t message_size, uint64_t server_limit, const std::string& host) {
    if (server_limit == 0 || message_size <= server_limit) return "";
    return "5.3.4 message size " + std::to_string(message_size) + " exceeds size limit " +
           std::to_string(server_limit) + " of server " + host;
}

uint64_t Job::message_size() const {
    struct stat st;
    if (size == 0 && fstat(body.get(), &st) == 0 && st.st_size > 0) return uint64_t(st.st_size);
    return size;
}

bool parse_deliver(ipc::Message& m, Job& out, std::string& err) {
    std::vector<Group> groups;
    bool has_msgid = false, has_sender = false, has_nexthop = false;
    for (auto& f : m.fields) {
        uint64_t v = 0;
        switch (f.tag) {
        case Tag::msgid: if (!get_u64(f, out.msgid)) { err = "bad msgid"; return false; } has_msgid = true; break;
        case Tag::sender:
            if (!clean(f.value, kMaxAddressLength)) { err = "bad sender"; return false; }
            out.sender = f.value;
            has_sender = true;
            break;
        case Tag::nexthop:
            if (f.value.empty() || !clean(f.value, 300) || f.value.find(' ') != std::string::npos) {
                err = "bad nexthop";
                return false;
            }
            out.nexthop = f.value;
            has_nexthop = true;
            break;
        case Tag::size: if (!get_u64(f, out.size)) { err = "bad size"; return false; } break;
        case Tag::body_type:
            if (!get_u64(f, out.body_type) || out.body_type > 2) { err = "bad body_type"; return false; }
            break;
        case Tag::smtputf8: if (!get_u64(f, v) || v > 1) { err = "bad smtputf8"; return false; } out.smtputf8 = v; break;
        case Tag::requiretls: if (!get_u64(f, v) || v > 1) { err = "bad requiretls"; return false; } out.requiretls = v; break;
        case Tag::ret: if (!get_u64(f, out.ret) || out.ret > 2) { err = "bad ret"; return false; } break;
        case Tag::tls_level:  // a level name; whether mta-smtp knows it is the delivery's question
            if (f.value.empty() || f.value.size() > 20 ||
                f.value.find_first_not_of("abcdefghijklmnopqrstuvwxyz-") != std::string::npos) {
                err = "bad tls_level";
                return false;
            }
            out.tls_level = f.value;
            break;
        case Tag::envid:
            if (!clean(f.value, 100) || f.value.find(' ') != std::string::npos) { err = "bad envid"; return false; }
            out.envid = f.value;
            break;
        case Tag::rcpt: case Tag::rcpt_index: case Tag::rcpt_notify: case Tag::rcpt_orcpt:
            if (!parse_rcpt_field(f, groups, err)) return false;
            break;
        default: break;  // fields for other consumers (arrival, client_addr, ...) are ignored
        }
    }
    if (!has_msgid || !has_sender || !has_nexthop) { err = "missing msgid, sender or nexthop"; return false; }
    if (groups.empty()) { err = "no recipients"; return false; }
    std::set<uint64_t> seen;
    for (auto& g : groups) {
        if (!g.has_rcpt || !g.has_index) { err = "recipient group without rcpt or rcpt_index"; return false; }
        if (!seen.insert(g.r.index).second) { err = "duplicate rcpt_index"; return false; }
        out.rcpts.push_back(std::move(g.r));
    }
    if (m.fds.size() != 1 || !m.fds[0].valid()) { err = "expected exactly one body fd"; return false; }
    out.body = std::move(m.fds[0]);
    return true;
}

ipc::Message make_result(const Job& job, uint64_t reqid) {
    ipc::Message m(ipc::Type::deliver_result, reqid);
    m.add_u64(Tag::msgid, job.msgid);
    // Keep the datagram under the IPC cap whatever the recipient count: 3 fields of 6-byte headers,
    // two u64 values, and an equal share of what is left for the text.
    std::size_t n = std::max<std::size_t>(job.rcpts.size(), 1);
    std::size_t budget = (ipc::kMaxMessage - ipc::kHeaderSize - 64) / n;
    std::size_t text_cap = budget > 48 ? std::min<std::size_t>(budget - 48, 1000) : 0;
    for (auto& r : job.rcpts) {
        m.add_u64(Tag::rcpt_index, r.index);
        m.add_u64(Tag::status, uint64_t(r.status));
        m.add(Tag::text, r.text.substr(0, text_cap));
        if (r.handoff && r.status == ipc::DeliveryStatus::delivered) m.add_u64(Tag::dsn_handoff, r.handoff);
    }
    return m;
}

}  // namespace mta::smtp
