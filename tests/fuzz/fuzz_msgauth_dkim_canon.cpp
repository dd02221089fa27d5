// libFuzzer target for DKIM canonicalization: the incremental body canonicalizer gives the same bytes
// for any chunking and equals a plain whole-buffer reference; l= only truncates; header parsing and
// canonicalization stay bounded and relaxed headers come out unfolded.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "msgauth/dkim_canon.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta::msgauth;

namespace {


std::string run(DkimCanon c, std::string_view in, std::size_t step, std::optional<uint64_t> limit, uint64_t* size) {
    BodyCanonicalizer b(c, limit);
    std::string out;
    for (std::size_t i = 0; i < in.size(); i += step) b.feed(in.substr(i, step), out);
    b.finish(out);
    if (size) *size = b.canonical_size();
    return out;
}

// RFC 6376 §3.4.3/§3.4.4 written the obvious way: split into lines, fix each, drop trailing empty ones.
std::string reference(DkimCanon c, std::string_view in) {
    std::vector<std::string> lines;
    std::string cur;
    for (std::size_t i = 0; i < in.size(); i++) {
        if (in[i] == '\n' || (in[i] == '\r' && i + 1 < in.size() && in[i + 1] == '\n')) {
            if (in[i] == '\r') i++;
            lines.push_back(cur);
            cur.clear();
        } else {
            cur.push_back(in[i]);
        }
    }
    if (!cur.empty()) lines.push_back(cur);
    if (c == DkimCanon::relaxed) {
        for (std::string& l : lines) {
            std::string r;
            for (char ch : l) {
                bool blank = ch == ' ' || ch == '\t';
                if (blank && !r.empty() && r.back() == ' ') continue;
                r.push_back(blank ? ' ' : ch);
            }
            while (!r.empty() && r.back() == ' ') r.pop_back();
            l = r;
        }
    }
    while (!lines.empty() && lines.back().empty()) lines.pop_back();
    std::string out;
    for (const std::string& l : lines) out += l + "\r\n";
    if (c == DkimCanon::simple && out.empty()) out = "\r\n";
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const std::size_t step = 1 + data[0] % 17;
    const std::string buf(reinterpret_cast<const char*>(data) + 1, size - 1);
    const std::string_view in(buf);

    for (DkimCanon c : {DkimCanon::simple, DkimCanon::relaxed}) {
        uint64_t total = 0;
        const std::string whole = run(c, in, in.size() + 1, std::nullopt, &total);
        require(whole == reference(c, in));
        require(total == whole.size());
        require(run(c, in, step, std::nullopt, nullptr) == whole);
        require(run(c, in, 1, std::nullopt, nullptr) == whole);
        const uint64_t limit = data[0] * 3u;
        require(run(c, in, step, limit, nullptr) == whole.substr(0, limit));
    }

    HeaderSection hs;
    std::string err;
    if (parse_header_section(in, hs, err)) {
        require(hs.body_offset <= in.size() && hs.fields.size() <= kMaxHeaderFields);
        std::vector<std::string> names;
        for (const HeaderField& f : hs.fields) {
            if (f.name.empty()) continue;  // never selected by h=
            std::string relaxed;
            canon_header(DkimCanon::relaxed, f.raw, false, relaxed);
            require(relaxed.find_first_of("\r\n") == std::string::npos);
            require(relaxed.find("  ") == std::string::npos);
            names.push_back(f.name);
        }
        names.push_back("from");
        std::size_t found = 0;
        for (const HeaderField* f : select_headers(hs.fields, names)) found += f != nullptr;
        require(found == names.size() - 1);  // every present field once; the extra "from" finds none left
        canonical_header_data(DkimCanon::relaxed, hs.fields, names, "DKIM-Signature: b=");
    }
    return 0;
}
