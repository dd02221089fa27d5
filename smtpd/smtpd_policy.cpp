// Relay control and the Received: header. The relay rule: local and relay domains from anyone, any
// other destination only for trusted clients; address literals are never local; local parts with
// routing characters (% ! @) reach relay domains only from trusted clients.
#include "smtpd/smtpd_policy.h"


#include "common/mail_headers.h"
#include "common/mailbox_name.h"

namespace mta::smtpd {
namespace {

Reply reply(int code, const char* enh, const addr::Mailbox& m, const char* text) {
    return Reply{code, enh, "<" + m.str() + ">: " + text};
}

}  // namespace

RcptVerdict check_recipient(const addr::Mailbox& m, const Config& cfg, bool may_relay, const table::Table* recipients,
                            const alias::Maps* maps) {
    RcptVerdict v;
    // "<Postmaster>" without a domain (RFC 5321 §4.1.1.3) is always ours.
    const bool local = m.domain.empty() || (!m.literal && cfg.is_local_domain(m.domain));
    const bool vdomain = !local && !m.literal && maps && alias::is_virtual_domain(m.domain, *maps);
    v.local = local;
    // No percent hack, no bang paths, no quoted "user@remote": these would route elsewhere.
    const bool routed = m.local.find_first_of("@%!") != std::string::npos;
    if (local) {
        if (routed)
            v.reply = reply(550, "5.7.1", m, "Recipient address rejected: routing characters not allowed");
        else if (!maildir_name(m.local))
            v.reply = reply(550, "5.1.1", m, "Recipient address rejected: invalid local part");
        if (v.reply) return v;
    } else if (!vdomain && !(!m.literal && !routed && cfg.is_relay_domain(m.domain)) && !may_relay) {
        // A relay domain's own server may still honour the percent hack or a bang path: like Postfix's
        // reject_unauth_destination, only trusted clients may send it sender-specified routing.
        v.reply = reply(554, "5.7.1", m, "Relay access denied");
        return v;
    }
    if (maps && !maps->empty()) {
        alias::Result r = alias::expand(m.str(), cfg, *maps);
        if (r.status == alias::Status::error) {  // a table problem: Postfix defers too, the admin fixes it
            v.reply = reply(451, "4.3.0", m, (std::string("Recipient address rejected: ") + r.summary).c_str());
            v.log_detail = std::move(r.error);
            return v;
        }
        if (r.status == alias::Status::expanded) {
            v.expanded = std::move(r.rcpts);
            return v;
        }
    }
    if (vdomain)
        v.reply = reply(550, "5.1.1", m, "Recipient address rejected: User unknown in virtual alias table");
    else if (local && addr::lower(m.local) != "postmaster" && (recipients || (maps && maps->aliases)) &&
             !(recipients && (recipients->lookup(addr::lower(m.local) + "@" + m.domain) ||
                              recipients->lookup(addr::lower(m.local)))))
        // DESIGN §6: once a recipient table exists (local_recipients or aliases), it is the whole list of
        // local users; an aliases-only site lists every user there (no backscatter from guessing).
        v.reply = reply(550, "5.1.1", m, "Recipient address rejected: User unknown in local recipient table");
    return v;
}

bool spool_has_room(uint64_t free, uint64_t declared_size, uint64_t queue_minfree, uint64_t message_size_limit) {
    // Each term is at most 2^50 (parse_size), so neither sum overflows.
    return free >= queue_minfree + declared_size && free >= message_size_limit + message_size_limit / 2;
}

std::string format_received(const TraceInfo& t) {
    std::string s = "Received: from " + t.helo + " ([" + (t.client_ipv6 ? "IPv6:" : "") + t.client_ip + "])\r\n";
    if (!t.tls_version.empty())
        s += "\t(using " + t.tls_version + " with cipher " + t.tls_cipher + " (" + std::to_string(t.tls_bits) + " bits))\r\n";
    s += "\tby " + t.hostname + " with " + t.protocol + " id " + format_qid(t.msgid);
    if (!t.single_rcpt.empty()) s += "\r\n\tfor <" + t.single_rcpt + ">; ";
    else s += ";\r\n\t";
    s += rfc5322_date(t.when, t.gmtoff) + "\r\n";
    return s;
}

}  // namespace mta::smtpd
