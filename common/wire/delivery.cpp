// The deliver / deliver_result codecs (see delivery.h).
#include "common/wire/delivery.h"

#include <arpa/inet.h>

#include <algorithm>
#include <set>

#include "common/address.h"
#include "common/wire/fields.h"
#include "common/wire/limits.h"

namespace mta::wire {
namespace {

using ipc::Tag;

bool tls_level_ok(const std::string& s) {
    return !s.empty() && s.size() <= 20 && s.find_first_not_of("abcdefghijklmnopqrstuvwxyz-") == std::string::npos;
}

bool decode_rcpt(const Fields::Group& g, DeliverRcpt& r, std::string& err) {
    if (!find(g, Tag::rcpt) || !find(g, Tag::rcpt_index)) { err = "recipient group without rcpt or rcpt_index"; return false; }
    return need_text(find(g, Tag::rcpt), Tag::rcpt, kMaxAddress, r.addr, err, true) &&
           need_u64(find(g, Tag::rcpt_index), Tag::rcpt_index, kMaxRcptIndex, r.index, err) &&
           opt_u64(find(g, Tag::rcpt_notify), kMaxNotify, r.notify, err) &&
           opt_text(find(g, Tag::rcpt_orcpt), kMaxOrcpt, r.orcpt, err);
}

}  // namespace

ipc::Message encode(Deliver& d, uint64_t reqid) {
    ipc::Message m(ipc::Type::deliver, reqid);
    m.add_u64(Tag::msgid, d.msgid);
    add_envelope(m, d);
    m.add(Tag::nexthop, d.nexthop);
    if (!d.tls_level.empty()) m.add(Tag::tls_level, d.tls_level);
    if (d.max_per_connection) m.add_u64(Tag::max_per_connection, d.max_per_connection);
    if (!d.source_address.empty()) m.add(Tag::source_address, d.source_address);
    if (!d.source_helo.empty()) m.add(Tag::source_helo, d.source_helo);
    for (const DeliverRcpt& r : d.rcpts) {
        m.add(Tag::rcpt, r.addr).add_u64(Tag::rcpt_index, r.index).add_u64(Tag::rcpt_notify, r.notify);
        if (!r.orcpt.empty()) m.add(Tag::rcpt_orcpt, r.orcpt);
    }
    if (d.body) m.add_fd(std::move(d.body));
    return m;
}

bool decode(ipc::Message& m, Deliver& out, std::string& err) {
    static const Shape shape{{Tag::msgid, Tag::sender, Tag::nexthop, Tag::size, Tag::body_type, Tag::smtputf8,
                              Tag::envid, Tag::ret, Tag::requiretls, Tag::tls_level, Tag::max_per_connection,
                              Tag::source_address, Tag::source_helo},
                             {Tag::rcpt, Tag::rcpt_index, Tag::rcpt_notify, Tag::rcpt_orcpt},
                             std::nullopt, kMaxDeliverRecipients, 1};
    out = Deliver{};
    Fields fs;
    if (!fs.split(m, ipc::Type::deliver, shape, err)) return false;
    if (!need_u64(fs.get(Tag::msgid), Tag::msgid, UINT64_MAX, out.msgid, err) || !get_envelope(fs, out, err) ||
        !need_text(fs.get(Tag::nexthop), Tag::nexthop, kMaxNexthop, out.nexthop, err) ||
        !opt_text(fs.get(Tag::tls_level), 20, out.tls_level, err) ||
        !opt_u64(fs.get(Tag::max_per_connection), 10000000, out.max_per_connection, err) ||
        !opt_text(fs.get(Tag::source_address), 64, out.source_address, err) ||
        !opt_text(fs.get(Tag::source_helo), 255, out.source_helo, err))
        return false;
    unsigned char ip[16];
    if (!out.source_address.empty() && inet_pton(AF_INET, out.source_address.c_str(), ip) != 1 &&
        inet_pton(AF_INET6, out.source_address.c_str(), ip) != 1) {
        err = "bad source_address";
        return false;
    }
    if (!out.source_helo.empty() && (out.source_address.empty() || !addr::valid_domain(out.source_helo))) {
        err = "bad source_helo";
        return false;
    }
    if (out.nexthop.find(' ') != std::string::npos) { err = "bad nexthop"; return false; }
    if (fs.get(Tag::tls_level) && !tls_level_ok(out.tls_level)) { err = "bad tls_level"; return false; }
    if (fs.groups().empty()) { err = "no recipients"; return false; }
    std::set<uint64_t> seen;
    for (const Fields::Group& g : fs.groups()) {
        DeliverRcpt r;
        if (!decode_rcpt(g, r, err)) return false;
        if (!seen.insert(r.index).second) { err = "duplicate rcpt_index"; return false; }
        out.rcpts.push_back(std::move(r));
    }
    out.body = std::move(m.fds[0]);
    return true;
}

ipc::Message encode(const DeliverResult& r, uint64_t reqid) {
    ipc::Message m(ipc::Type::deliver_result, reqid);
    m.add_u64(Tag::msgid, r.msgid);
    // Keep the datagram under the IPC cap whatever the recipient count: per recipient at most four fields
    // of 6-byte headers, three u64 values and the text, which gets an equal share of what is left.
    std::size_t n = std::max<std::size_t>(r.results.size(), 1);
    bool report = !r.tlsrpt.empty() && r.tlsrpt.size() <= kMaxTlsrpt && !r.tlsrpt_rua.empty() &&
                  r.tlsrpt_rua.size() <= kMaxTlsrpt;
    if (report) m.add(Tag::tlsrpt, r.tlsrpt).add(Tag::tlsrpt_rua, r.tlsrpt_rua);
    if (!r.mx_host.empty() && r.mx_host.size() <= 255) m.add(Tag::mx_host, r.mx_host);
    std::size_t budget = (ipc::kMaxMessage - ipc::kHeaderSize - 64 - (report ? 2 * kMaxTlsrpt + 12 : 0)) / n;
    std::size_t text_cap = budget > 48 ? std::min<std::size_t>(budget - 48, kMaxResultText) : 0;
    for (const RcptResult& x : r.results) {
        m.add_u64(Tag::rcpt_index, x.index);
        m.add_u64(Tag::status, uint64_t(x.status));
        m.add(Tag::text, make_clean(x.text, text_cap));
        if (x.handoff && x.status == ipc::DeliveryStatus::delivered) m.add_u64(Tag::dsn_handoff, x.handoff);
    }
    return m;
}

bool decode(const ipc::Message& m, DeliverResult& out, std::string& err) {
    static const Shape shape{{Tag::msgid, Tag::tlsrpt, Tag::tlsrpt_rua, Tag::mx_host},
                             {Tag::rcpt_index, Tag::status, Tag::text, Tag::dsn_handoff}, Tag::rcpt_index,
                             kMaxRecipients, 0};
    out = DeliverResult{};
    Fields fs;
    if (!fs.split(m, ipc::Type::deliver_result, shape, err)) return false;
    if (!need_u64(fs.get(Tag::msgid), Tag::msgid, UINT64_MAX, out.msgid, err) ||
        !opt_bytes(fs.get(Tag::tlsrpt), kMaxTlsrpt, out.tlsrpt, err) ||
        !opt_text(fs.get(Tag::tlsrpt_rua), kMaxTlsrpt, out.tlsrpt_rua, err) ||
        !opt_text(fs.get(Tag::mx_host), 255, out.mx_host, err))
        return false;
    if (fs.get(Tag::mx_host) && !addr::valid_domain(out.mx_host)) { err = "bad mx_host"; return false; }
    if (out.tlsrpt.empty() != out.tlsrpt_rua.empty()) { err = "tlsrpt without tlsrpt_rua, or the reverse"; return false; }
    if (fs.groups().empty()) { err = "no complete result"; return false; }
    for (const Fields::Group& g : fs.groups()) {
        RcptResult x;
        uint64_t index = 0, status = 0, handoff = 0;
        if (!need_u64(find(g, Tag::rcpt_index), Tag::rcpt_index, kMaxRcptIndex, index, err) ||
            !need_u64(find(g, Tag::status), Tag::status, 2, status, err) ||
            !opt_text(find(g, Tag::text), kMaxResultText, x.text, err) ||
            !opt_u64(find(g, Tag::dsn_handoff), 2, handoff, err))
            return false;
        x.index = uint32_t(index);
        x.status = ipc::DeliveryStatus(status);
        if (find(g, Tag::dsn_handoff) && (handoff == 0 || x.status != ipc::DeliveryStatus::delivered)) {
            err = "bad dsn_handoff";
            return false;
        }
        x.handoff = uint8_t(handoff);
        out.results.push_back(std::move(x));
    }
    return true;
}

}  // namespace mta::wire
