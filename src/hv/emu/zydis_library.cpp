#include "hv/emu/zydis_library.h"

#include <Zydis/Zydis.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace hostvisor::emu {

namespace {

// The soname of the Zydis hostvisor is built against (Debian: libzydis4.0).
constexpr const char* kSoname = "libZydis.so.4.0";

struct ZydisEntryPoints {
  decltype(&::ZydisDecoderInit) decoder_init = nullptr;
  decltype(&::ZydisDecoderDecodeFull) decoder_decode_full = nullptr;
  decltype(&::ZydisDecoderDecodeInstruction) decoder_decode_instruction = nullptr;  // the jit's length decode
  decltype(&::ZydisRegisterGetClass) register_get_class = nullptr;
  decltype(&::ZydisMnemonicGetString) mnemonic_get_string = nullptr;  // the jit's statistics
};

template <typename Fn>
void resolve(void* handle, const char* name, Fn& out, std::string& missing) {
  out = reinterpret_cast<Fn>(::dlsym(handle, name));
  if (!out) missing += missing.empty() ? name : std::string(", ") + name;
}

Result<ZydisEntryPoints> open_zydis() {
  void* handle = ::dlopen(kSoname, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = ::dlerror();
    return Error(ErrorCode::kUnsupported, std::string("the software CPU needs ") + kSoname +
                                              " (Debian package libzydis4.0): " + (why ? why : "dlopen failed"));
  }
  ZydisEntryPoints zydis;
  std::string missing;
  resolve(handle, "ZydisDecoderInit", zydis.decoder_init, missing);
  resolve(handle, "ZydisDecoderDecodeFull", zydis.decoder_decode_full, missing);
  resolve(handle, "ZydisDecoderDecodeInstruction", zydis.decoder_decode_instruction, missing);
  resolve(handle, "ZydisRegisterGetClass", zydis.register_get_class, missing);
  resolve(handle, "ZydisMnemonicGetString", zydis.mnemonic_get_string, missing);
  if (!missing.empty()) {
    ::dlclose(handle);
    return Error(ErrorCode::kUnsupported, std::string("the software CPU: ") + kSoname + " lacks " + missing);
  }
  return zydis;  // the handle stays open for the life of the process
}

const Result<ZydisEntryPoints>& loaded() {
  static const Result<ZydisEntryPoints> zydis = open_zydis();  // a static's first use is thread-safe
  return zydis;
}

// For the entry points below, which cannot return our errors: reached
// without load_zydis() having succeeded only by code that builds a decoder
// directly (the emulator's tests), so a missing library ends the process
// with the reason rather than decoding nothing.
const ZydisEntryPoints& zydis() {
  const Result<ZydisEntryPoints>& z = loaded();
  if (!z.ok()) {
    std::fprintf(stderr, "hostvisor: %s\n", z.error().message().c_str());
    std::abort();
  }
  return z.value();
}

}  // namespace

Result<void> load_zydis() {
  if (!loaded().ok()) return loaded().error();
  return ok();
}

}  // namespace hostvisor::emu

extern "C" {

ZyanStatus ZydisDecoderInit(ZydisDecoder* decoder, ZydisMachineMode machine_mode, ZydisStackWidth stack_width) {
  return hostvisor::emu::zydis().decoder_init(decoder, machine_mode, stack_width);
}

ZyanStatus ZydisDecoderDecodeFull(const ZydisDecoder* decoder, const void* buffer, ZyanUSize length,
                                  ZydisDecodedInstruction* instruction,
                                  ZydisDecodedOperand operands[ZYDIS_MAX_OPERAND_COUNT]) {
  return hostvisor::emu::zydis().decoder_decode_full(decoder, buffer, length, instruction, operands);
}

ZyanStatus ZydisDecoderDecodeInstruction(const ZydisDecoder* decoder, ZydisDecoderContext* context, const void* buffer,
                                         ZyanUSize length, ZydisDecodedInstruction* instruction) {
  return hostvisor::emu::zydis().decoder_decode_instruction(decoder, context, buffer, length, instruction);
}

ZydisRegisterClass ZydisRegisterGetClass(ZydisRegister reg) { return hostvisor::emu::zydis().register_get_class(reg); }

const char* ZydisMnemonicGetString(ZydisMnemonic mnemonic) {
  return hostvisor::emu::zydis().mnemonic_get_string(mnemonic);
}

}  // extern "C"
