#include "guest/default_guest/module_info.h"

#include <elf.h>

#include <cstring>

namespace hostvisor::guest {

Result<std::vector<std::string>> module_depends(const std::string& ko) {
  auto bad = [](const std::string& why) { return Error(ErrorCode::kCorrupt, "kernel module: " + why); };
  if (ko.size() < sizeof(Elf64_Ehdr) || std::memcmp(ko.data(), ELFMAG, SELFMAG) != 0 || ko[EI_CLASS] != ELFCLASS64)
    return bad("not an ELF64 file");
  Elf64_Ehdr eh;
  std::memcpy(&eh, ko.data(), sizeof eh);
  if (eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shstrndx >= eh.e_shnum) return bad("bad section headers");
  const uint64_t table_size = static_cast<uint64_t>(eh.e_shnum) * sizeof(Elf64_Shdr);
  if (eh.e_shoff > ko.size() || table_size > ko.size() - eh.e_shoff) return bad("section table outside the file");
  auto section = [&](unsigned i) {
    Elf64_Shdr sh;
    std::memcpy(&sh, ko.data() + eh.e_shoff + static_cast<uint64_t>(i) * sizeof(Elf64_Shdr), sizeof sh);
    return sh;
  };
  auto within = [&](const Elf64_Shdr& sh) {
    return sh.sh_offset <= ko.size() && sh.sh_size <= ko.size() - sh.sh_offset;
  };
  const Elf64_Shdr names = section(eh.e_shstrndx);
  if (!within(names)) return bad("section names outside the file");
  for (unsigned i = 0; i < eh.e_shnum; ++i) {
    const Elf64_Shdr sh = section(i);
    if (sh.sh_name >= names.sh_size) continue;
    const char* name = ko.data() + names.sh_offset + sh.sh_name;
    const size_t max_name = names.sh_size - sh.sh_name;
    if (strnlen(name, max_name) == max_name || std::strcmp(name, ".modinfo") != 0) continue;
    if (!within(sh)) return bad(".modinfo outside the file");
    // .modinfo is a sequence of NUL-terminated "key=value" strings.
    std::string_view info(ko.data() + sh.sh_offset, sh.sh_size);
    std::vector<std::string> depends;
    size_t pos = 0;
    while (pos < info.size()) {
      size_t end = info.find('\0', pos);
      if (end == std::string_view::npos) end = info.size();
      std::string_view entry = info.substr(pos, end - pos);
      if (entry.substr(0, 8) == "depends=") {
        std::string_view list = entry.substr(8);
        while (!list.empty()) {
          size_t comma = list.find(',');
          std::string_view dep = list.substr(0, comma);
          if (!dep.empty()) depends.emplace_back(dep);
          if (comma == std::string_view::npos) break;
          list.remove_prefix(comma + 1);
        }
      }
      pos = end + 1;
    }
    return depends;
  }
  return bad("no .modinfo section");
}

}  // namespace hostvisor::guest
