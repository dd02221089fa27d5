// The DKIM signing keys named by `dkim_keys` (an LMDB table built with `mtamap -t dkim`): read whole,
// with every key file, by mta-msgauth as root before it drops privileges, and by `mtad -n` to report a
// key that will not load where the admin wrote it (FILE:LINE of the table source). Trusts the admin's
// table and files as far as their syntax goes; every failure is an error, never a silently unsigned domain.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "msgauth/dkim_sign.h"

namespace mta::msgauth {

inline constexpr std::size_t kMaxSigningKeys = 10000;  // table entries
inline constexpr std::size_t kMaxKeyFile = 64 * 1024;

class SigningKeys {
public:
    // Every key of the table at `path`; false with one ConfigError per bad entry (file:line of its source
    // when the table knows it, else the table itself under key dkim_keys). `cfg_source` names mta.conf.
    bool load(const std::string& path, const std::string& cfg_source, std::vector<ConfigError>& errors);

    // The keys for mail whose From: domain is `domain` (lower-case): the domain's own keys, else those of
    // its nearest parent domain that has any. RSA before Ed25519, so that verifiers that know only RSA
    // (RFC 8463 §4) see their signature first. Empty: sign nothing.
    std::vector<const DkimSigningKey*> for_domain(std::string_view domain) const;
    std::size_t size() const { return keys_.size(); }

private:
    std::vector<DkimSigningKey> keys_;
};

}  // namespace mta::msgauth
