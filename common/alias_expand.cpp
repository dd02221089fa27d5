// Alias and virtual alias expansion. A depth-first walk with two sets: the addresses on the current
// path (met again: a loop, so the address is final and delivers to its own mailbox) and every address
// already looked at (met again elsewhere: its results are in already). Both bound the work, together
// with kMaxRecipients and kMaxLookups.
#include "common/alias_expand.h"

#include <set>

#include "common/address.h"

namespace mta::alias {
namespace {

void split_address(std::string_view a, std::string& local, std::string& domain) {
    auto at = a.rfind('@');
    if (at == std::string_view::npos) {
        local = std::string(a);
        domain.clear();
        return;
    }
    local = std::string(a.substr(0, at));
    domain = addr::lower(a.substr(at + 1));
}

bool plain_domain(std::string_view d) { return !d.empty() && d[0] != '[' && addr::valid_domain(d, true); }

// A local part, or local@domain, that RCPT TO would accept (not quoted, no source route).
bool plain_address(std::string_view a, bool need_domain) {
    if (a.empty() || a[0] == '"' || a[0] == '@') return false;
    bool has_domain = a.find('@') != std::string_view::npos;
    if (need_domain && !has_domain) return false;
    std::string path = "<" + std::string(a) + (has_domain ? "" : "@example.invalid") + ">";
    addr::PathOptions opts;
    opts.smtputf8 = true;
    addr::PathResult r = addr::parse_path(path, opts);
    return r.ok && r.rest.empty() && !r.mailbox.quoted && !r.mailbox.local.empty();
}

bool check_target(std::string_view t, bool virtual_kind, std::string& err) {
    std::string q = "\"" + std::string(t.substr(0, 80)) + "\": ";
    if (t[0] == '|') {
        err = q + "commands are not supported (this MTA never runs programs for aliases; use an address)";
        return false;
    }
    if (t[0] == '/') {
        err = q + "files are not supported (this MTA never writes files for aliases; use an address)";
        return false;
    }
    if (addr::lower(t.substr(0, 9)) == ":include:") {
        err = q + ":include: is not supported (list the addresses in the table itself)";
        return false;
    }
    if (t[0] == '@') {
        if (!virtual_kind) { err = q + "an @domain target only works in a virtual table"; return false; }
        if (!plain_domain(t.substr(1))) { err = q + "not a domain after '@'"; return false; }
        return true;
    }
    if (!plain_address(t, false)) { err = q + "not an address (expected user or user@domain)"; return false; }
    return true;
}

struct Walker {
    const Config& cfg;
    const Maps& maps;
    std::string dflt;
    Result res;
    std::vector<std::string> path;
    std::set<std::string> seen, finals;
    std::size_t lookups = 0;

    bool fail(std::string e, const char* summary = "alias table error") {
        res.status = Status::error;
        res.error = std::move(e);
        res.summary = summary;
        return false;
    }

    bool add_final(const std::string& a) {
        if (!finals.insert(addr::lower(a)).second) return true;
        if (res.rcpts.size() >= kMaxRecipients)
            return fail("alias expansion gives more than " + std::to_string(kMaxRecipients) + " recipients",
                        "alias expansion gives too many recipients");
        res.rcpts.push_back(a);
        return true;
    }

    // The table value for `key` (lower-cased address), and whether it came from the virtual table.
    std::optional<std::string> find(const std::string& key, const std::string& local, const std::string& domain,
                                    bool& from_virtual) {
        from_virtual = true;
        if (maps.virtual_map && !domain.empty()) {
            if (auto v = maps.virtual_map(key)) return v;
            if (auto v = maps.virtual_map("@" + domain)) return v;
        }
        from_virtual = false;
        if (maps.aliases && (domain.empty() || cfg.is_local_domain(domain))) return maps.aliases(addr::lower(local));
        return std::nullopt;
    }

