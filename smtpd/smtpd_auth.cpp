// SASL PLAIN/LOGIN decoding for SMTP AUTH. Every byte here comes from an unauthenticated client.
#include "smtpd/smtpd_auth.h"

#include <cstdint>

namespace mta::smtpd {
namespace {

constexpr std::size_t kMaxField = 255;

bool clean(std::string_view s) {
    return !s.empty() && s.size() <= kMaxField && s.find_first_of(std::string_view("\0\r\n", 3)) == std::string_view::npos;
}

}  // namespace

std::optional<Credentials> parse_plain(std::string_view d) {
    std::size_t a = d.find('\0');
    if (a == std::string_view::npos) return std::nullopt;
    std::size_t b = d.find('\0', a + 1);
    if (b == std::string_view::npos) return std::nullopt;
    std::string_view authzid = d.substr(0, a), authcid = d.substr(a + 1, b - a - 1), passwd = d.substr(b + 1);
    if (!clean(authcid) || !clean(passwd)) return std::nullopt;  // also refuses a third NUL
    if (!authzid.empty() && authzid != authcid) return std::nullopt;
    return Credentials{std::string(authcid), std::string(passwd)};
}

bool valid_login_value(std::string_view decoded) { return clean(decoded); }

}  // namespace mta::smtpd
