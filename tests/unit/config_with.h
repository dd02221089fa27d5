// Unit-test helper: a Config parsed from text that the test says is valid (fails the test otherwise).
#pragma once
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/config.h"

namespace mta::test {

inline Config config_with(const std::string& text) {
    Config c;
    std::vector<ConfigError> errors;
    REQUIRE(parse_config(text, "t", c, errors));
    return c;
}

}  // namespace mta::test