    // Returns false once an error is recorded; `found` says whether `a` itself had an entry.
    bool walk(const std::string& a, int depth, bool& found) {
        found = false;
        std::string key = addr::lower(a);
        for (auto& p : path)
            if (p == key) return add_final(a);
        if (!seen.insert(key).second) return true;
        if (++lookups > kMaxLookups)
            return fail("alias expansion looks at more than " + std::to_string(kMaxLookups) + " addresses",
                        "alias expansion gives too many recipients");
        std::string local, domain;
        split_address(a, local, domain);
        bool from_virtual = false;
        auto v = find(key, local, domain, from_virtual);
        if (!v) return add_final(a);
        found = true;
        if (depth >= kMaxDepth)
            return fail("aliases nested more than " + std::to_string(kMaxDepth) + " levels deep at " + a,
                        "aliases nested too deeply");
        auto targets = split_targets(*v);
        if (targets.empty()) return fail("empty table entry for " + a);
        path.push_back(key);
        for (auto& t : targets) {
            std::string err;
            if (!check_target(t, from_virtual, err)) return fail("bad target in table entry for " + a + ": " + err);
            std::string next = t[0] == '@' ? local + t : t.find('@') == std::string::npos ? t + "@" + dflt : t;
            std::string tl, td;
            split_address(next, tl, td);
            bool sub = false;
            if (!walk(tl + "@" + td, depth + 1, sub)) return false;
        }
        path.pop_back();
        return true;
    }
};

}  // namespace

Maps from_tables(const table::Table* virtual_map, const table::Table* aliases) {
    Maps m;
    if (virtual_map) m.virtual_map = [virtual_map](std::string_view k) { return virtual_map->lookup(k); };
    if (aliases) m.aliases = [aliases](std::string_view k) { return aliases->lookup(k); };
    return m;
}

std::string default_domain(const Config& cfg) {
    return cfg.local_domains.empty() ? cfg.hostname : cfg.local_domains.front();
}

Result expand(std::string_view address, const Config& cfg, const Maps& maps) {
    if (maps.empty() || address.empty()) return {};
    Walker w{cfg, maps, default_domain(cfg), {}, {}, {}, {}, 0};
    bool found = false;
    if (!w.walk(std::string(address), 0, found)) {
        w.res.rcpts.clear();
        return std::move(w.res);
    }
    if (!found) return {};
    w.res.status = Status::expanded;
    return std::move(w.res);
}

bool is_virtual_domain(std::string_view domain_lower, const Maps& maps) {
    if (!maps.virtual_map || domain_lower.empty() || domain_lower.find('@') != std::string_view::npos) return false;
    return maps.virtual_map(domain_lower).has_value();
}

bool check_entry(bool virtual_kind, std::string_view key, std::string_view value, std::string& err) {
    if (!virtual_kind) {
        if (key.find('@') != std::string_view::npos || !plain_address(key, false)) {
            err = "alias names are local parts (put user@domain keys in a virtual table)";
            return false;
        }
    } else if (key.find('@') == std::string_view::npos) {
        if (!plain_domain(key)) { err = "expected user@domain, @domain or a domain as key"; return false; }
        return true;  // a virtual alias domain: the value is not used
    } else if (key[0] == '@' ? !plain_domain(key.substr(1)) : !plain_address(key, true)) {
        err = "expected user@domain, @domain or a domain as key";
        return false;
    }
    auto targets = split_targets(value);
    if (targets.empty()) { err = "no targets"; return false; }
    for (auto& t : targets)
        if (!check_target(t, virtual_kind, err)) return false;
    return true;
}

std::vector<std::string> split_targets(std::string_view value) {
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i < value.size()) {
        while (i < value.size() && (value[i] == ',' || value[i] == ' ' || value[i] == '\t')) i++;
        std::size_t b = i;
        while (i < value.size() && value[i] != ',' && value[i] != ' ' && value[i] != '\t') i++;
        if (i > b) out.emplace_back(value.substr(b, i - b));
    }
    return out;
}

}  // namespace mta::alias
