// DKIM canonicalization (RFC 6376 §3.4): the header section split into fields, simple/relaxed header
// canonicalization, h= field selection (§5.4.2), and an incremental body canonicalizer. Pure, trusts nothing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "msgauth/dkim_tags.h"

namespace mta::msgauth {

inline constexpr std::size_t kMaxHeaderBytes = 1024 * 1024;
inline constexpr std::size_t kMaxHeaderFields = 10000;

struct HeaderField {
    std::string name;   // as written before the ':', trailing blanks removed; "" when there is no ':'
    std::string raw;    // the whole field, continuation lines joined by CRLF, without the final line end
    std::size_t value_offset = 0;  // where the value starts in raw (just after the ':')
    std::string_view value() const { return std::string_view(raw).substr(value_offset); }
};

struct HeaderSection {
    std::vector<HeaderField> fields;  // top to bottom
    std::size_t body_offset = 0;      // where the body starts in the message (after the empty line)
};

// Splits the header section off a message. Lines end in CRLF or a bare LF; the section ends at the
// first empty line or at the end of the input (no body). A line that is neither a field nor a
// continuation becomes a field without a name. False (with err) past kMaxHeaderBytes/kMaxHeaderFields.
bool parse_header_section(std::string_view message, HeaderSection& out, std::string& err);

// Appends one field in canonical form, followed by CRLF when `crlf` (every field but the signature's own).
void canon_header(DkimCanon c, std::string_view raw, bool crlf, std::string& out);

// The fields named in h=, in h= order, each name taking its instances from the bottom up; nullptr
// where no instance is left (a nonexistent or oversigned name, which contributes nothing).
std::vector<const HeaderField*> select_headers(const std::vector<HeaderField>& fields,
                                               const std::vector<std::string>& names);

// The header data a signature covers: the selected fields in canonical form, then the signature field
// itself (b= value already removed by the caller) without its final CRLF.
std::string canonical_header_data(DkimCanon c, const std::vector<HeaderField>& fields,
                                  const std::vector<std::string>& names, std::string_view signature_field);

// Body canonicalization fed in chunks; the output does not depend on how the body is cut. A bare LF
// ends a line like CRLF does (mail from sendmail may have them); a bare CR is an ordinary byte.
// `limit` is l=: output stops after that many canonical bytes.
class BodyCanonicalizer {
public:
    explicit BodyCanonicalizer(DkimCanon c, std::optional<uint64_t> limit = std::nullopt)
        : canon_(c), limit_(limit.value_or(UINT64_MAX)) {}

    void feed(std::string_view chunk, std::string& out);
    void finish(std::string& out);  // once, after the last chunk

    uint64_t canonical_size() const { return size_; }  // canonical body length, l= ignored
    DkimCanon canon() const { return canon_; }
    uint64_t limit() const { return limit_; }

private:
    void content(const char* p, std::size_t n, std::string& out);
    void line_end(std::string& out);
    void emit(const char* p, std::size_t n, std::string& out);

    DkimCanon canon_;
    uint64_t limit_;
    uint64_t size_ = 0;
    uint64_t empty_lines_ = 0;  // empty lines held back: they only count if content follows
    bool line_has_content_ = false;
    bool wsp_pending_ = false;  // relaxed: a run of blanks not yet known to be inside the line
    bool cr_pending_ = false;   // a CR at the end of a chunk, waiting for its LF
};

}  // namespace mta::msgauth
