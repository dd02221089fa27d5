// LMDB lookup tables: read-only opening with replacement detection, atomic building, source parsing
// and crypt(3) password hashes. The table files are admin-made; the source text is admin input too,
// but still checked line by line so that a typo becomes an error message, never a silent entry.
#include "common/table.h"

#include <crypt.h>
#include <fcntl.h>
#include <lmdb.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/address.h"
#include "common/alias_expand.h"
#include "common/fd.h"
#include "common/routing.h"

namespace mta::table {

struct Table::Env {
    MDB_env* env = nullptr;
    MDB_dbi dbi = 0;
    ~Env() {
        if (env) mdb_env_close(env);
    }
};

namespace {

int64_t mtime_ns(const struct stat& st) { return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec; }

std::string lmdb_err(const char* what, int rc) { return std::string(what) + ": " + mdb_strerror(rc); }

std::string trim(std::string_view s) {
    std::size_t b = 0, e = s.size();
    while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) b++;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) e--;
    return std::string(s.substr(b, e - b));
}

// Tab separates fields like a space; every other control character is an error.
bool has_ctl(std::string_view s) {
    for (char c : s)
        if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) return true;
    return false;
}

struct LogicalLine {
    int lineno;
    std::string text;
};

// Postfix table syntax: a logical line starts with non-whitespace text; a line that starts with
// whitespace continues it (joined with one space). Blank lines and '#' comment lines are skipped.
// auth sources have no continuations: a password may begin with a blank.
std::vector<LogicalLine> logical_lines(std::string_view text, bool continuations, std::vector<std::string>& errors) {
    std::vector<LogicalLine> out;
    int lineno = 0;
    bool open = false;  // the last logical line may still be continued
    while (!text.empty()) {
        std::size_t nl = text.find('\n');
        std::string_view raw = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        lineno++;
        std::string line = trim(raw);
        if (line.empty() || line[0] == '#') continue;
        if (continuations && (raw[0] == ' ' || raw[0] == '\t')) {
            if (!open) {
                errors.push_back("line " + std::to_string(lineno) + ": continuation line without an entry before it");
                continue;
            }
            out.back().text += ' ';
            out.back().text += line;
            continue;
        }
        out.push_back({lineno, std::move(line)});
        open = true;
    }
    return out;
}

// transport and tls_policy: a domain key and a value the router can use (common/routing.h).
// dkim: "domain selector" -> "alg keyfile origin:line". The key file is read by mtad -n and mta-msgauth.
template <class Fail>
bool dkim_entry(std::string& key, std::string& value, const std::string& origin, int lineno, Fail& fail) {
    std::vector<std::string> f;
    for (std::size_t i = 0; i < value.size();) {
        std::size_t b = value.find_first_not_of(" \t", i);
        if (b == std::string::npos) break;
        std::size_t e = value.find_first_of(" \t", b);
        f.push_back(value.substr(b, e == std::string::npos ? std::string::npos : e - b));
        i = e == std::string::npos ? value.size() : e;
    }
    auto label_ok = [](const std::string& s) {
        return !s.empty() && s.size() <= 253 && s.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-._") == std::string::npos &&
               s.front() != '.' && s.back() != '.' && s.find("..") == std::string::npos;
    };
    if (f.size() != 3) { fail("expected DOMAIN SELECTOR rsa|ed25519 KEYFILE"); return false; }
    key = addr::lower(key);
    f[0] = addr::lower(f[0]);
    if (!addr::valid_domain(key)) { fail("bad domain \"" + key + "\""); return false; }
    if (!label_ok(f[0])) { fail("bad selector \"" + f[0] + "\""); return false; }
    if (f[1] != "rsa" && f[1] != "ed25519") { fail("bad key type \"" + f[1] + "\": expected rsa or ed25519"); return false; }
    if (f[2].empty() || f[2][0] != '/') { fail("the key file must be an absolute path: " + f[2]); return false; }
    key += " " + f[0];
    value = f[1] + " " + f[2] + " " + (origin.empty() ? "line" : origin) + ":" + std::to_string(lineno);
    return true;
}

