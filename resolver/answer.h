// Turns one libunbound result (already copied out into plain values) into the resolve_reply the
// MTA sees. Pure: no libunbound types, no I/O, so the bounds it enforces are unit-tested.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/ipc.h"
#include "common/wire/control.h"

namespace mta::resolver {

inline constexpr uint64_t kRcodeError = 65535;      // synthetic: timeout, library or local error
inline constexpr uint64_t kRcodeServfail = 2;
inline constexpr std::size_t kMaxRecords = wire::kMaxDnsRecords;
inline constexpr std::size_t kMaxRecordBytes = wire::kMaxDnsRecordBytes;  // all records together

struct RawResult {
    int rcode = 0;
    bool secure = false;
    bool bogus = false;
    std::string why_bogus;
    std::vector<std::string_view> rdata;  // as libunbound hands it over, one entry per RR
};

struct Answer {
    uint64_t rcode = kRcodeError;
    ipc::DnssecStatus dnssec = ipc::DnssecStatus::insecure;
    std::string text;
    std::vector<std::string> records;
    std::size_t dropped = 0;  // RRs not passed on: malformed, over a bound, or from a bogus answer
};

// Bogus answers never pass records on and always carry rcode SERVFAIL. If every RR of a NOERROR answer was unusable, the answer
// becomes a kRcodeError ("malformed records") so the caller defers instead of taking "no data".
Answer build_answer(uint16_t qtype, const RawResult& r);
Answer error_answer(std::string text);

ipc::Message reply_message(uint64_t reqid, const Answer& a);
const char* dnssec_name(ipc::DnssecStatus s);

}  // namespace mta::resolver
