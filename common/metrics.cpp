// The metrics catalogue, a role's registry, and mtad's sum and rendering (see metrics.h).
#include "common/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/json.h"
#include "common/log.h"

namespace mta::metrics {

namespace {

constexpr double kLatency[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
constexpr double kDelay[] = {0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400};
constexpr double kDns[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
constexpr double kBatch[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};

constexpr Family kFamilies[] = {
    {"mta_build_info", Kind::gauge, "Always 1; the label says which release runs."},
    {"mta_processes", Kind::gauge, "Processes of each role that are running."},
    {"mta_process_restarts_total", Kind::counter, "Restarts of a role's processes since mtad started."},
    {"mta_smtpd_sessions_total", Kind::counter, "SMTP sessions accepted, by listener."},
    {"mta_smtpd_sessions_active", Kind::gauge, "SMTP sessions open now."},
    {"mta_smtpd_tls_sessions_total", Kind::counter, "Inbound TLS handshakes that succeeded, by listener and protocol version."},
    {"mta_smtpd_auth_failures_total", Kind::counter, "Failed SMTP AUTH attempts, by mechanism."},
    {"mta_smtpd_rejects_total", Kind::counter,
     "Negative SMTP replies sent, by stage, reply class and enhanced status class."},
    {"mta_smtpd_final_dot_seconds", Kind::histogram,
     "Time from the end of DATA (or the last BDAT) to the reply, commit included.", kLatency, 1e6},
    {"mta_messages_received_total", Kind::counter, "Messages committed to the queue, by origin."},
    {"mta_queue_commit_batch_size", Kind::histogram, "Commits made durable by one group-commit sync.", kBatch, 1},
    {"mta_queue_messages", Kind::gauge, "Messages in the queue."},
    {"mta_queue_recipients", Kind::gauge,
     "Recipients in the queue: active (in memory for delivery), deferred (waiting for a retry), held. "
     "Deferred and held come from a walk over the queue at most every 30 s."},
    {"mta_queue_oldest_message_age_seconds", Kind::gauge, "Age of the oldest message in the queue (0 when empty)."},
    {"mta_destination_in_flight", Kind::gauge,
     "Deliveries in flight, for the busiest destinations; the rest add up under destination=\"other\"."},
    {"mta_destination_deferred_recipients", Kind::gauge,
     "Recipients waiting for a retry, for the busiest destinations; the rest add up under destination=\"other\" "
     "(from the same walk as mta_queue_recipients)."},
    {"mta_deliveries_total", Kind::counter, "Recipient delivery attempts, by transport and result."},
    {"mta_delivery_delay_seconds", Kind::histogram, "Time from queueing to delivery, per delivered recipient.", kDelay, 1e6},
    {"mta_smtp_sessions_total", Kind::counter, "Outbound sessions that reached a server's greeting, by transport."},
    {"mta_smtp_tls_sessions_total", Kind::counter, "Outbound TLS handshakes that succeeded, by protocol version."},
    {"mta_dns_queries_total", Kind::counter, "DNS lookups answered by mta-resolver, by type and result."},
    {"mta_dns_query_seconds", Kind::histogram, "Time mta-resolver took to answer a lookup.", kDns, 1e6},
    {"mta_metrics_scrapes_total", Kind::counter, "HTTP requests mta-metrics answered, by result."},
};

constexpr std::size_t kMaxLabelValue = 128;
constexpr std::size_t kMaxLabels = 8;

std::string format_bound(double b) {
    char buf[32];
    snprintf(buf, sizeof buf, "%g", b);
    return buf;
}

// "le" for a bucket index, the last one being +Inf.
std::string bucket_label(const Family& f, std::size_t i) {
    return i < f.buckets.size() ? format_bound(f.buckets[i]) : "+Inf";
}

bool name_char(char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

// Splits k="v",k="v" into pairs; false on anything else (the format labels() writes, nothing more).
bool parse_labels(std::string_view s, std::vector<std::pair<std::string, std::string>>& out) {
    out.clear();
    std::size_t i = 0;
    while (i < s.size()) {
        std::size_t k = i;
        while (i < s.size() && name_char(s[i], i == k)) i++;
        if (i == k || i - k > 64 || i + 1 >= s.size() || s[i] != '=' || s[i + 1] != '"') return false;
        std::string key(s.substr(k, i - k));
        i += 2;
        std::size_t v = i;
        while (i < s.size() && s[i] != '"') {
            unsigned char c = s[i];
            if (c < 0x20 || c == 0x7f || c == '\\') return false;
            i++;
        }
        if (i >= s.size() || i - v > kMaxLabelValue) return false;
        for (auto& [seen, _] : out)
            if (seen == key) return false;
        out.emplace_back(std::move(key), std::string(s.substr(v, i - v)));
        i++;
        if (out.size() > kMaxLabels) return false;
        if (i < s.size()) {
            if (s[i] != ',' || i + 1 == s.size()) return false;
            i++;
        }
    }
    return true;
}

std::string join_labels(const std::vector<std::pair<std::string, std::string>>& kv) {
    std::string out;
    for (auto& [k, v] : kv) out += (out.empty() ? "" : ",") + k + "=\"" + v + "\"";
    return out;
}

// What a sample is: its family, which part of a histogram, and (buckets) the index of its le.
enum class Part { value, bucket, sum, count };
struct Parsed {
    std::size_t family = 0;
    Part part = Part::value;
    std::size_t bucket = 0;
    std::string labels;  // without le
};

bool parse_sample(const Sample& s, Parsed& p, std::string& err) {
    const Family* f = find_family(s.name);
    p.part = Part::value;
    if (!f) {
        for (auto [suffix, part] : {std::pair{std::string_view("_bucket"), Part::bucket}, std::pair{std::string_view("_sum"), Part::sum},
                                    std::pair{std::string_view("_count"), Part::count}}) {
            std::string_view n(s.name);
            if (n.size() > suffix.size() && n.substr(n.size() - suffix.size()) == suffix) {
                const Family* base = find_family(n.substr(0, n.size() - suffix.size()));
                if (base && base->kind == Kind::histogram) { f = base; p.part = part; }
            }
        }
    } else if (f->kind == Kind::histogram) {
        f = nullptr;  // a histogram is reported only by its parts
    }
    if (!f) { err = "unknown metric \"" + log::safe(s.name) + "\""; return false; }
    p.family = std::size_t(f - kFamilies);
    std::vector<std::pair<std::string, std::string>> kv;
    if (!parse_labels(s.labels, kv)) { err = "malformed labels of " + s.name; return false; }
    if (p.part == Part::bucket) {
        if (kv.empty() || kv.back().first != "le") { err = s.name + " without le"; return false; }
        std::string le = kv.back().second;
        kv.pop_back();
        std::size_t i = 0;
        while (i <= f->buckets.size() && bucket_label(*f, i) != le) i++;
        if (i > f->buckets.size()) { err = s.name + ": no bucket le=\"" + log::safe(le) + "\""; return false; }
        p.bucket = i;
    }
    for (auto& [k, v] : kv)
        if (k == "le") { err = s.name + ": le out of place"; return false; }
    p.labels = join_labels(kv);
    return true;
}

const char* kind_name(Kind k) {
    switch (k) {
    case Kind::counter: return "counter";
    case Kind::gauge: return "gauge";
    case Kind::histogram: return "histogram";
    }
    return "untyped";
}

std::string format_scaled(uint64_t v, double scale) {
    if (scale == 1) return std::to_string(v);
    char buf[64];
    snprintf(buf, sizeof buf, "%.6f", double(v) / scale);
    return buf;
}

std::string braces(const std::string& labels) { return labels.empty() ? "" : "{" + labels + "}"; }

// A bucket's label set: le goes last.
std::string plus_le(const std::string& labels, const std::string& le) {
    return labels + (labels.empty() ? "" : ",") + "le=\"" + le + "\"";
}

// A registry's family by name, if it is of a kind the caller may touch; a programming error otherwise.
const Family* family_for(std::string_view name, bool histogram, bool gauge_only) {
    const Family* f = find_family(name);
    if (f && (f->kind == Kind::histogram) == histogram && (!gauge_only || f->kind == Kind::gauge)) return f;
    LOG_ERROR("event=metrics_unknown family=%s", log::safe(name).c_str());
    return nullptr;
}

}  // namespace

std::span<const Family> catalogue() { return kFamilies; }

const Family* find_family(std::string_view name) {
    for (auto& f : kFamilies)
        if (f.name == name) return &f;
    return nullptr;
}

std::string labels(std::initializer_list<std::pair<std::string_view, std::string_view>> kv) {
    std::string out;
    for (auto& [k, v] : kv) {
        if (!out.empty()) out += ',';
        out.append(k).append("=\"");
        std::size_t n = 0;
        for (unsigned char c : v) {
            if (++n > kMaxLabelValue) break;
            out += (c < 0x20 || c == 0x7f || c == '"' || c == '\\') ? '_' : char(c);
        }
        out += '"';
    }
    return out;
}

void Registry::add(std::string_view family, std::string_view labels, uint64_t n) {
    if (const Family* f = family_for(family, false, false)) values_[Key(f, std::string(labels))] += n;
}

void Registry::set(std::string_view family, std::string_view labels, uint64_t v) {
    if (const Family* f = family_for(family, false, true)) values_[Key(f, std::string(labels))] = v;
}

void Registry::observe(std::string_view family, std::string_view labels, double v) {
    const Family* f = family_for(family, true, false);
    if (!f) return;
    auto& h = histograms_[Key(f, std::string(labels))];
    if (h.counts.empty()) h.counts.assign(f->buckets.size() + 1, 0);
    if (!(v >= 0)) v = 0;  // also NaN
    std::size_t i = std::lower_bound(f->buckets.begin(), f->buckets.end(), v) - f->buckets.begin();
    h.counts[i]++;
    h.count++;
    h.sum += uint64_t(std::llround(std::min(v * f->scale, 1e18)));
}

void Registry::set_top(std::string_view family, std::string_view label, const std::map<std::string, uint64_t>& values,
                       std::size_t n) {
    std::vector<std::pair<uint64_t, const std::string*>> order;
    for (auto& [k, v] : values) order.emplace_back(v, &k);
    std::sort(order.begin(), order.end(), [](auto& a, auto& b) { return a.first != b.first ? a.first > b.first : *a.second < *b.second; });
    uint64_t other = 0;
    bool any_other = false;
    for (std::size_t i = 0; i < order.size(); i++) {
        if (i < n && *order[i].second != "other") {
            set(family, labels({{label, *order[i].second}}), order[i].first);
        } else {
            other += order[i].first;
            any_other = true;
        }
    }
    if (any_other) set(family, labels({{label, "other"}}), other);
}

std::vector<Sample> Registry::collect() {
    for (auto it = values_.begin(); it != values_.end();)
        it = it->first.first->kind == Kind::gauge ? values_.erase(it) : std::next(it);
    for (auto& fn : collectors_) fn(*this);
    std::vector<Sample> out;
    for (auto& [key, v] : values_) out.push_back({std::string(key.first->name), key.second, v});
    for (auto& [key, h] : histograms_) {
        std::string name(key.first->name);
        uint64_t cum = 0;
        for (std::size_t i = 0; i < h.counts.size(); i++) {
            cum += h.counts[i];
            out.push_back({name + "_bucket", plus_le(key.second, bucket_label(*key.first, i)), cum});
        }
        out.push_back({name + "_sum", key.second, h.sum});
        out.push_back({name + "_count", key.second, h.count});
    }
    return out;
}

Registry& registry() {
    static Registry r;
    return r;
}

bool valid_sample(const Sample& s, std::string& err) {
    Parsed p;
    return parse_sample(s, p, err);
}

bool Aggregate::add(const std::vector<Sample>& samples, std::string& err) {
    std::vector<Parsed> parsed(samples.size());
    for (std::size_t i = 0; i < samples.size(); i++)
        if (!parse_sample(samples[i], parsed[i], err)) return false;
    for (std::size_t i = 0; i < samples.size(); i++) {
        const Parsed& p = parsed[i];
        Series& s = families_[p.family][p.labels];
        uint64_t v = samples[i].value;
        switch (p.part) {
        case Part::value: s.value += v; break;
        case Part::bucket:
            if (s.buckets.empty()) s.buckets.assign(kFamilies[p.family].buckets.size() + 1, 0);
            s.buckets[p.bucket] += v;
            break;
        case Part::sum: s.sum += v; break;
        case Part::count: s.count += v; break;
        }
    }
    return true;
}

template <class F>
void Aggregate::each(F&& fn) const {
    for (std::size_t i = 0; i < std::size(kFamilies); i++) {
        auto it = families_.find(i);
        static const std::map<std::string, Series> none;
        fn(kFamilies[i], it == families_.end() ? none : it->second);
    }
}

// One family's sample lines, as the exposition format writes them.
void Aggregate::render(const Family& f, const std::map<std::string, Series>& series, std::string& out) {
    std::string name(f.name);
    for (auto& [labels, s] : series) {
        if (f.kind != Kind::histogram) {
            out += name + braces(labels) + " " + std::to_string(s.value) + "\n";
            continue;
        }
        for (std::size_t b = 0; b <= f.buckets.size(); b++)
            out += name + "_bucket{" + plus_le(labels, bucket_label(f, b)) + "} " +
                   std::to_string(b < s.buckets.size() ? s.buckets[b] : 0) + "\n";
        out += name + "_sum" + braces(labels) + " " + format_scaled(s.sum, f.scale) + "\n";
        out += name + "_count" + braces(labels) + " " + std::to_string(s.count) + "\n";
    }
}

std::string Aggregate::text() const {
    std::string out;
    each([&](const Family& f, const std::map<std::string, Series>& series) { render(f, series, out); });
    return out;
}

std::string Aggregate::prometheus() const {
    // HELP and TYPE go before each family's samples.
    std::string out;
    each([&](const Family& f, const std::map<std::string, Series>& series) {
        out += "# HELP " + std::string(f.name) + " " + std::string(f.help) + "\n";
        out += "# TYPE " + std::string(f.name) + " " + kind_name(f.kind) + "\n";
        render(f, series, out);
    });
    return out;
}

std::string Aggregate::json() const {
    std::string out = "{\"metrics\":[";
    bool first_family = true;
    each([&](const Family& f, const std::map<std::string, Series>& series) {
        out += first_family ? "" : ",";
        first_family = false;
        out += "{\"name\":" + json_string(f.name) + ",\"type\":\"" + kind_name(f.kind) +
               "\",\"help\":" + json_string(f.help) + ",\"samples\":[";
        bool first = true;
        for (auto& [labels, s] : series) {
            std::vector<std::pair<std::string, std::string>> kv;
            parse_labels(labels, kv);
            out += first ? "{\"labels\":{" : ",{\"labels\":{";
            first = false;
            for (std::size_t i = 0; i < kv.size(); i++)
                out += (i ? "," : "") + json_string(kv[i].first) + ":" + json_string(kv[i].second);
            out += "}";
            if (f.kind != Kind::histogram) {
                out += ",\"value\":" + std::to_string(s.value) + "}";
                continue;
            }
            out += ",\"buckets\":{";
            for (std::size_t b = 0; b <= f.buckets.size(); b++)
                out += (b ? "," : "") + json_string(bucket_label(f, b)) + ":" +
                       std::to_string(b < s.buckets.size() ? s.buckets[b] : 0);
            out += "},\"sum\":" + format_scaled(s.sum, f.scale) + ",\"count\":" + std::to_string(s.count) + "}";
        }
        out += "]}";
    });
    return out + "]}\n";
}

}  // namespace mta::metrics
