// log_format = json: a key=value line as JSON members; anything else as "msg".
#include <doctest/doctest.h>

#include "common/log.h"

using namespace mta;

TEST_CASE("log: key=value pairs become JSON members, quoted values keep their spaces") {
    CHECK(log::kv_to_json_members("event=delivered qid=0000000000000001 to=<a@b> reply=\"250 2.0.0 ok\"") ==
          "\"event\":\"delivered\",\"qid\":\"0000000000000001\",\"to\":\"<a@b>\",\"reply\":\"250 2.0.0 ok\"");
    // log::safe's escapes stay text; a backslash is escaped for JSON.
    CHECK(log::kv_to_json_members("event=x reason=\"bad \\x22quote\\x22\"") ==
          "\"event\":\"x\",\"reason\":\"bad \\\\x22quote\\\\x22\"");
    CHECK(log::kv_to_json_members("event=x empty=\"\" last=1") == "\"event\":\"x\",\"empty\":\"\",\"last\":\"1\"");
    CHECK(log::kv_to_json_members("") == "");
}

TEST_CASE("log: text that is not key=value pairs is one msg member") {
    CHECK(log::kv_to_json_members("hello world") == "\"msg\":\"hello world\"");
    CHECK(log::kv_to_json_members("event=x reason=\"unterminated") == "\"msg\":\"event=x reason=\\\"unterminated\"");
    CHECK(log::kv_to_json_members("Bad=key") == "\"msg\":\"Bad=key\"");
}
