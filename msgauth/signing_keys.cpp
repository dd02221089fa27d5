// Loading the dkim_keys table and choosing the keys for a From: domain (see signing_keys.h).
#include "msgauth/signing_keys.h"

#include <cerrno>
#include <cstring>

#include "common/file_util.h"
#include "common/table.h"

namespace mta::msgauth {
namespace {

// "alg keyfile origin:line" as mtamap wrote it.
struct Entry {
    std::string alg, keyfile, origin;
    int line = 0;
};

bool parse_entry(const std::string& value, Entry& e) {
    std::size_t a = value.find(' '), b = value.find(' ', a == std::string::npos ? a : a + 1);
    std::size_t colon = value.rfind(':');
    if (a == std::string::npos || b == std::string::npos || colon == std::string::npos || colon < b) return false;
    e.alg = value.substr(0, a);
    e.keyfile = value.substr(a + 1, b - a - 1);
    e.origin = value.substr(b + 1, colon - b - 1);
    std::string n = value.substr(colon + 1);
    if (n.empty() || n.size() > 9 || n.find_first_not_of("0123456789") != std::string::npos) return false;
    e.line = std::stoi(n);
    return (e.alg == "rsa" || e.alg == "ed25519") && !e.keyfile.empty();
}

}  // namespace

bool SigningKeys::load(const std::string& path, const std::string& cfg_source, std::vector<ConfigError>& errors) {
    keys_.clear();
    std::size_t before = errors.size();
    std::string err;
    auto table = table::Table::open(path, err);
    std::vector<std::pair<std::string, std::string>> entries;
    if (!table || !table->entries(entries, kMaxSigningKeys, err)) {
        errors.push_back({cfg_source, 0, "dkim_keys", err});
        return false;
    }
    for (auto& entry : entries) {
        const std::string& key = entry.first;  // named: clang < 16 cannot capture structured bindings
        const std::string& value = entry.second;
        Entry e;
        std::size_t sp = key.find(' ');
        if (sp == std::string::npos || !parse_entry(value, e)) {
            errors.push_back({cfg_source, 0, "dkim_keys", path + ": entry \"" + key + "\" is not a dkim entry (build it with mtamap -t dkim)"});
            continue;
        }
        auto fail = [&](const std::string& why) {
            errors.push_back({e.origin, e.line, "dkim_keys", key.substr(0, sp) + " selector " + key.substr(sp + 1) + ": " + why});
        };
        std::string pem;
        errno = 0;
        if (!read_file(e.keyfile, pem, kMaxKeyFile)) {
            fail(e.keyfile + ": " + (errno ? strerror(errno) : "larger than 64 KiB"));
            continue;
        }
        DkimSigningKey k;
        k.domain = key.substr(0, sp);
        k.selector = key.substr(sp + 1);
        if (!load_private_key(pem, k.key, err)) {
            fail(e.keyfile + ": " + err);
            continue;
        }
        if ((k.key.type == DkimKeyType::rsa) != (e.alg == "rsa")) {
            fail(e.keyfile + ": the file holds " + (k.key.type == DkimKeyType::rsa ? "an rsa" : "an ed25519") +
                 " key, the table says " + e.alg);
            continue;
        }
        keys_.push_back(std::move(k));
    }
    if (errors.size() != before) {
        keys_.clear();
        return false;
    }
    return true;
}

std::vector<const DkimSigningKey*> SigningKeys::for_domain(std::string_view domain) const {
    for (std::string_view d = domain; !d.empty();) {
        std::vector<const DkimSigningKey*> out;
        for (auto type : {DkimKeyType::rsa, DkimKeyType::ed25519})
            for (auto& k : keys_)
                if (k.domain == d && k.key.type == type) out.push_back(&k);
        if (!out.empty()) return out;
        std::size_t dot = d.find('.');
        if (dot == std::string_view::npos) break;
        d.remove_prefix(dot + 1);
        if (d.find('.') == std::string_view::npos) break;  // never a top-level domain's key
    }
    return {};
}

}  // namespace mta::msgauth