template <class Fail>
bool check_domain_entry(Kind kind, const std::string& key, const std::string& value, Fail& fail) {
    if (kind == Kind::destination_policy) {
        DestinationPolicy p;
        std::string err;
        if (!valid_policy_key(key)) {
            fail("bad key \"" + key + "\": expected domain, .domain, *, [host], [host]:port, mx:host or mx:.suffix");
            return false;
        }
        if (parse_destination_policy(value, p, err)) return true;
        fail(err);
        return false;
    }
    if (kind == Kind::source_addresses) {
        SourceAddress a;
        std::string err;
        if (parse_source_address(key, value, a, err)) {
            if (a.address == key) return true;
            err = "write the address as " + a.address;
        }
        fail(err);
        return false;
    }
    if (!valid_domain_key(key)) { fail("bad key \"" + key + "\": expected domain, .domain or *"); return false; }
    if (kind == Kind::sender_pools) {
        std::vector<std::string> pools;
        std::string err;
        if (parse_pool_list(value, pools, err)) return true;
        fail(err);
        return false;
    }
    if (kind == Kind::tls_policy) {
        if (valid_tls_policy_level(value)) return true;
        fail("bad TLS level \"" + value + "\": expected none, may, encrypt, dane or mta-sts");
        return false;
    }
    TransportEntry e;
    std::string err;
    if (parse_transport(value, e, err)) return true;
    fail(err);
    return false;
}

}  // namespace

std::unique_ptr<Table> Table::open(const std::string& path, std::string& err) {
    std::unique_ptr<Table> t(new Table());  // private constructor: make_unique cannot reach it
    t->path_ = path;
    t->env_ = std::make_unique<Env>();
    int rc = mdb_env_create(&t->env_->env);
    if (rc != 0) { err = lmdb_err("mdb_env_create", rc); return nullptr; }
    rc = mdb_env_open(t->env_->env, path.c_str(), MDB_RDONLY | MDB_NOSUBDIR | MDB_NOLOCK, 0);
    if (rc != 0) { err = path + ": " + mdb_strerror(rc); return nullptr; }
    MDB_txn* txn = nullptr;
    rc = mdb_txn_begin(t->env_->env, nullptr, MDB_RDONLY, &txn);
    if (rc == 0) rc = mdb_dbi_open(txn, nullptr, 0, &t->env_->dbi);
    if (txn) mdb_txn_abort(txn);
    if (rc != 0) { err = path + ": " + mdb_strerror(rc); return nullptr; }
    int fd = -1;
    struct stat st {};
    if (mdb_env_get_fd(t->env_->env, &fd) != 0 || fstat(fd, &st) != 0) { err = path + ": fstat failed"; return nullptr; }
    t->dev_ = st.st_dev;
    t->ino_ = st.st_ino;
    t->mtime_ns_ = mtime_ns(st);
    return t;
}

Table::~Table() = default;

std::optional<std::string> Table::lookup(std::string_view key) const {
    if (key.empty() || key.size() > 511) return std::nullopt;  // LMDB's default key size limit
    MDB_txn* txn = nullptr;
    if (mdb_txn_begin(env_->env, nullptr, MDB_RDONLY, &txn) != 0) return std::nullopt;
    MDB_val k{key.size(), const_cast<char*>(key.data())}, v{};
    std::optional<std::string> out;
    if (mdb_get(txn, env_->dbi, &k, &v) == 0) out.emplace(static_cast<const char*>(v.mv_data), v.mv_size);
    mdb_txn_abort(txn);
    return out;
}

