// libunbound context setup for mta-resolver. Trusts mta.conf (already validated by the master) and
// the trust anchor files named there; nothing here sees network data.
#include "resolver/dns_context.h"

#include <cerrno>
#include <cstring>
#include <unbound.h>

#include "common/file_util.h"
#include "common/log.h"

namespace mta::resolver {

void UbCtxDeleter::operator()(ub_ctx* c) const { ub_ctx_delete(c); }
void UbResultDeleter::operator()(ub_result* r) const { ub_resolve_free(r); }

namespace {

std::string collapse_ws(std::string_view s) {
    std::string out;
    bool space = false;
    for (char c : s) {
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            space = !out.empty();
            continue;
        }
        if (space) out.push_back(' ');
        space = false;
        out.push_back(c);
    }
    return out;
}

bool check(int rc, const char* what, std::string& err) {
    if (rc == 0) return true;
    err = std::string(what) + ": " + ub_strerror(rc);
    return false;
}

}  // namespace

std::vector<std::string> parse_trust_anchors(std::string_view text) {
    std::vector<std::string> out;
    std::string pending;
    int depth = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos) eol = text.size();
        std::string_view line = text.substr(pos, eol - pos);
        pos = eol + 1;
        line = line.substr(0, line.find(';'));
        for (char c : line) {
            if (c == '(') { depth++; pending.push_back(' '); }
            else if (c == ')') { depth = depth > 0 ? depth - 1 : 0; pending.push_back(' '); }
            else pending.push_back(c);
        }
        pending.push_back(' ');
        if (depth > 0) continue;
        std::string rr = collapse_ws(pending);
        pending.clear();
        if (!rr.empty() && rr[0] != '$') out.push_back(std::move(rr));
    }
    std::string rest = collapse_ws(pending);  // an unclosed "(" at end of file: pass on, let unbound judge
    if (!rest.empty() && rest[0] != '$') out.push_back(std::move(rest));
    return out;
}

DnsSettings dns_settings(const Config& cfg, const std::string& root_key_file) {
    DnsSettings s;
    s.forwarder = cfg.dns_forwarder;
    s.insecure_domains = cfg.dns_insecure_domains;
    if (!root_key_file.empty()) s.trust_anchor_files.push_back(root_key_file);
    if (!cfg.dns_trust_anchors.empty()) s.trust_anchor_files.push_back(cfg.dns_trust_anchors);
    return s;
}

UbCtxPtr make_context(const DnsSettings& s, std::string& err) {
    UbCtxPtr ctx(ub_ctx_create());
    if (!ctx) { err = "ub_ctx_create failed"; return nullptr; }
    if (!check(ub_ctx_async(ctx.get(), 0), "ub_ctx_async", err)) return nullptr;
    if (!s.forwarder.empty() && !check(ub_ctx_set_fwd(ctx.get(), s.forwarder.c_str()), "dns_forwarder", err))
        return nullptr;
    for (auto& d : s.insecure_domains) {
        if (!check(ub_ctx_set_option(ctx.get(), "domain-insecure:", d.c_str()), "dns_insecure_domains", err))
            return nullptr;
        // libunbound answers the special-use names (test, invalid, onion, home.arpa) itself with NXDOMAIN;
        // a private zone the admin lists here (e.g. mail.test) must reach the forwarder instead. A
        // transparent local zone without data does exactly that, and changes nothing for other names.
        if (!check(ub_ctx_set_option(ctx.get(), "local-zone:", (d + " transparent").c_str()), "dns_insecure_domains",
                   err))
            return nullptr;
    }
    std::size_t anchors = 0;
    for (std::size_t i = 0; i < s.trust_anchor_files.size(); i++) {
        const std::string& path = s.trust_anchor_files[i];
        std::string text;
        if (!read_file(path, text)) {
            if (i == 0 && path == kRootTrustAnchorFile) {
                LOG_WARN("event=trust_anchor_missing file=%s reason=\"%s\" note=\"nothing validates as secure\"",
                         log::safe(path).c_str(), strerror(errno));
                continue;
            }
            err = "cannot read trust anchor file " + path + ": " + strerror(errno);
            return nullptr;
        }
        for (auto& rr : parse_trust_anchors(text)) {
            if (!check(ub_ctx_add_ta(ctx.get(), rr.c_str()), "trust anchor", err)) return nullptr;
            anchors++;
        }
    }
    // Any call that needs a finalised context finalises it; removing a zone that cannot exist is a no-op.
    // A bad trust anchor or option surfaces here, while we can still report it and exit.
    if (!check(ub_ctx_zone_remove(ctx.get(), "finalize.mta-resolver.invalid."), "libunbound configuration", err))
        return nullptr;
    LOG_INFO("event=dns_context forwarder=%s insecure_domains=%zu trust_anchors=%zu",
             s.forwarder.empty() ? "(recursion)" : log::safe(s.forwarder).c_str(), s.insecure_domains.size(), anchors);
    return ctx;
}

bool start_worker(ub_ctx* ctx, void (*cb)(void*, int, ub_result*), std::string& err) {
    int id = 0;
    return check(ub_resolve_async(ctx, "localhost.", 1, 1, nullptr, cb, &id), "starting libunbound worker", err);
}

}  // namespace mta::resolver
