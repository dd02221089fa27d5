// Whole small files (certificates, keys, trust anchors) read into memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mta {

// The whole of `path` into `out`; false when it cannot be opened or read, or holds more than
// `max_bytes` bytes (then `out` is unspecified).
bool read_file(const std::string& path, std::string& out, std::size_t max_bytes = SIZE_MAX);

}  // namespace mta
