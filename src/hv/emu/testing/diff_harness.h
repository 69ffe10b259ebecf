// The shared half of the differential tests (emu_diff_test, fpu_diff_test):
// one instruction snippet runs natively from an executable host page and on
// the software CPU in a TestMachine, with source and destination buffers at
// fixed guest addresses; each test compares the state it cares about.
#pragma once

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "hv/emu/testing/test_machine.h"

namespace hostvisor::emu::testing {

// Guest addresses of the buffers the instructions under test may address
// (RSI and RDI point into them; natively they point at host arrays).
constexpr uint64_t kDiffGuestSrc = 0x100000, kDiffGuestDst = 0x101000;

class DiffHarness {
 public:
  // Copies `code` + RET to an executable host page and `code` + HLT to the
  // machine's code address.
  explicit DiffHarness(std::span<const uint8_t> code) {
    page_ = static_cast<uint8_t*>(
        mmap(nullptr, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (page_ != MAP_FAILED && code.size() < 4096) {
      std::memcpy(page_, code.data(), code.size());
      page_[code.size()] = 0xc3;  // ret
    }
    std::vector<uint8_t> emu_code(code.begin(), code.end());
    emu_code.push_back(0xf4);  // hlt
    machine_.load_code(emu_code);
  }
  ~DiffHarness() {
    if (page_ != MAP_FAILED) munmap(page_, 4096);
  }
  DiffHarness(const DiffHarness&) = delete;
  DiffHarness& operator=(const DiffHarness&) = delete;

  // False when the executable host page could not be mapped.
  bool ok() const { return page_ != MAP_FAILED; }
  const void* native_code() const { return page_; }
  TestMachine& machine() { return machine_; }
  Cpu& cpu() { return machine_.cpu(); }

  // Runs the emulated side from the start of the snippet to its HLT; fails
  // when it stopped for another reason or raised an exception.
  ::testing::AssertionResult run_emulated(const char* name) {
    Cpu& cpu = machine_.cpu();
    cpu.rip = TestMachine::kCode;
    const Interpreter::Outcome outcome = machine_.run();
    if (outcome.stop != Interpreter::Stop::kHalt) {
      return ::testing::AssertionFailure() << name << " did not reach its HLT: " << outcome.detail;
    }
    if (machine_.vector_taken() != -1) {
      return ::testing::AssertionFailure()
             << name << " raised exception " << machine_.vector_taken() << " on the software CPU";
    }
    return ::testing::AssertionSuccess();
  }

 private:
  uint8_t* page_;
  TestMachine machine_;
};

}  // namespace hostvisor::emu::testing
