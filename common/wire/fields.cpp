// The field-order rule and typed readers shared by every wire decoder (see fields.h).
#include "common/wire/fields.h"

#include <algorithm>

#include "common/wire/limits.h"

namespace mta::wire {
namespace {

bool member(std::initializer_list<ipc::Tag> set, ipc::Tag t) {
    return std::find(set.begin(), set.end(), t) != set.end();
}

std::string bad(const ipc::Field* f) { return std::string("bad ") + tag_name(f->tag); }

}  // namespace

const char* tag_name(ipc::Tag t) {
    using ipc::Tag;
    switch (t) {
    case Tag::version: return "version";
    case Tag::role: return "role";
    case Tag::instance: return "instance";
    case Tag::config_text: return "config_text";
    case Tag::listen_kind: return "listen_kind";
    case Tag::text: return "text";
    case Tag::code: return "code";
    case Tag::enhanced: return "enhanced";
    case Tag::msgid: return "msgid";
    case Tag::sender: return "sender";
    case Tag::rcpt: return "rcpt";
    case Tag::rcpt_notify: return "rcpt_notify";
    case Tag::rcpt_orcpt: return "rcpt_orcpt";
    case Tag::rcpt_index: return "rcpt_index";
    case Tag::status: return "status";
    case Tag::size: return "size";
    case Tag::body_type: return "body_type";
    case Tag::smtputf8: return "smtputf8";
    case Tag::envid: return "envid";
    case Tag::ret: return "ret";
    case Tag::client_addr: return "client_addr";
    case Tag::client_helo: return "client_helo";
    case Tag::auth_user: return "auth_user";
    case Tag::arrival: return "arrival";
    case Tag::nexthop: return "nexthop";
    case Tag::requiretls: return "requiretls";
    case Tag::uid: return "uid";
    case Tag::privileged: return "privileged";
    case Tag::name: return "name";
    case Tag::qtype: return "qtype";
    case Tag::rcode: return "rcode";
    case Tag::dnssec: return "dnssec";
    case Tag::record: return "record";
    case Tag::tls_cert_pem: return "tls_cert_pem";
    case Tag::tls_key_pem: return "tls_key_pem";
    case Tag::tls_level: return "tls_level";
    case Tag::dsn_handoff: return "dsn_handoff";
    case Tag::msgauth_trusted: return "msgauth_trusted";
    case Tag::msgauth_action: return "msgauth_action";
    case Tag::msgauth_prepend: return "msgauth_prepend";
    case Tag::msgauth_cut_offset: return "msgauth_cut_offset";
    case Tag::msgauth_cut_length: return "msgauth_cut_length";
    case Tag::hold_reason: return "hold_reason";
    case Tag::max_per_connection: return "max_per_connection";
    case Tag::source_address: return "source_address";
    case Tag::source_helo: return "source_helo";
    case Tag::tlsrpt: return "tlsrpt";
    case Tag::tlsrpt_rua: return "tlsrpt_rua";
    case Tag::mx_host: return "mx_host";
    case Tag::metric_name: return "metric_name";
    case Tag::metric_labels: return "metric_labels";
    case Tag::metric_value: return "metric_value";
    case Tag::milter_index: return "milter_index";
    case Tag::anvil_status: return "anvil_status";
    case Tag::anvil_concurrent: return "anvil_concurrent";
    case Tag::anvil_rate: return "anvil_rate";
    case Tag::anvil_auth_failures: return "anvil_auth_failures";
    }
    return "unknown tag";
}

bool Fields::split(const ipc::Message& m, ipc::Type type, const Shape& shape, std::string& err) {
    once_.clear();
    groups_.clear();
    if (m.type != type) { err = std::string("expected ") + ipc::type_name(type); return false; }
    if (m.fds.size() != shape.fds) { err = "expected " + std::to_string(shape.fds) + " fd(s)"; return false; }
    for (const auto& fd : m.fds)
        if (!fd.valid()) { err = "invalid fd"; return false; }
    for (const ipc::Field& f : m.fields) {
        if (member(shape.group, f.tag)) {
            if (groups_.empty() || find(groups_.back(), f.tag)) {
                if (shape.leader && f.tag != *shape.leader) {
                    err = std::string(tag_name(f.tag)) + " before " + tag_name(*shape.leader);
                    return false;
                }
                if (groups_.size() >= shape.max_groups) { err = "too many recipients"; return false; }
                groups_.emplace_back();
            }
            groups_.back().push_back(&f);
        } else if (member(shape.once, f.tag)) {
            if (get(f.tag)) { err = std::string("duplicate ") + tag_name(f.tag); return false; }
            once_.push_back(&f);
        } else {
            err = "unexpected field " + std::to_string(uint16_t(f.tag));
            return false;
        }
    }
    return true;
}

const ipc::Field* Fields::get(ipc::Tag t) const {
    for (const ipc::Field* f : once_)
        if (f->tag == t) return f;
    return nullptr;
}

const ipc::Field* find(const Fields::Group& g, ipc::Tag t) {
    for (const ipc::Field* f : g)
        if (f->tag == t) return f;
    return nullptr;
}

bool need_u64(const ipc::Field* f, ipc::Tag t, uint64_t max, uint64_t& out, std::string& err) {
    if (!f) { err = std::string("missing ") + tag_name(t); return false; }
    return opt_u64(f, max, out, err);
}

bool opt_u64(const ipc::Field* f, uint64_t max, uint64_t& out, std::string& err) {
    if (!f) return true;
    auto v = ipc::as_u64(f->value);
    if (!v || *v > max) { err = bad(f); return false; }
    out = *v;
    return true;
}

bool opt_bool(const ipc::Field* f, bool& out, std::string& err) {
    uint64_t v = out;
    if (!opt_u64(f, 1, v, err)) return false;
    out = v == 1;
    return true;
}

bool need_text(const ipc::Field* f, ipc::Tag t, std::size_t max, std::string& out, std::string& err, bool nonempty) {
    if (!f) { err = std::string("missing ") + tag_name(t); return false; }
    return opt_text(f, max, out, err, nonempty);
}

bool opt_text(const ipc::Field* f, std::size_t max, std::string& out, std::string& err, bool nonempty) {
    if (!f) return true;
    if (!clean_text(f->value, max) || (nonempty && f->value.empty())) { err = bad(f); return false; }
    out = f->value;
    return true;
}

bool need_bytes(const ipc::Field* f, ipc::Tag t, std::size_t max, std::string& out, std::string& err) {
    if (!f) { err = std::string("missing ") + tag_name(t); return false; }
    return opt_bytes(f, max, out, err);
}

bool opt_bytes(const ipc::Field* f, std::size_t max, std::string& out, std::string& err) {
    if (!f) return true;
    if (f->value.size() > max) { err = bad(f); return false; }
    out = f->value;
    return true;
}

void add_envelope(ipc::Message& m, const Envelope& e) {
    using ipc::Tag;
    m.add(Tag::sender, e.sender);
    m.add_u64(Tag::size, e.size).add_u64(Tag::body_type, e.body_type).add_u64(Tag::smtputf8, e.smtputf8);
    if (!e.envid.empty()) m.add(Tag::envid, e.envid);
    m.add_u64(Tag::ret, e.ret);
    if (e.requiretls) m.add_u64(Tag::requiretls, 1);
}

bool get_envelope(const Fields& fs, Envelope& e, std::string& err) {
    using ipc::Tag;
    if (!need_text(fs.get(Tag::sender), Tag::sender, kMaxAddress, e.sender, err) ||
        !opt_u64(fs.get(Tag::size), UINT64_MAX, e.size, err) ||
        !opt_u64(fs.get(Tag::body_type), 2, e.body_type, err) ||
        !opt_bool(fs.get(Tag::smtputf8), e.smtputf8, err) ||
        !opt_text(fs.get(Tag::envid), kMaxEnvid, e.envid, err) ||
        !opt_u64(fs.get(Tag::ret), 2, e.ret, err) ||
        !opt_bool(fs.get(Tag::requiretls), e.requiretls, err))
        return false;
    if (e.envid.find(' ') != std::string::npos) { err = "bad envid"; return false; }
    return true;
}

}  // namespace mta::wire
