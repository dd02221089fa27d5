// Recipient domain -> delivery role and next hop (see routing.h).
#include "common/routing.h"

namespace mta {

Route route(const Config& cfg, std::string_view domain) {
    bool local = domain.empty() || cfg.is_local_domain(domain);
    if (!local) return {"smtp", std::string(domain)};
    if (cfg.local_transport.rfind("lmtp:", 0) == 0) return {"smtp", cfg.local_transport};
    return {"local", std::string(domain)};
}

}  // namespace mta
