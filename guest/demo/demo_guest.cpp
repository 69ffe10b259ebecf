#include "guest/demo/demo_guest.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "base/fd.h"

extern "C" const unsigned char hostvisor_demo_kernel_start[];
extern "C" const unsigned char hostvisor_demo_kernel_end[];

namespace hostvisor::guest {

Result<std::string> install_demo_kernel(const std::string& cache_dir) {
  const std::string image(reinterpret_cast<const char*>(hostvisor_demo_kernel_start),
                          static_cast<size_t>(hostvisor_demo_kernel_end - hostvisor_demo_kernel_start));
  std::error_code ec;
  std::filesystem::create_directories(cache_dir, ec);
  if (ec) return Error(ErrorCode::kIo, "creating " + cache_dir + ": " + ec.message());
  const std::string path = cache_dir + "/demo.pvh";
  if (auto existing = read_file(path); existing.ok() && *existing == image) return path;
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  {
    UniqueFd fd = HV_TRY(open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    if (::write(fd.get(), image.data(), image.size()) != static_cast<ssize_t>(image.size()))
      return Error::from_errno("writing " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) return Error::from_errno("renaming " + tmp);
  return path;
}

}  // namespace hostvisor::guest
