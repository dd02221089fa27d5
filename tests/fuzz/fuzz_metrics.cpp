// libFuzzer target over mtad's side of the metrics: the samples a role reports (as untrusted as any of
// its messages) are checked and summed by metrics::Aggregate, then rendered. Input: lines of
// "name<TAB>labels<TAB>value". Whatever is accepted must render into lines of the exposition format:
// a comment, or name{labels} value with no control byte, every label value quoted and unescaped.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/metrics.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta;

namespace {

void check_line(std::string_view l) {
    for (unsigned char c : l) require(c >= 0x20 && c != 0x7f);
    if (l.substr(0, 7) == "# HELP " || l.substr(0, 7) == "# TYPE ") return;
    require(l.substr(0, 4) == "mta_");
    std::size_t brace = l.find('{'), sp = l.rfind(' ');
    require(sp != std::string_view::npos && sp + 1 < l.size());
    if (brace != std::string_view::npos && brace < sp) {
        std::size_t close = l.rfind('}', sp);
        require(close != std::string_view::npos && close + 1 == sp);
        std::string_view labels = l.substr(brace + 1, close - brace - 1);
        bool quoted = false;
        for (char c : labels) {
            require(c != '\\');
            if (c == '"') quoted = !quoted;
        }
        require(!quoted);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    std::vector<metrics::Sample> samples;
    while (!in.empty() && samples.size() < 64) {
        std::size_t nl = in.find('\n');
        std::string_view line = in.substr(0, nl);
        in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
        std::size_t t1 = line.find('\t'), t2 = t1 == std::string_view::npos ? t1 : line.find('\t', t1 + 1);
        if (t2 == std::string_view::npos) continue;
        metrics::Sample s{std::string(line.substr(0, t1)), std::string(line.substr(t1 + 1, t2 - t1 - 1)), 0};
        for (char c : line.substr(t2 + 1)) s.value = s.value * 10 + uint64_t(c & 0x0f);
        samples.push_back(std::move(s));
    }
    metrics::Aggregate agg;
    std::string err;
    bool ok = agg.add(samples, err);
    bool each = true;
    for (auto& s : samples) each = each && metrics::valid_sample(s, err);
    require(ok == each);
    if (!ok) return 0;
    std::string text = agg.prometheus();
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t nl = text.find('\n', start);
        require(nl != std::string::npos);
        check_line(std::string_view(text).substr(start, nl - start));
        start = nl + 1;
    }
    (void)agg.json();
    return 0;
}
