// Builds the libunbound context for mta-resolver from mta.conf while the process can still read the
// filesystem: trust anchors are read here and handed over as strings, and the context is finalised,
// so nothing is left for libunbound to load lazily after the chroot.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"

struct ub_ctx;
struct ub_result;

namespace mta::resolver {

inline constexpr const char* kRootTrustAnchorFile = "/usr/share/dns/root.key";

struct UbCtxDeleter {
    void operator()(ub_ctx* c) const;
};
using UbCtxPtr = std::unique_ptr<ub_ctx, UbCtxDeleter>;

struct UbResultDeleter {
    void operator()(ub_result* r) const;
};
using UbResultPtr = std::unique_ptr<ub_result, UbResultDeleter>;

// Zone-file style DS/DNSKEY text to one RR per string: ';' comments dropped, "( ... )" continuation
// lines joined, whitespace collapsed, $-directives and blank lines skipped. Pure.
std::vector<std::string> parse_trust_anchors(std::string_view text);

struct DnsSettings {
    std::string forwarder;                  // "" = full recursion from the built-in root hints
    std::vector<std::string> insecure_domains;
    std::vector<std::string> trust_anchor_files;  // root key first, then cfg.dns_trust_anchors
};
DnsSettings dns_settings(const Config& cfg, const std::string& root_key_file = kRootTrustAnchorFile);

// Creates and finalises a context in fork mode (threads off): the background worker process is only
// forked by start_worker(), i.e. after the privilege drop, so it inherits the chroot and the user.
// A missing root key file is a warning (validation then cannot reach "secure"); a missing or
// unparsable extra trust anchor file is an error.
UbCtxPtr make_context(const DnsSettings& s, std::string& err);

// Forks libunbound's worker now (with a local "localhost" query) so that later peer links are not
// inherited by it. `cb` receives that query's result.
bool start_worker(ub_ctx* ctx, void (*cb)(void*, int, ub_result*), std::string& err);

}  // namespace mta::resolver
