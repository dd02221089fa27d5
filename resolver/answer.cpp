// Builds resolve_reply messages from libunbound results, enforcing the record count/size bounds.
#include "resolver/answer.h"

#include "resolver/rdata.h"

namespace mta::resolver {

Answer error_answer(std::string text) {
    Answer a;
    a.rcode = kRcodeError;
    a.text = std::move(text);
    return a;
}

Answer build_answer(uint16_t qtype, const RawResult& r) {
    Answer a;
    a.rcode = r.rcode < 0 ? kRcodeError : uint64_t(r.rcode);
    if (r.bogus) {
        // libunbound may keep the upstream NOERROR; a validating resolver answers SERVFAIL, and a caller
        // that only looks at the rcode must not read "no records" as "no such data".
        a.rcode = kRcodeServfail;
        a.dnssec = ipc::DnssecStatus::bogus;
        a.text = r.why_bogus.empty() ? "bogus" : r.why_bogus;
        a.dropped = r.rdata.size();
        return a;
    }
    a.dnssec = r.secure ? ipc::DnssecStatus::secure : ipc::DnssecStatus::insecure;
    std::size_t bytes = 0;
    for (std::string_view rd : r.rdata) {
        auto text = rdata_to_text(qtype, rd);
        if (!text || a.records.size() >= kMaxRecords || bytes + text->size() > kMaxRecordBytes) {
            a.dropped++;
            continue;
        }
        bytes += text->size();
        a.records.push_back(std::move(*text));
    }
    if (a.records.empty() && !r.rdata.empty() && a.rcode == 0) {
        a.rcode = kRcodeError;
        a.text = "malformed records";
    }
    return a;
}

ipc::Message reply_message(uint64_t reqid, const Answer& a) {
    return wire::encode(wire::ResolveReply{a.rcode, uint64_t(a.dnssec), a.text, a.records}, reqid);
}

const char* dnssec_name(ipc::DnssecStatus s) {
    switch (s) {
    case ipc::DnssecStatus::insecure: return "insecure";
    case ipc::DnssecStatus::secure: return "secure";
    case ipc::DnssecStatus::bogus: return "bogus";
    }
    return "?";
}

}  // namespace mta::resolver
