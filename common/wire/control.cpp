// Codecs of the control, resolver, admin and anvil messages (see control.h).
#include "common/wire/control.h"

#include <algorithm>

#include "common/wire/fields.h"
#include "common/wire/limits.h"

namespace mta::wire {
namespace {

using ipc::Tag;
using ipc::Type;

bool listen_kind_ok(const std::string& k) { return k == "smtp" || k == "submission" || k == "smtps"; }

bool role_ok(const std::string& r) {
    return !r.empty() && r.size() <= kMaxRoleName && r.find_first_not_of("abcdefghijklmnopqrstuvwxyz-") == std::string::npos;
}

// Messages with no fields at all.
bool empty(const ipc::Message& m, Type t, std::string& err) {
    static const Shape shape{{}};
    Fields fs;
    return fs.split(m, t, shape, err);
}

}  // namespace

ipc::Message encode(const Hello& h, uint64_t reqid) {
    ipc::Message m(Type::hello, reqid);
    m.add_u64(Tag::version, h.version).add(Tag::role, h.role);
    return m;
}

bool decode(const ipc::Message& m, Hello& out, std::string& err) {
    static const Shape shape{{Tag::version, Tag::role}};
    out = Hello{};
    Fields fs;
    if (!fs.split(m, Type::hello, shape, err) || !need_u64(fs.get(Tag::version), Tag::version, UINT64_MAX, out.version, err) ||
        !need_text(fs.get(Tag::role), Tag::role, kMaxRoleName, out.role, err))
        return false;
    if (out.version != ipc::kProtocolVersion) { err = "protocol version " + std::to_string(out.version); return false; }
    if (!role_ok(out.role)) { err = "bad role"; return false; }
    return true;
}

ipc::Message encode(const Config& c, uint64_t reqid) {
    ipc::Message m(Type::config, reqid);
    m.add(Tag::config_text, c.text).add(Tag::name, c.name);
    if (c.has_pem) m.add(Tag::tls_cert_pem, c.tls_cert_pem).add(Tag::tls_key_pem, c.tls_key_pem);
    return m;
}

bool decode(const ipc::Message& m, Config& out, std::string& err) {
    static const Shape shape{{Tag::config_text, Tag::name, Tag::tls_cert_pem, Tag::tls_key_pem}};
    out = Config{};
    Fields fs;
    if (!fs.split(m, Type::config, shape, err) ||
        !need_bytes(fs.get(Tag::config_text), Tag::config_text, ipc::kMaxMessage, out.text, err) ||
        !opt_text(fs.get(Tag::name), kMaxPathName, out.name, err) ||
        !opt_bytes(fs.get(Tag::tls_cert_pem), ipc::kMaxMessage, out.tls_cert_pem, err) ||
        !opt_bytes(fs.get(Tag::tls_key_pem), ipc::kMaxMessage, out.tls_key_pem, err))
        return false;
    out.has_pem = fs.get(Tag::tls_cert_pem) != nullptr;
    if (out.has_pem != (fs.get(Tag::tls_key_pem) != nullptr)) { err = "tls_cert_pem and tls_key_pem come together"; return false; }
    return true;
}

ipc::Message encode(Peer& p, uint64_t reqid) {
    ipc::Message m(Type::peer, reqid);
    m.add(Tag::role, p.role).add_u64(Tag::instance, p.instance).add_fd(std::move(p.fd));
    return m;
}

bool decode(ipc::Message& m, Peer& out, std::string& err) {
    static const Shape shape{{Tag::role, Tag::instance}, {}, std::nullopt, 0, 1};
    out = Peer{};
    Fields fs;
    if (!fs.split(m, Type::peer, shape, err) || !need_text(fs.get(Tag::role), Tag::role, kMaxRoleName, out.role, err) ||
        !need_u64(fs.get(Tag::instance), Tag::instance, UINT32_MAX, out.instance, err))
        return false;
    if (!role_ok(out.role)) { err = "bad role"; return false; }
    out.fd = std::move(m.fds[0]);
    return true;
}

ipc::Message encode(Listen& l, uint64_t reqid) {
    ipc::Message m(Type::listen, reqid);
    m.add(Tag::listen_kind, l.kind).add_fd(std::move(l.fd));
    return m;
}

bool decode(ipc::Message& m, Listen& out, std::string& err) {
    static const Shape shape{{Tag::listen_kind}, {}, std::nullopt, 0, 1};
    out = Listen{};
    Fields fs;
    if (!fs.split(m, Type::listen, shape, err) || !need_text(fs.get(Tag::listen_kind), Tag::listen_kind, 16, out.kind, err))
        return false;
    if (!listen_kind_ok(out.kind) && out.kind != "metrics") { err = "bad listen_kind"; return false; }
    out.fd = std::move(m.fds[0]);
    return true;
}

ipc::Message encode(const Stop&, uint64_t reqid) { return ipc::Message(Type::stop, reqid); }
bool decode(const ipc::Message& m, Stop&, std::string& err) { return empty(m, Type::stop, err); }

ipc::Message encode(const LogLevel& l, uint64_t reqid) {
    ipc::Message m(Type::loglevel, reqid);
    m.add(Tag::text, l.level);
    return m;
}

bool decode(const ipc::Message& m, LogLevel& out, std::string& err) {
    static const Shape shape{{Tag::text}};
    out = LogLevel{};
    Fields fs;
    if (!fs.split(m, Type::loglevel, shape, err) || !need_text(fs.get(Tag::text), Tag::text, 8, out.level, err)) return false;
    if (out.level != "debug" && out.level != "info" && out.level != "warn" && out.level != "error") {
        err = "bad text";
        return false;
    }
    return true;
}

ipc::Message encode(const ResolveRequest& r, uint64_t reqid) {
    ipc::Message m(Type::resolve_request, reqid);
    m.add(Tag::name, r.name).add_u64(Tag::qtype, r.qtype);
    return m;
}

bool decode(const ipc::Message& m, ResolveRequest& out, std::string& err) {
    static const Shape shape{{Tag::name, Tag::qtype}};
    out = ResolveRequest{};
    Fields fs;
    return fs.split(m, Type::resolve_request, shape, err) &&
           need_text(fs.get(Tag::name), Tag::name, kMaxDnsName, out.name, err) &&
           need_u64(fs.get(Tag::qtype), Tag::qtype, UINT16_MAX, out.qtype, err);
}

ipc::Message encode(const ResolveReply& r, uint64_t reqid) {
    ipc::Message m(Type::resolve_reply, reqid);
    m.add_u64(Tag::rcode, r.rcode).add_u64(Tag::dnssec, r.dnssec).add(Tag::text, make_clean(r.text, kMaxDnsText));
    for (const std::string& rec : r.records) m.add(Tag::record, rec);
    return m;
}

// Records repeat: each is a one-field group.
bool decode(const ipc::Message& m, ResolveReply& out, std::string& err) {
    static const Shape shape{{Tag::rcode, Tag::dnssec, Tag::text}, {Tag::record}, std::nullopt, kMaxDnsRecords, 0};
    out = ResolveReply{};
    Fields fs;
    if (!fs.split(m, Type::resolve_reply, shape, err) || !need_u64(fs.get(Tag::rcode), Tag::rcode, UINT16_MAX, out.rcode, err) ||
        !opt_u64(fs.get(Tag::dnssec), 2, out.dnssec, err) || !opt_text(fs.get(Tag::text), kMaxDnsText, out.text, err))
        return false;
    std::size_t bytes = 0;
    for (const Fields::Group& g : fs.groups()) {
        bytes += g.front()->value.size();
        if (bytes > kMaxDnsRecordBytes) { err = "bad record"; return false; }
        out.records.push_back(g.front()->value);
    }
    return true;
}

ipc::Message encode(const AdminRequest& r, uint64_t reqid) {
    ipc::Message m(Type::admin_request, reqid);
    m.add(Tag::text, r.text).add_u64(Tag::uid, r.uid).add_u64(Tag::privileged, r.privileged);
    return m;
}

bool decode(const ipc::Message& m, AdminRequest& out, std::string& err) {
    static const Shape shape{{Tag::text, Tag::uid, Tag::privileged}};
    out = AdminRequest{};
    Fields fs;
    uint64_t priv = 0;
    if (!fs.split(m, Type::admin_request, shape, err) ||
        !need_bytes(fs.get(Tag::text), Tag::text, ipc::kMaxMessage, out.text, err) ||
        !need_u64(fs.get(Tag::uid), Tag::uid, UINT32_MAX, out.uid, err) ||
        !need_u64(fs.get(Tag::privileged), Tag::privileged, 1, priv, err))
        return false;
    out.privileged = priv == 1;
    return true;
}

ipc::Message encode(const AdminReply& r, uint64_t reqid) {
    ipc::Message m(Type::admin_reply, reqid);
    m.add(Tag::text, r.text).add_u64(Tag::status, r.more ? 1 : 0);
    return m;
}

std::vector<ipc::Message> encode_admin_chunks(std::string_view text, uint64_t reqid, std::size_t chunk, bool last) {
    std::vector<ipc::Message> out;
    std::size_t off = 0;
    do {
        std::size_t n = std::min(chunk, text.size() - off);
        out.push_back(encode(AdminReply{std::string(text.substr(off, n)), !last || off + n < text.size()}, reqid));
        off += n;
    } while (off < text.size());
    return out;
}

ipc::Message encode(const AdminMore& r, uint64_t reqid) {
    ipc::Message m(Type::admin_more, reqid);
    m.add_u64(Tag::status, r.go_on ? 1 : 0);
    return m;
}

bool decode(const ipc::Message& m, AdminMore& out, std::string& err) {
    static const Shape shape{{Tag::status}};
    out = AdminMore{};
    Fields fs;
    uint64_t go_on = 0;
    if (!fs.split(m, Type::admin_more, shape, err) || !need_u64(fs.get(Tag::status), Tag::status, 1, go_on, err))
        return false;
    out.go_on = go_on == 1;
    return true;
}

bool decode(const ipc::Message& m, AdminReply& out, std::string& err) {
    static const Shape shape{{Tag::text, Tag::status}};
    out = AdminReply{};
    Fields fs;
    uint64_t more = 0;
    if (!fs.split(m, Type::admin_reply, shape, err) || !need_bytes(fs.get(Tag::text), Tag::text, ipc::kMaxMessage, out.text, err) ||
        !need_u64(fs.get(Tag::status), Tag::status, 1, more, err))
        return false;
    out.more = more == 1;
    return true;
}

ipc::Message encode(const StatsRequest&, uint64_t reqid) { return ipc::Message(Type::stats_request, reqid); }
bool decode(const ipc::Message& m, StatsRequest&, std::string& err) { return empty(m, Type::stats_request, err); }

ipc::Message encode(const StatsReply& r, uint64_t reqid) {
    ipc::Message m(Type::stats_reply, reqid);
    for (auto& s : r.samples)
        m.add(Tag::metric_name, s.name).add(Tag::metric_labels, s.labels).add_u64(Tag::metric_value, s.value);
    return m;
}

bool decode(const ipc::Message& m, StatsReply& out, std::string& err) {
    static const Shape shape{{}, {Tag::metric_name, Tag::metric_labels, Tag::metric_value}, Tag::metric_name, kMaxStatsSamples};
    out = StatsReply{};
    Fields fs;
    if (!fs.split(m, Type::stats_reply, shape, err)) return false;
    for (auto& g : fs.groups()) {
        metrics::Sample s;
        if (!need_text(find(g, Tag::metric_name), Tag::metric_name, 128, s.name, err, true) ||
            !need_text(find(g, Tag::metric_labels), Tag::metric_labels, 2048, s.labels, err) ||
            !need_u64(find(g, Tag::metric_value), Tag::metric_value, UINT64_MAX, s.value, err))
            return false;
        out.samples.push_back(std::move(s));
    }
    return true;
}

ipc::Message encode(const AnvilConnect& a, uint64_t reqid) {
    ipc::Message m(Type::anvil_connect, reqid);
    m.add(Tag::client_addr, a.client_addr).add(Tag::listen_kind, a.listen_kind);
    return m;
}

bool decode(const ipc::Message& m, AnvilConnect& out, std::string& err) {
    static const Shape shape{{Tag::client_addr, Tag::listen_kind}};
    out = AnvilConnect{};
    Fields fs;
    if (!fs.split(m, Type::anvil_connect, shape, err) ||
        !need_text(fs.get(Tag::client_addr), Tag::client_addr, kMaxClientAddr, out.client_addr, err, true) ||
        !need_text(fs.get(Tag::listen_kind), Tag::listen_kind, 16, out.listen_kind, err))
        return false;
    if (!listen_kind_ok(out.listen_kind)) { err = "bad listen_kind"; return false; }
    return true;
}

ipc::Message encode(const AnvilVerdict& a, uint64_t reqid) {
    ipc::Message m(Type::anvil_verdict, reqid);
    m.add_u64(Tag::anvil_status, a.status).add_u64(Tag::anvil_concurrent, a.concurrent);
    m.add_u64(Tag::anvil_rate, a.rate).add_u64(Tag::anvil_auth_failures, a.auth_failures);
    return m;
}

bool decode(const ipc::Message& m, AnvilVerdict& out, std::string& err) {
    static const Shape shape{{Tag::anvil_status, Tag::anvil_concurrent, Tag::anvil_rate, Tag::anvil_auth_failures}};
    out = AnvilVerdict{};
    Fields fs;
    return fs.split(m, Type::anvil_verdict, shape, err) &&
           need_u64(fs.get(Tag::anvil_status), Tag::anvil_status, uint64_t(ipc::AnvilStatus::refuse_rate), out.status, err) &&
           need_u64(fs.get(Tag::anvil_concurrent), Tag::anvil_concurrent, UINT64_MAX, out.concurrent, err) &&
           opt_u64(fs.get(Tag::anvil_rate), UINT64_MAX, out.rate, err) &&
           need_u64(fs.get(Tag::anvil_auth_failures), Tag::anvil_auth_failures, UINT64_MAX, out.auth_failures, err);
}

ipc::Message encode(const AnvilDisconnect&, uint64_t reqid) { return ipc::Message(Type::anvil_disconnect, reqid); }
bool decode(const ipc::Message& m, AnvilDisconnect&, std::string& err) { return empty(m, Type::anvil_disconnect, err); }

ipc::Message encode(const AnvilAuthFail& a, uint64_t reqid) {
    ipc::Message m(Type::anvil_auth_fail, reqid);
    m.add(Tag::client_addr, a.client_addr);
    return m;
}

bool decode(const ipc::Message& m, AnvilAuthFail& out, std::string& err) {
    static const Shape shape{{Tag::client_addr}};
    out = AnvilAuthFail{};
    Fields fs;
    return fs.split(m, Type::anvil_auth_fail, shape, err) &&
           need_text(fs.get(Tag::client_addr), Tag::client_addr, kMaxClientAddr, out.client_addr, err, true);
}

ipc::Message encode(const AnvilAuthCount& a, uint64_t reqid) {
    ipc::Message m(Type::anvil_auth_count, reqid);
    m.add(Tag::client_addr, a.client_addr).add_u64(Tag::anvil_auth_failures, a.auth_failures);
    return m;
}

bool decode(const ipc::Message& m, AnvilAuthCount& out, std::string& err) {
    static const Shape shape{{Tag::client_addr, Tag::anvil_auth_failures}};
    out = AnvilAuthCount{};
    Fields fs;
    return fs.split(m, Type::anvil_auth_count, shape, err) &&
           need_text(fs.get(Tag::client_addr), Tag::client_addr, kMaxClientAddr, out.client_addr, err, true) &&
           need_u64(fs.get(Tag::anvil_auth_failures), Tag::anvil_auth_failures, UINT64_MAX, out.auth_failures, err);
}

ipc::Message encode(const MilterConnect& c, uint64_t reqid) {
    ipc::Message m(Type::milter_connect, reqid);
    m.add_u64(Tag::milter_index, c.index).add(Tag::text, c.spec);
    return m;
}

bool decode(const ipc::Message& m, MilterConnect& out, std::string& err) {
    static const Shape shape{{Tag::milter_index, Tag::text}};
    out = MilterConnect{};
    Fields fs;
    return fs.split(m, Type::milter_connect, shape, err) &&
           need_u64(fs.get(Tag::milter_index), Tag::milter_index, 15, out.index, err) &&
           need_text(fs.get(Tag::text), Tag::text, kMaxMilterSpec, out.spec, err, true);
}

ipc::Message encode(MilterSocket& s, uint64_t reqid) {
    ipc::Message m(Type::milter_socket, reqid);
    m.add_fd(std::move(s.fd));
    return m;
}

bool decode(ipc::Message& m, MilterSocket& out, std::string& err) {
    static const Shape shape{{}, {}, std::nullopt, 0, 1};
    Fields fs;
    if (!fs.split(m, Type::milter_socket, shape, err)) return false;
    out.fd = std::move(m.fds[0]);
    return true;
}

}  // namespace mta::wire
