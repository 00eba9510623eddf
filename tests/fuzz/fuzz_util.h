// Helpers shared by the libFuzzer targets in tests/fuzz.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Seed generation: every target that takes serialized protobuf messages can
// write its own seeds (valid messages built with the same generated code):
//   PARLEY_FUZZ_WRITE_SEEDS=tests/fuzz/corpus/<target> ./build-fuzz/tests/fuzz/<target>
// LLVMFuzzerInitialize writes them and exits (see WriteSeedsIfAsked).
#ifndef PARLEY_TESTS_FUZZ_FUZZ_UTIL_H_
#define PARLEY_TESTS_FUZZ_FUZZ_UTIL_H_

#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>

namespace parley::fuzz {

// Aborts (a crash libFuzzer records) when a documented invariant fails.
inline void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

// A fresh private directory for this process (removed at a normal exit; a
// crash leaves it behind). Made in $PARLEY_FUZZ_TMPDIR (scripts/fuzz.sh
// points it at a directory it removes), else /dev/shm (no disk I/O), else
// $TMPDIR or /tmp.
inline const std::string& ProcessTempDir() {
  static const std::string* const dir = [] {
    std::string base = "/tmp";
    if (const char* t = std::getenv("TMPDIR"); t != nullptr && *t != '\0') base = t;
    if (std::filesystem::is_directory("/dev/shm")) base = "/dev/shm";
    if (const char* t = std::getenv("PARLEY_FUZZ_TMPDIR"); t != nullptr && *t != '\0') base = t;
    std::string tmpl = base + "/parley_fuzz_XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    auto* d = new std::string(tmpl);
    std::atexit([] { std::error_code ec; std::filesystem::remove_all(*dir, ec); });
    return d;
  }();
  return *dir;
}

// One seed: `selector` byte followed by `payload`.
inline void WriteSeed(const std::string& dir, const std::string& name, uint8_t selector,
                      std::string_view payload) {
  std::filesystem::create_directories(dir);
  std::ofstream out(dir + "/" + name, std::ios::binary | std::ios::trunc);
  out.put(static_cast<char>(selector));
  out.write(payload.data(), static_cast<std::streamsize>(payload.size()));
  if (!out) {
    std::fprintf(stderr, "cannot write seed %s/%s\n", dir.c_str(), name.c_str());
    std::exit(1);
  }
}

// When PARLEY_FUZZ_WRITE_SEEDS names a directory: calls write(dir) and exits.
inline void WriteSeedsIfAsked(const std::function<void(const std::string&)>& write) {
  const char* dir = std::getenv("PARLEY_FUZZ_WRITE_SEEDS");
  if (dir == nullptr || *dir == '\0') return;
  write(dir);
  std::fprintf(stderr, "seeds written to %s\n", dir);
  std::exit(0);
}

}  // namespace parley::fuzz

#endif  // PARLEY_TESTS_FUZZ_FUZZ_UTIL_H_
