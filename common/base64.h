// Base64 (RFC 4648 alphabet, with padding): SMTP AUTH's SASL exchange and DKIM's b=, bh= and p= tags.
// Input to the decoder is untrusted.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace mta {

enum class Base64Mode {
    strict,  // SASL (RFC 4954): no whitespace, unused bits of the last group must be zero
    folded,  // DKIM tag values (RFC 6376 §2.4): folding whitespace skipped, unused bits ignored
};

// nullopt on a character outside the alphabet, missing or misplaced padding, or data after it.
std::optional<std::string> base64_decode(std::string_view in, Base64Mode mode = Base64Mode::strict);
std::string base64_encode(std::string_view in);

}  // namespace mta
