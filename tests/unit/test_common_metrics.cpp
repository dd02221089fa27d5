// Metrics: label sets, a role's registry, mtad's checked sum and its three renderings, the wire form.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>

#include "common/metrics.h"
#include "common/wire/wire.h"

using namespace mta;
using metrics::Sample;

namespace {

uint64_t value_of(const std::vector<Sample>& v, const std::string& name, const std::string& labels) {
    for (auto& s : v)
        if (s.name == name && s.labels == labels) return s.value;
    return UINT64_MAX;
}

bool has_line(const std::string& text, const std::string& line) {
    return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

}  // namespace

TEST_CASE("metrics: label values are made safe, never escaped") {
    CHECK(metrics::labels({{"a", "x"}, {"b", "y z"}}) == "a=\"x\",b=\"y z\"");
    CHECK(metrics::labels({{"a", "q\"b\\c\nd"}}) == "a=\"q_b_c_d\"");
    CHECK(metrics::labels({{"a", std::string(300, 'x')}}).size() == 3 + 128 + 1);
    CHECK(metrics::labels({}).empty());
}

TEST_CASE("metrics: every catalogue family has a unique mta_ name, help, and ordered buckets") {
    std::set<std::string_view> names;
    for (auto& f : metrics::catalogue()) {
        CHECK(f.name.substr(0, 4) == "mta_");
        CHECK(names.insert(f.name).second);
        CHECK(!f.help.empty());
        CHECK((f.kind == metrics::Kind::counter) == (f.name.size() > 6 && f.name.substr(f.name.size() - 6) == "_total"));
        if (f.kind == metrics::Kind::histogram) {
            CHECK(!f.buckets.empty());
            CHECK(std::is_sorted(f.buckets.begin(), f.buckets.end()));
        }
    }
}

TEST_CASE("metrics: a registry counts, recomputes gauges and keeps cumulative histogram buckets") {
    metrics::Registry r;
    int collected = 0;
    r.on_collect([&](metrics::Registry& reg) { reg.set("mta_queue_messages", "", uint64_t(++collected * 10)); });
    r.add("mta_smtpd_sessions_total", metrics::labels({{"listener", "smtp"}}));
    r.add("mta_smtpd_sessions_total", metrics::labels({{"listener", "smtp"}}), 2);
    r.observe("mta_smtpd_final_dot_seconds", "", 0.003);   // bucket 0.005
    r.observe("mta_smtpd_final_dot_seconds", "", 0.004);
    r.observe("mta_smtpd_final_dot_seconds", "", 99);      // +Inf only
    r.add("mta_no_such_thing");                            // dropped, logged
    r.observe("mta_smtpd_sessions_total", "", 1);          // not a histogram: dropped
    auto s = r.collect();
    CHECK(value_of(s, "mta_smtpd_sessions_total", "listener=\"smtp\"") == 3);
    CHECK(value_of(s, "mta_queue_messages", "") == 10);
    CHECK(value_of(s, "mta_smtpd_final_dot_seconds_bucket", "le=\"0.0025\"") == 0);
    CHECK(value_of(s, "mta_smtpd_final_dot_seconds_bucket", "le=\"0.005\"") == 2);
    CHECK(value_of(s, "mta_smtpd_final_dot_seconds_bucket", "le=\"30\"") == 2);
    CHECK(value_of(s, "mta_smtpd_final_dot_seconds_bucket", "le=\"+Inf\"") == 3);
    CHECK(value_of(s, "mta_smtpd_final_dot_seconds_count", "") == 3);
    CHECK(value_of(s, "mta_smtpd_final_dot_seconds_sum", "") == 99007000);  // microseconds
    CHECK(value_of(s, "mta_no_such_thing", "") == UINT64_MAX);
    s = r.collect();
    CHECK(value_of(s, "mta_queue_messages", "") == 20);
    std::string err;
    metrics::Aggregate agg;
    CHECK(agg.add(s, err));  // what a registry reports always passes mtad's checks
}

TEST_CASE("metrics: set_top keeps the largest and sums the rest as other") {
    metrics::Registry r;
    r.on_collect([](metrics::Registry& reg) {
        reg.set_top("mta_destination_in_flight", "destination", {{"a", 5}, {"b", 1}, {"c", 7}, {"d", 2}}, 2);
    });
    auto s = r.collect();
    CHECK(value_of(s, "mta_destination_in_flight", "destination=\"c\"") == 7);
    CHECK(value_of(s, "mta_destination_in_flight", "destination=\"a\"") == 5);
    CHECK(value_of(s, "mta_destination_in_flight", "destination=\"other\"") == 3);
    CHECK(value_of(s, "mta_destination_in_flight", "destination=\"b\"") == UINT64_MAX);
}

TEST_CASE("metrics: mtad refuses what a role has no business sending") {
    std::string err;
    auto bad = [&](Sample s) {
        metrics::Aggregate agg;
        return !agg.add({s}, err) && !metrics::valid_sample(s, err);
    };
    CHECK(bad({"mta_unknown_total", "", 1}));
    CHECK(bad({"process_cpu_seconds_total", "", 1}));
    CHECK(bad({"mta_smtpd_final_dot_seconds", "", 1}));            // a histogram only by its parts
    CHECK(bad({"mta_smtpd_sessions_total_bucket", "le=\"1\"", 1}));  // not a histogram
    CHECK(bad({"mta_smtpd_sessions_total", "listener=smtp", 1}));     // unquoted
    CHECK(bad({"mta_smtpd_sessions_total", "listener=\"a\\\"b\"", 1}));  // escapes are not written by labels()
    CHECK(bad({"mta_smtpd_sessions_total", "listener=\"a\nb\"", 1}));
    CHECK(bad({"mta_smtpd_sessions_total", "a=\"1\",a=\"2\"", 1}));   // repeated key
    CHECK(bad({"mta_smtpd_sessions_total", "a=\"1\",", 1}));
    CHECK(bad({"mta_smtpd_sessions_total", "1a=\"1\"", 1}));
    CHECK(bad({"mta_smtpd_sessions_total", "le=\"1\"", 1}));          // le belongs to buckets
    CHECK(bad({"mta_smtpd_final_dot_seconds_bucket", "", 1}));        // bucket without le
    CHECK(bad({"mta_smtpd_final_dot_seconds_bucket", "le=\"0.3\"", 1}));  // not one of its bounds
    CHECK(bad({"mta_smtpd_final_dot_seconds_bucket", "le=\"+Inf\",x=\"1\"", 1}));  // le not last
    CHECK(bad({"mta_smtpd_sessions_total", "k=\"" + std::string(129, 'v') + "\"", 1}));
    // One bad sample spoils the whole reply: nothing of it is added.
    metrics::Aggregate agg;
    CHECK(!agg.add({{"mta_smtpd_sessions_total", "", 5}, {"mta_bogus", "", 1}}, err));
    CHECK(agg.text().empty());
}

TEST_CASE("metrics: the sum over roles renders as exposition text, sample lines and JSON") {
    metrics::Aggregate agg;
    std::string err;
    std::vector<Sample> a = {{"mta_smtpd_sessions_total", "listener=\"smtp\"", 2},
                             {"mta_dns_query_seconds_bucket", "le=\"0.001\"", 1},
                             {"mta_dns_query_seconds_bucket", "le=\"+Inf\"", 2},
                             {"mta_dns_query_seconds_sum", "", 1500000},
                             {"mta_dns_query_seconds_count", "", 2}};
    std::vector<Sample> b = {{"mta_smtpd_sessions_total", "listener=\"smtp\"", 3},
                             {"mta_smtpd_sessions_total", "listener=\"submission\"", 1},
                             {"mta_dns_query_seconds_bucket", "le=\"+Inf\"", 1},
                             {"mta_dns_query_seconds_count", "", 1}};
    REQUIRE(agg.add(a, err));
    REQUIRE(agg.add(b, err));
    std::string prom = agg.prometheus();
    CHECK(has_line(prom, "# TYPE mta_smtpd_sessions_total counter"));
    CHECK(has_line(prom, "mta_smtpd_sessions_total{listener=\"smtp\"} 5"));
    CHECK(has_line(prom, "mta_smtpd_sessions_total{listener=\"submission\"} 1"));
    CHECK(has_line(prom, "# TYPE mta_dns_query_seconds histogram"));
    CHECK(has_line(prom, "mta_dns_query_seconds_bucket{le=\"0.0005\"} 0"));
    CHECK(has_line(prom, "mta_dns_query_seconds_bucket{le=\"0.001\"} 1"));
    CHECK(has_line(prom, "mta_dns_query_seconds_bucket{le=\"+Inf\"} 3"));
    CHECK(has_line(prom, "mta_dns_query_seconds_sum 1.500000"));
    CHECK(has_line(prom, "mta_dns_query_seconds_count 3"));
    // Buckets in bound order, +Inf last, then sum and count.
    CHECK(prom.find("le=\"0.0005\"") < prom.find("le=\"0.001\""));
    CHECK(prom.find("le=\"5\"") < prom.find("le=\"+Inf\""));
    CHECK(prom.find("le=\"+Inf\"") < prom.find("mta_dns_query_seconds_sum"));
    // Every family is announced, with or without samples.
    for (auto& f : metrics::catalogue()) CHECK(prom.find("# HELP " + std::string(f.name) + " ") != std::string::npos);
    std::string text = agg.text();
    CHECK(text.find('#') == std::string::npos);
    CHECK(has_line(text, "mta_smtpd_sessions_total{listener=\"smtp\"} 5"));
    std::string json = agg.json();
    CHECK(json.find("{\"name\":\"mta_smtpd_sessions_total\",\"type\":\"counter\"") != std::string::npos);
    CHECK(json.find("{\"labels\":{\"listener\":\"smtp\"},\"value\":5}") != std::string::npos);
    CHECK(json.find("\"buckets\":{\"0.0005\":0,\"0.001\":1,") != std::string::npos);
    CHECK(json.find("\"+Inf\":3},\"sum\":1.500000,\"count\":3}") != std::string::npos);
}

TEST_CASE("metrics: stats_reply carries samples; the decoder bounds them") {
    wire::StatsReply r{{{"mta_queue_messages", "", 7}, {"mta_smtpd_sessions_total", "listener=\"smtp\"", 1}}};
    ipc::Message m = wire::encode(r, 9);
    wire::StatsReply back;
    std::string err;
    REQUIRE(wire::decode(m, back, err));
    REQUIRE(back.samples.size() == 2);
    CHECK(back.samples[1].labels == "listener=\"smtp\"");
    CHECK(back.samples[0].value == 7);
    wire::StatsReply empty;
    REQUIRE(wire::decode(wire::encode(empty, 1), back, err));
    CHECK(back.samples.empty());
    ipc::Message no_value(ipc::Type::stats_reply, 1);
    no_value.add(ipc::Tag::metric_name, "mta_queue_messages").add(ipc::Tag::metric_labels, "");
    CHECK(!wire::decode(no_value, back, err));
    wire::StatsRequest req;
    CHECK(wire::decode(wire::encode(wire::StatsRequest{}, 3), req, err));
}
