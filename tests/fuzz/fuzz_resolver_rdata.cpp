// libFuzzer target for mta-resolver's parsers of untrusted bytes (resolver/rdata.cpp, answer.cpp):
// no crash/UB on any input, plus invariants: accepted text is bounded, names re-validate to themselves.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "resolver/answer.h"
#include "resolver/rdata.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta::resolver;

namespace {


const uint16_t kTypes[] = {kTypeA, kTypeAAAA, kTypeMX, kTypeTLSA, kTypeTXT, kTypePTR, 5, 0};

void check_name(std::string_view in) {
    auto n = normalize_name(in);
    if (!n) return;
    require(!n->empty() && n->size() <= kMaxNameText);
    require(normalize_name(*n) == n);
    for (char c : *n) require(!(c >= 'A' && c <= 'Z'));
}

void check_wire_name(std::string_view in) {
    std::size_t off = 0;
    auto n = decode_wire_name(in, off);
    if (!n) {
        require(off == 0);
        return;
    }
    require(off > 0 && off <= in.size() && off <= kMaxWireName);
    if (*n != ".") require(normalize_name(*n) == n);
}

void check_rdata(uint16_t qtype, std::string_view rd) {
    auto t = rdata_to_text(qtype, rd);
    if (!t) return;
    require(t->size() <= kMaxRecordText);
    if (qtype == kTypePTR) require(normalize_name(*t) == t);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string buf(reinterpret_cast<const char*>(data), size);  // exact-size heap copy for ASan
    const std::string_view in(buf);
    check_name(in);
    check_wire_name(in);
    if (in.empty()) return 0;

    // First byte picks the type; the rest is one RDATA, and also a list of RDATAs split on 0xff 0xfe.
    const uint16_t qtype = kTypes[uint8_t(in[0]) % (sizeof kTypes / sizeof kTypes[0])];
    std::string_view rest = in.substr(1);
    check_rdata(qtype, rest);

    RawResult r;
    r.rcode = uint8_t(in[0]) >> 4;
    r.secure = in[0] & 1;
    r.bogus = in[0] & 2;
    std::vector<std::string> parts;
    for (std::size_t pos = 0; pos <= rest.size();) {
        std::size_t sep = rest.find("\xff\xfe", pos);
        if (sep == std::string_view::npos) sep = rest.size();
        parts.emplace_back(rest.substr(pos, sep - pos));
        pos = sep + 2;
    }
    for (auto& p : parts) r.rdata.push_back(p);
    Answer a = build_answer(qtype, r);
    require(a.records.size() <= kMaxRecords && a.records.size() + a.dropped == r.rdata.size());
    if (r.bogus) require(a.records.empty() && a.rcode == kRcodeServfail);
    std::size_t total = 0;
    for (auto& rec : a.records) total += rec.size();
    require(total <= kMaxRecordBytes);
    return 0;
}
