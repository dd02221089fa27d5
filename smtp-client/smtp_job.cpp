// The SMTP client's view of a `deliver` job: decoded and answered through common/wire (which bounds and
// checks every field), plus the per-job questions a delivery asks (content, size).
#include "smtp-client/smtp_job.h"

#include <algorithm>
#include <sys/stat.h>

namespace mta::smtp {

std::string Job::qid() const { return wire::format_qid(msgid); }

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
    wire::Deliver d;
    if (!wire::decode(m, d, err)) return false;
    if (d.nexthop.empty()) { err = "bad nexthop"; return false; }  // only local mail has none
    out.msgid = d.msgid;
    out.sender = std::move(d.sender);
    out.nexthop = std::move(d.nexthop);
    out.size = d.size;
    out.body_type = d.body_type;
    out.smtputf8 = d.smtputf8;
    out.envid = std::move(d.envid);
    out.ret = d.ret;
    out.requiretls = d.requiretls;
    out.tls_level = std::move(d.tls_level);
    out.max_per_connection = d.max_per_connection;
    out.source_address = d.source_address;
    out.source_helo = d.source_helo;
    for (wire::DeliverRcpt& r : d.rcpts) {
        Recipient x;
        x.index = r.index;
        x.addr = std::move(r.addr);
        x.notify = r.notify;
        x.orcpt = std::move(r.orcpt);
        out.rcpts.push_back(std::move(x));
    }
    out.body = std::move(d.body);
    return true;
}

ipc::Message make_result(const Job& job, uint64_t reqid) {
    wire::DeliverResult res;
    res.msgid = job.msgid;
    for (const Recipient& r : job.rcpts) res.results.push_back({uint32_t(r.index), r.status, r.text, r.handoff});
    res.tlsrpt = job.tlsrpt;
    res.tlsrpt_rua = job.tlsrpt_rua;
    res.mx_host = job.mx_host;
    return wire::encode(res, reqid);
}

}  // namespace mta::smtp