bool Table::entries(std::vector<std::pair<std::string, std::string>>& out, std::size_t max, std::string& err) const {
    out.clear();
    MDB_txn* txn = nullptr;
    MDB_cursor* cur = nullptr;
    int rc = mdb_txn_begin(env_->env, nullptr, MDB_RDONLY, &txn);
    if (rc == 0) rc = mdb_cursor_open(txn, env_->dbi, &cur);
    MDB_val k{}, v{};
    if (rc == 0) {
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (out.size() == max) break;
            out.emplace_back(std::string(static_cast<const char*>(k.mv_data), k.mv_size),
                             std::string(static_cast<const char*>(v.mv_data), v.mv_size));
        }
    }
    if (cur) mdb_cursor_close(cur);
    if (txn) mdb_txn_abort(txn);
    if (rc == 0) { err = path_ + ": more than " + std::to_string(max) + " entries"; return false; }
    if (rc != MDB_NOTFOUND) { err = lmdb_err(path_.c_str(), rc); return false; }
    return true;
}

bool Table::replaced() const {
    int fd = -1;
    struct stat st {};
    if (mdb_env_get_fd(env_->env, &fd) != 0 || fstat(fd, &st) != 0) return true;
    if (st.st_nlink == 0 || mtime_ns(st) != mtime_ns_) return true;
    if (stat(path_.c_str(), &st) != 0) return errno != ENOENT && errno != EACCES;  // chroot: name gone
    return st.st_dev != dev_ || st.st_ino != ino_;
}

