// maildir_name: which local parts can be a Maildir directory name.
#include <doctest/doctest.h>

#include "common/mailbox_name.h"

TEST_CASE("maildir_name lower-cases ASCII and keeps UTF-8") {
    CHECK(mta::maildir_name("Alice").value() == "alice");
    CHECK(mta::maildir_name("j.doe+tag").value() == "j.doe+tag");
    CHECK(mta::maildir_name("\xc3\x9c" "ber").value() == "\xc3\x9c" "ber");  // "Über": only ASCII folds
}

TEST_CASE("maildir_name refuses names that are not one safe directory") {
    for (const char* bad : {"", ".", "..", ".hidden", "a/b", "a\\b", "a b", "tab\there", "del\x7f"})
        CHECK_FALSE(mta::maildir_name(bad));
    CHECK_FALSE(mta::maildir_name(std::string_view("nul\0x", 5)));
    CHECK_FALSE(mta::maildir_name("\xc3"));           // broken UTF-8
    CHECK_FALSE(mta::maildir_name(std::string(65, 'a')));
    CHECK(mta::maildir_name(std::string(64, 'a')));
}
