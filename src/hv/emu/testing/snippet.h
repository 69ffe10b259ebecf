// Guest code for the emulator's tests, written as assembly in the test
// source: the host assembler encodes it into the test binary's read-only
// data and the test copies the bytes into guest memory. Nothing is executed
// on the host. Intel syntax; `.code16` / `.code32` switch the encoding.
#pragma once

#include <cstdint>
#include <span>

#define HV_EMU_SNIPPET(name, text)                                                             \
  asm(".pushsection .rodata.hv_emu_snippets,\"a\"\n"                                           \
      ".intel_syntax noprefix\n"                                                               \
      ".globl hv_emu_snippet_" #name                                                           \
      "_begin\n"                                                                               \
      ".globl hv_emu_snippet_" #name                                                           \
      "_end\n"                                                                                 \
      "hv_emu_snippet_" #name "_begin:\n" text "\nhv_emu_snippet_" #name                       \
      "_end:\n"                                                                                \
      ".code64\n"                                                                              \
      ".att_syntax prefix\n"                                                                   \
      ".popsection\n");                                                                        \
  extern "C" const uint8_t hv_emu_snippet_##name##_begin[], hv_emu_snippet_##name##_end[];     \
  inline std::span<const uint8_t> name() {                                                     \
    return {hv_emu_snippet_##name##_begin,                                                     \
            static_cast<size_t>(hv_emu_snippet_##name##_end - hv_emu_snippet_##name##_begin)}; \
  }
