// The smtpd <-> queue reception codecs (see reception.h).
#include "common/wire/reception.h"

#include "common/wire/fields.h"
#include "common/wire/limits.h"

namespace mta::wire {
namespace {

using ipc::Tag;

bool enhanced_fits(const std::string& e, int code) {
    if (e.size() < 5 || e.size() > 9 || e[0] != char('0' + code / 100) || e[1] != '.') return false;
    return e.find_first_not_of("0123456789.") == std::string::npos;
}

bool msgid_only(const ipc::Message& m, ipc::Type type, std::size_t fds, uint64_t& msgid, std::string& err) {
    static const Shape zero{{Tag::msgid}, {}, std::nullopt, 0, 0};
    static const Shape one{{Tag::msgid}, {}, std::nullopt, 0, 1};
    Fields fs;
    return fs.split(m, type, fds ? one : zero, err) && need_u64(fs.get(Tag::msgid), Tag::msgid, UINT64_MAX, msgid, err);
}

}  // namespace

ipc::Message encode(const BodyOpen&, uint64_t reqid) { return ipc::Message(ipc::Type::body_open, reqid); }

bool decode(const ipc::Message& m, BodyOpen&, std::string& err) {
    static const Shape shape{{}};
    Fields fs;
    return fs.split(m, ipc::Type::body_open, shape, err);
}

ipc::Message encode(BodyOpenOk& b, uint64_t reqid) {
    ipc::Message m(ipc::Type::body_open_ok, reqid);
    m.add_u64(Tag::msgid, b.msgid).add_fd(std::move(b.body));
    return m;
}

bool decode(ipc::Message& m, BodyOpenOk& out, std::string& err) {
    if (!msgid_only(m, ipc::Type::body_open_ok, 1, out.msgid, err)) return false;
    out.body = std::move(m.fds[0]);
    return true;
}

ipc::Message encode(const CommitOk& c, uint64_t reqid) {
    ipc::Message m(ipc::Type::commit_ok, reqid);
    m.add_u64(Tag::msgid, c.msgid);
    return m;
}

bool decode(const ipc::Message& m, CommitOk& out, std::string& err) {
    return msgid_only(m, ipc::Type::commit_ok, 0, out.msgid, err);
}

ipc::Message encode(const Abort& a, uint64_t reqid) {
    ipc::Message m(ipc::Type::abort, reqid);
    m.add_u64(Tag::msgid, a.msgid);
    return m;
}

bool decode(const ipc::Message& m, Abort& out, std::string& err) { return msgid_only(m, ipc::Type::abort, 0, out.msgid, err); }

ipc::Message encode(SpoolProbe& p, uint64_t reqid) {
    ipc::Message m(ipc::Type::spool_probe, reqid);
    m.add_fd(std::move(p.fd));
    return m;
}

bool decode(ipc::Message& m, SpoolProbe& out, std::string& err) {
    static const Shape shape{{}, {}, std::nullopt, 0, 1};
    Fields fs;
    if (!fs.split(m, ipc::Type::spool_probe, shape, err)) return false;
    out.fd = std::move(m.fds[0]);
    return true;
}

ipc::Message encode(const Fail& f, uint64_t reqid) {
    ipc::Message m(ipc::Type::fail, reqid);
    m.add_u64(Tag::code, uint64_t(f.code)).add(Tag::enhanced, f.enhanced).add(Tag::text, make_clean(f.text, kMaxFailText));
    return m;
}

bool decode(const ipc::Message& m, Fail& out, std::string& err) {
    static const Shape shape{{Tag::code, Tag::enhanced, Tag::text}};
    out = Fail{};
    Fields fs;
    uint64_t code = 0;
    if (!fs.split(m, ipc::Type::fail, shape, err) || !need_u64(fs.get(Tag::code), Tag::code, 599, code, err) ||
        !opt_text(fs.get(Tag::enhanced), 9, out.enhanced, err) || !opt_text(fs.get(Tag::text), kMaxFailText, out.text, err))
        return false;
    if (code < 400) { err = "bad code"; return false; }
    out.code = int(code);
    if (!enhanced_fits(out.enhanced, out.code)) out.enhanced.clear();
    return true;
}

ipc::Message encode(const Commit& c, uint64_t reqid) {
    ipc::Message m(ipc::Type::commit, reqid);
    m.add_u64(Tag::msgid, c.msgid);
    add_envelope(m, c);
    for (const CommitRcpt& r : c.rcpts) {
        m.add(Tag::rcpt, r.addr).add_u64(Tag::rcpt_notify, r.notify);
        if (!r.orcpt.empty()) m.add(Tag::rcpt_orcpt, r.orcpt);
    }
    m.add(Tag::client_addr, c.client_addr).add(Tag::client_helo, c.client_helo);
    if (!c.auth_user.empty()) m.add(Tag::auth_user, c.auth_user);
    if (c.has_arrival) m.add_u64(Tag::arrival, c.arrival);
    if (!c.hold_reason.empty()) m.add(Tag::hold_reason, c.hold_reason);
    return m;
}

bool decode(const ipc::Message& m, Commit& out, std::string& err) {
    static const Shape shape{{Tag::msgid, Tag::sender, Tag::size, Tag::body_type, Tag::smtputf8, Tag::envid, Tag::ret,
                              Tag::requiretls, Tag::arrival, Tag::client_addr, Tag::client_helo, Tag::auth_user,
                              Tag::hold_reason},
                             {Tag::rcpt, Tag::rcpt_notify, Tag::rcpt_orcpt}, Tag::rcpt, kMaxRecipients, 0};
    out = Commit{};
    Fields fs;
    if (!fs.split(m, ipc::Type::commit, shape, err) ||
        !need_u64(fs.get(Tag::msgid), Tag::msgid, UINT64_MAX, out.msgid, err) || !get_envelope(fs, out, err) ||
        !opt_u64(fs.get(Tag::arrival), UINT64_MAX, out.arrival, err) ||
        !opt_text(fs.get(Tag::client_addr), kMaxClientField, out.client_addr, err) ||
        !opt_text(fs.get(Tag::client_helo), kMaxClientField, out.client_helo, err) ||
        !opt_text(fs.get(Tag::auth_user), kMaxClientField, out.auth_user, err) ||
        !opt_text(fs.get(Tag::hold_reason), kMaxHoldReason, out.hold_reason, err))
        return false;
    if (out.msgid == 0) { err = "bad msgid"; return false; }
    if (fs.get(Tag::hold_reason) && out.hold_reason.empty()) { err = "empty hold_reason"; return false; }
    out.has_arrival = fs.get(Tag::arrival) != nullptr;
    if (fs.groups().empty()) { err = "no recipients"; return false; }
    for (const Fields::Group& g : fs.groups()) {
        CommitRcpt r;
        if (!need_text(find(g, Tag::rcpt), Tag::rcpt, kMaxAddress, r.addr, err, true) ||
            !opt_u64(find(g, Tag::rcpt_notify), kMaxNotify, r.notify, err) ||
            !opt_text(find(g, Tag::rcpt_orcpt), kMaxOrcpt, r.orcpt, err))
            return false;
        out.rcpts.push_back(std::move(r));
    }
    return true;
}

}  // namespace mta::wire
