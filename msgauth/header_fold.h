// Builds a header field folded between tokens so lines stay under 78 columns where the tokens allow
// (RFC 5322 §2.1.1). Shared by the DKIM-Signature, Authentication-Results and Received-SPF writers.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace mta::msgauth {

class HeaderFolder {
public:
    static constexpr std::size_t kWidth = 78;

    explicit HeaderFolder(std::string start) : text_(std::move(start)), line_(text_.size()) {}

    // Appends `token`, after a space when `space_before`, or on a new continuation line if it would
    // not fit (never leaving a line empty).
    void add(std::string_view token, bool space_before = true) {
        std::size_t need = token.size() + (space_before ? 1 : 0);
        if (line_ + need > kWidth && line_ > 1) {
            newline();
        } else if (space_before) {
            text_.push_back(' ');
            line_++;
        }
        text_.append(token);
        line_ += token.size();
    }
    void newline() {
        text_.append("\r\n\t");
        line_ = 1;
    }
    std::size_t column() const { return line_; }
    std::string& text() { return text_; }

private:
    std::string text_;
    std::size_t line_;
};

}  // namespace mta::msgauth
