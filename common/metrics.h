// Metrics: the one catalogue of what the MTA counts (name, type, help, histogram buckets), the counters a
// role keeps (Registry), and the sum over all roles that mtad renders for mta-metrics (Prometheus text
// exposition format) and for `mtactl stats` (text and JSON).
//
// How numbers travel: mtad sends stats_request to every role; each answers with its samples
// (name, label set, integer value). mtad checks every sample against this catalogue, adds them up
// (a sample from a role is as untrusted as any other message from it), adds its own (restarts,
// processes) and renders. Root never parses HTTP: mta-metrics, unprivileged and chrooted, does.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mta::metrics {

enum class Kind : uint8_t { counter, gauge, histogram };

struct Family {
    std::string_view name;
    Kind kind;
    std::string_view help;
    std::span<const double> buckets = {};  // histograms: upper bounds, ascending; +Inf is implied
    // Histogram sums travel as integers: the observed value times `scale` (1e6 for seconds: microseconds).
    double scale = 1;
};

std::span<const Family> catalogue();
const Family* find_family(std::string_view name);

// A label set as the exposition format writes it: k1="v1",k2="v2". Values are made safe (no quote,
// backslash, control byte; at most 128 octets) rather than escaped, so the text needs no parser state.
std::string labels(std::initializer_list<std::pair<std::string_view, std::string_view>> kv);

// One sample as a role reports it. Histograms report name_bucket (label le last), name_sum, name_count.
struct Sample {
    std::string name;
    std::string labels;
    uint64_t value = 0;
};

// The counters of this process (roles are single-threaded). Families not in the catalogue are a
// programming error and are dropped with one log line.
class Registry {
public:
    void add(std::string_view family, std::string_view labels = {}, uint64_t n = 1);
    void set(std::string_view family, std::string_view labels, uint64_t v);  // gauges
    void observe(std::string_view family, std::string_view labels, double v);  // histograms
    // Gauges are recomputed for every collection: they are cleared, then every collector runs.
    void on_collect(std::function<void(Registry&)> fn) { collectors_.push_back(std::move(fn)); }
    std::vector<Sample> collect();
    // A gauge per key for the `n` largest values, under label `label`; the rest add up under "other".
    void set_top(std::string_view family, std::string_view label, const std::map<std::string, uint64_t>& values,
                 std::size_t n);

private:
    struct Histogram {
        std::vector<uint64_t> counts;  // per bucket, not cumulative; the last is +Inf
        uint64_t sum = 0, count = 0;
    };
    using Key = std::pair<const Family*, std::string>;
    std::map<Key, uint64_t> values_;
    std::map<Key, Histogram> histograms_;
    std::vector<std::function<void(Registry&)>> collectors_;
};

// The process's registry.
Registry& registry();

// The sum over every role, as mtad keeps it for one collection.
class Aggregate {
public:
    // Adds a role's samples. False (err) on a sample the catalogue does not know, a malformed label set,
    // or a bucket that is not the family's; nothing of that reply is kept then.
    bool add(const std::vector<Sample>& samples, std::string& err);
    // Prometheus text exposition format (version 0.0.4), with HELP and TYPE for every family.
    std::string prometheus() const;
    // The sample lines alone (mtactl stats).
    std::string text() const;
    // {"metrics":[{"name","type","help","samples":[...]}]} (mtactl stats --json).
    std::string json() const;

private:
    struct Series {
        uint64_t value = 0;
        std::vector<uint64_t> buckets;  // cumulative, as reported; the last is +Inf
        uint64_t sum = 0, count = 0;
    };
    // family index -> label set (without le) -> series
    std::map<std::size_t, std::map<std::string, Series>> families_;
    template <class F>
    void each(F&& fn) const;
    static void render(const Family& f, const std::map<std::string, Series>& series, std::string& out);
};

// Checks a sample without adding it (the same rules as Aggregate::add); for tests and the fuzz target.
bool valid_sample(const Sample& s, std::string& err);

}  // namespace mta::metrics
