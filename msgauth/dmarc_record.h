// DMARC policy records (RFC 7489 §6.3, §6.6.3), organizational domains through the Public Suffix List
// (libpsl, §3.2) and identifier alignment (§3.1). Records are untrusted DNS data; the suffix list is
// the admin's file, read before the role drops privileges.
#pragma once
#include <libpsl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mta::msgauth {

enum class DmarcPolicy { none, quarantine, reject };
enum class DmarcAlignment { relaxed, strict };

const char* policy_name(DmarcPolicy p);

struct DmarcRecord {
    DmarcPolicy policy = DmarcPolicy::none;            // p=
    std::optional<DmarcPolicy> subdomain_policy;       // sp=
    DmarcAlignment adkim = DmarcAlignment::relaxed;
    DmarcAlignment aspf = DmarcAlignment::relaxed;
    unsigned pct = 100;
    std::vector<std::string> rua, ruf;                 // syntactically valid URIs only
    std::string fo = "0";
    std::string rf = "afrf";
    uint32_t ri = 86400;
    bool policy_defaulted = false;  // p= (or sp=) was missing or invalid and a valid rua= made it p=none
};

// "v=DMARC1" as the first tag (§6.6.3 step 2).
bool is_dmarc_record(std::string_view txt);

// False (with err) when DMARC must not be applied with this record: not a tag list, v= not first or not
// DMARC1, or p=/sp= missing or invalid without a valid rua= (§6.6.3 step 6; with one, p=none). Unknown
// tags are ignored; an invalid value of another known tag leaves that tag's default.
bool parse_dmarc_record(std::string_view txt, DmarcRecord& out, std::string& err);

struct PslFree {
    void operator()(psl_ctx_t* p) const { psl_free(p); }
};

// A loaded Public Suffix List.
class PublicSuffixList {
public:
    // Debian's publicsuffix file (psl_dist_filename()), or any list libpsl reads (text or DAFSA).
    bool load_file(const std::string& path, std::string& err);
    // The list as text, in the publicsuffix.org format (tests, or a list shipped in a config).
    bool load_text(std::string_view text, std::string& err);
    // libpsl's compiled-in list, when the file cannot be read.
    bool load_builtin(std::string& err);
    bool loaded() const { return ctx_ || builtin_; }

    // §3.2: the public suffix plus one label, lower-cased; the name itself when it is a public suffix
    // (or not a name at all). Trailing dots are ignored.
    std::string organizational_domain(std::string_view domain) const;

private:
    const psl_ctx_t* get() const { return ctx_ ? ctx_.get() : builtin_; }
    std::unique_ptr<psl_ctx_t, PslFree> ctx_;
    const psl_ctx_t* builtin_ = nullptr;
};

// §3.1: strict means the same name (case-insensitive), relaxed the same organizational domain.
bool dmarc_aligned(std::string_view a, std::string_view b, DmarcAlignment mode, const PublicSuffixList& psl);

}  // namespace mta::msgauth
