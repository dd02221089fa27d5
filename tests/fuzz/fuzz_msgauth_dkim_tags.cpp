// libFuzzer target for DKIM tag lists, DKIM-Signature values, key records and base64: no crash, the
// bounds hold, reported spans lie inside the input, and whatever decodes re-encodes to the same bytes.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "msgauth/dkim_tags.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta::msgauth;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string in(reinterpret_cast<const char*>(data), size);
    std::string err;

    std::vector<Tag> tags;
    if (parse_tag_list(in, tags, err)) {
        require(tags.size() <= kMaxTags && in.size() <= kMaxTagListBytes);
        for (const Tag& t : tags) {
            require(t.raw_begin <= t.raw_end && t.raw_end <= in.size());
            require(!t.name.empty() && t.value.size() <= t.raw_end - t.raw_begin);
            require(t.value.find(';') == std::string_view::npos);
        }
    } else {
        require(!err.empty());
    }

    DkimSignature sig;
    if (parse_dkim_signature(in, sig, err)) {
        require(sig.b_raw_begin <= sig.b_raw_end && sig.b_raw_end <= in.size());
        require(!sig.signature.empty() && !sig.body_hash.empty());
        require(sig.signed_headers.size() <= kMaxSignedHeaders);
        require(valid_dns_name(sig.domain, false) && valid_dns_name(sig.selector, true));
        bool from = false;
        for (const std::string& h : sig.signed_headers) from = from || h == "from";
        require(from);
        require(!sig.expiration || !sig.timestamp || *sig.expiration >= *sig.timestamp);
        std::string blanked = in;
        blanked.erase(sig.b_raw_begin, sig.b_raw_end - sig.b_raw_begin);
        std::vector<Tag> again;
        require(parse_tag_list(blanked, again, err));  // removing b='s value leaves a valid tag list
    }

    DkimKey key;
    if (parse_dkim_key(in, key, err)) require(key.revoked == key.public_key.empty());

    std::string decoded, twice;
    if (base64_decode(in, decoded)) {
        require(base64_decode(base64_encode(decoded), twice));
        require(twice == decoded);
    }
    return 0;
}
