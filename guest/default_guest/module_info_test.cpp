#include "guest/default_guest/module_info.h"

#include <elf.h>
#include <gtest/gtest.h>

#include <cstring>

namespace hostvisor::guest {
namespace {

// A minimal ELF64 relocatable with a section-name table and .modinfo.
std::string make_module(const std::string& modinfo) {
  const std::string names = std::string("\0.shstrtab\0.modinfo\0", 20);
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_type = ET_REL;
  eh.e_machine = EM_X86_64;
  eh.e_shentsize = sizeof(Elf64_Shdr);
  eh.e_shnum = 3;
  eh.e_shstrndx = 1;
  const uint64_t names_off = sizeof eh, info_off = names_off + names.size();
  eh.e_shoff = info_off + modinfo.size();
  Elf64_Shdr sh[3]{};
  sh[1].sh_name = 1;
  sh[1].sh_type = SHT_STRTAB;
  sh[1].sh_offset = names_off;
  sh[1].sh_size = names.size();
  sh[2].sh_name = 11;
  sh[2].sh_type = SHT_PROGBITS;
  sh[2].sh_offset = info_off;
  sh[2].sh_size = modinfo.size();
  std::string out(reinterpret_cast<const char*>(&eh), sizeof eh);
  out += names + modinfo;
  out.append(reinterpret_cast<const char*>(sh), sizeof sh);
  return out;
}

TEST(ModuleInfo, ReadsTheDependsList) {
  const std::string info = std::string("license=GPL\0depends=virtio,virtio_ring\0name=virtio_blk\0", 53);
  auto deps = module_depends(make_module(info));
  ASSERT_TRUE(deps.ok()) << deps.error().message();
  EXPECT_EQ(*deps, (std::vector<std::string>{"virtio", "virtio_ring"}));
}

TEST(ModuleInfo, EmptyDependsMeansNone) {
  auto deps = module_depends(make_module(std::string("depends=\0", 9)));
  ASSERT_TRUE(deps.ok());
  EXPECT_TRUE(deps->empty());
}

TEST(ModuleInfo, RejectsBrokenFiles) {
  EXPECT_FALSE(module_depends("").ok());
  EXPECT_FALSE(module_depends("not an elf file at all, just text........................................").ok());
  std::string m = make_module(std::string("depends=a\0", 10));
  std::string truncated = m.substr(0, m.size() - 10);  // section table cut off
  EXPECT_FALSE(module_depends(truncated).ok());
  std::string bad_offset = m;
  Elf64_Ehdr eh;
  std::memcpy(&eh, bad_offset.data(), sizeof eh);
  eh.e_shoff = ~0ull - 8;
  std::memcpy(bad_offset.data(), &eh, sizeof eh);
  EXPECT_FALSE(module_depends(bad_offset).ok());
}

}  // namespace
}  // namespace hostvisor::guest
