// Runs a libFuzzer target's LLVMFuzzerTestOneInput once on every file of the directories given,
// so the default (gcc) build replays each seed corpus as a ctest; a finding crashes or traps.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  size_t inputs = 0;
  for (int i = 1; i < argc; ++i) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(argv[i], ec)) {
      if (!entry.is_regular_file()) continue;
      std::ifstream in(entry.path(), std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      ++inputs;
    }
    if (ec) {
      std::cerr << argv[i] << ": " << ec.message() << std::endl;
      return 1;
    }
  }
  std::cout << "ran " << inputs << " inputs" << std::endl;
  return inputs > 0 ? 0 : 1;  // an empty corpus tests nothing
}
