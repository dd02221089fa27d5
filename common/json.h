// JSON output of the admin tools (--json): string literals; the tools assemble their objects by hand.
#pragma once
#include <string>
#include <string_view>

namespace mta {

// JSON string literal: escapes quotes, backslashes and control bytes; invalid UTF-8 becomes U+FFFD.
std::string json_string(std::string_view s);

}  // namespace mta