bool write_table(const std::string& path, const Entries& entries, mode_t mode, std::string& err) {
    std::string tmp = path + ".tmp." + std::to_string(getpid());
    unlink(tmp.c_str());
    std::size_t bytes = 0;
    for (auto& [k, v] : entries) {
        if (k.empty() || k.size() > 511) { err = "key too long or empty: " + k.substr(0, 60); return false; }
        bytes += k.size() + v.size() + 64;
    }
    MDB_env* env = nullptr;
    int rc = mdb_env_create(&env);
    if (rc != 0) { err = lmdb_err("mdb_env_create", rc); return false; }
    std::unique_ptr<MDB_env, void (*)(MDB_env*)> guard(env, mdb_env_close);
    mdb_env_set_mapsize(env, (bytes * 4 + (16u << 20)) & ~std::size_t(4095));
    rc = mdb_env_open(env, tmp.c_str(), MDB_NOSUBDIR | MDB_NOLOCK, mode);
    MDB_txn* txn = nullptr;
    MDB_dbi dbi = 0;
    if (rc == 0) rc = mdb_txn_begin(env, nullptr, 0, &txn);
    if (rc == 0) rc = mdb_dbi_open(txn, nullptr, 0, &dbi);
    for (std::size_t i = 0; rc == 0 && i < entries.size(); i++) {
        MDB_val k{entries[i].first.size(), const_cast<char*>(entries[i].first.data())};
        MDB_val v{entries[i].second.size(), const_cast<char*>(entries[i].second.data())};
        rc = mdb_put(txn, dbi, &k, &v, 0);
    }
    if (rc == 0) {
        rc = mdb_txn_commit(txn);  // without NOSYNC flags the commit is synced to disk
        txn = nullptr;
    }
    if (txn) mdb_txn_abort(txn);
    if (rc == 0) rc = mdb_env_sync(env, 1);
    guard.reset();
    if (rc != 0) {
        err = tmp + ": " + mdb_strerror(rc);
        unlink(tmp.c_str());
        return false;
    }
    // mdb_env_open applies the umask; the table's mode is decided here.
    if (chmod(tmp.c_str(), mode) != 0 || rename(tmp.c_str(), path.c_str()) != 0) {
        err = path + ": " + strerror(errno);
        unlink(tmp.c_str());
        return false;
    }
    std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/') + 1);
    UniqueFd d(::open(dir.empty() ? "/" : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!d || fsync(d.get()) != 0) { err = dir + ": directory fsync failed"; return false; }
    return true;
}

std::optional<Kind> parse_kind(std::string_view s) {
    if (s == "auth") return Kind::auth;
    if (s == "aliases") return Kind::aliases;
    if (s == "virtual") return Kind::virtual_map;
    if (s == "recipients") return Kind::recipients;
    if (s == "transport") return Kind::transport;
    if (s == "tls_policy") return Kind::tls_policy;
    if (s == "dkim") return Kind::dkim;
    if (s == "destination_policy") return Kind::destination_policy;
    if (s == "source_addresses") return Kind::source_addresses;
    if (s == "sender_pools") return Kind::sender_pools;
    return std::nullopt;
}

bool looks_hashed(std::string_view s) {
    for (std::string_view p : {"$6$", "$5$", "$y$", "$gy$", "$2b$"})
        if (s.substr(0, p.size()) == p && s.size() > p.size() + 8) return true;
    return false;
}

bool parse_source(std::string_view text, Kind kind, Entries& out, std::vector<std::string>& errors,
                  std::string (*hash)(const std::string&), std::string_view origin) {
    std::size_t errs = errors.size();
    std::vector<std::string> keys;
    for (auto& logical : logical_lines(text, kind != Kind::auth, errors)) {
        const int lineno = logical.lineno;  // named copies: clang < 16 cannot capture structured bindings
        const std::string& line = logical.text;
        auto fail = [&](const std::string& m) { errors.push_back("line " + std::to_string(lineno) + ": " + m); };
        if (has_ctl(line)) { fail("control character in line"); continue; }
        std::string key, value;
        if (kind == Kind::auth || kind == Kind::aliases) {
            std::size_t colon = line.find(':');
            if (colon == std::string::npos) { fail("expected name:value"); continue; }
            key = trim(line.substr(0, colon));
            value = kind == Kind::auth ? line.substr(colon + 1) : trim(line.substr(colon + 1));
        } else {
            std::size_t sp = line.find_first_of(" \t");
            key = line.substr(0, sp);
            value = sp == std::string::npos ? "" : trim(line.substr(sp));
            if (kind == Kind::recipients && value.empty()) value = "ok";
        }
        if (key.empty() || key.size() > 255 || key.find_first_of(" \t") != std::string::npos) {
            fail("bad key");
            continue;
        }
        if (value.empty()) { fail("empty value"); continue; }
        if (kind == Kind::auth) {
            if (key.find(':') != std::string::npos) { fail("user names cannot contain ':'"); continue; }
            if (!looks_hashed(value)) {
                value = hash(value);
                if (value.empty()) { fail("hashing the password failed"); continue; }
            }
        } else if (kind == Kind::dkim) {
            if (!dkim_entry(key, value, std::string(origin), lineno, fail)) continue;
        } else {
            key = addr::lower(key);
            std::string why;
            if ((kind == Kind::transport || kind == Kind::tls_policy || kind == Kind::destination_policy ||
                 kind == Kind::source_addresses || kind == Kind::sender_pools) &&
                !check_domain_entry(kind, key, value, fail))
                continue;
            if ((kind == Kind::aliases || kind == Kind::virtual_map) && !alias::check_entry(kind == Kind::virtual_map, key, value, why)) {
                fail(why);
                continue;
            }
        }
        bool dup = false;
        for (auto& k : keys) dup = dup || k == key;
        if (dup) { fail("duplicate key \"" + key + "\""); continue; }
        keys.push_back(key);
        out.emplace_back(std::move(key), std::move(value));
    }
    return errors.size() == errs;
}

std::string hash_password(const std::string& password) {
    static const char kAlphabet[] = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != ssize_t(sizeof rnd)) return "";
    std::string setting = "$6$";
    for (unsigned char b : rnd) setting += kAlphabet[b % 64];
    auto data = std::make_unique<crypt_data>();
    const char* h = crypt_r(password.c_str(), setting.c_str(), data.get());
    if (!h || h[0] != '$') return "";
    return h;
}

bool verify_password(const std::string& password, const std::string& hash) {
    if (!looks_hashed(hash) || password.find('\0') != std::string::npos) return false;
    auto data = std::make_unique<crypt_data>();
    const char* h = crypt_r(password.c_str(), hash.c_str(), data.get());
    if (!h || h[0] != '$') return false;
    std::size_t n = strlen(h);
    if (n != hash.size()) return false;
    unsigned char diff = 0;
    for (std::size_t i = 0; i < n; i++) diff |= static_cast<unsigned char>(h[i] ^ hash[i]);
    return diff == 0;
}

}  // namespace mta::table
