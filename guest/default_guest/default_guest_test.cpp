// Builds the real default guest from Debian's packages (apt-get download)
// into a temporary cache, as `hostvisor run` does on first use.
#include "guest/default_guest/default_guest.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "base/process.h"

namespace hostvisor::guest {
namespace {

TEST(DefaultGuest, BuildsFromDebianPackagesAndIsReusedAfterwards) {
  auto cache = std::filesystem::temp_directory_path() / ("hv-default-guest-" + std::to_string(::getpid()));
  DefaultGuestOptions options;
  options.cache_dir = cache.string();
  std::vector<std::string> progress;
  options.progress = [&](const std::string& line) { progress.push_back(line); };
  auto guest = prepare_default_guest(options);
  ASSERT_TRUE(guest.ok()) << guest.error().message();
  EXPECT_FALSE(progress.empty());
  EXPECT_NE(guest->kernel_release.find("cloud-amd64"), std::string::npos) << guest->kernel_release;
  EXPECT_NE(guest->cmdline.find("console=ttyS0"), std::string::npos);

  // The kernel is a bzImage ("HdrS" at 0x202).
  auto kernel =
      run_process_checked({"sh", "-c", "dd if='" + guest->kernel_path + "' bs=1 skip=514 count=4 2>/dev/null"});
  ASSERT_TRUE(kernel.ok());
  EXPECT_EQ(*kernel, "HdrS");

  // The initramfs holds init, busybox and the virtio modules, dependencies first.
  auto listing = run_process_checked({"sh", "-c", "cpio -it --quiet < '" + guest->initrd_path + "'"});
  ASSERT_TRUE(listing.ok()) << listing.error().message();
  for (const char* f :
       {"init", "etc/inittab", "bin/busybox", "dev/console", "lib/modules/virtio_pci.ko", "lib/modules/virtio_mmio.ko",
        "lib/modules/virtio_blk.ko", "lib/modules/virtio_net.ko", "lib/modules/virtio_console.ko",
        "lib/modules/virtio-rng.ko", "lib/modules/virtio.ko", "lib/modules/virtio_ring.ko", "lib/modules/failover.ko"})
    EXPECT_NE(listing->find(std::string(f) + "\n"), std::string::npos) << f << " missing from\n" << *listing;
  auto order = run_process_checked(
      {"sh", "-c", "cd '" + cache.string() + "' && cpio -i --quiet --to-stdout etc/hostvisor-modules < initrd.img"});
  ASSERT_TRUE(order.ok());
  EXPECT_LT(order->find("virtio.ko\n"), order->find("virtio_pci.ko\n")) << *order;
  EXPECT_LT(order->find("virtio_ring.ko\n"), order->find("virtio_blk.ko\n")) << *order;
  EXPECT_LT(order->find("net_failover.ko\n"), order->find("virtio_net.ko\n")) << *order;

  // A second call reuses the cache without downloading.
  const auto stamp = std::filesystem::last_write_time(guest->initrd_path);
  progress.clear();
  auto again = prepare_default_guest(options);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(progress.empty());
  EXPECT_EQ(std::filesystem::last_write_time(again->initrd_path), stamp);
  std::filesystem::remove_all(cache);
}

TEST(DefaultGuest, InitLoadsModulesThenHandsOverToBusyboxInit) {
  const std::string init = default_guest_init_script();
  EXPECT_EQ(init.rfind("#!/bin/sh", 0), 0u);
  EXPECT_NE(init.find("/etc/hostvisor-modules"), std::string::npos);
  EXPECT_NE(init.find("exec /bin/busybox init"), std::string::npos);
  EXPECT_NE(default_guest_inittab().find("respawn:-/bin/cttyhack /bin/sh"), std::string::npos);
  // The console is reopened after the modules, so hvc0 (virtio_console) is
  // there when busybox init and its shell take it over.
  EXPECT_LT(init.find("/etc/hostvisor-modules"), init.find("exec <>/dev/console"));
  EXPECT_LT(init.find("exec <>/dev/console"), init.find("exec /bin/busybox init"));
}

TEST(DefaultGuest, CommandLinePutsTheConsoleOnTheChosenDevice) {
  EXPECT_EQ(default_guest_cmdline("ttyS0"), "console=ttyS0 panic=-1");
  const std::string hvc = default_guest_cmdline("hvc0");
  EXPECT_NE(hvc.find("console=hvc0"), std::string::npos) << hvc;
  EXPECT_EQ(hvc.find("console=ttyS0"), std::string::npos) << "two consoles would print every message twice: " << hvc;
  EXPECT_NE(hvc.find("earlyprintk=ttyS0"), std::string::npos) << hvc;
}

TEST(DefaultGuest, MissingPackageGivesAClearError) {
  auto cache = std::filesystem::temp_directory_path() / ("hv-default-guest-bad-" + std::to_string(::getpid()));
  DefaultGuestOptions options;
  options.cache_dir = cache.string();
  options.kernel_package = "hostvisor-no-such-package";
  auto guest = prepare_default_guest(options);
  ASSERT_FALSE(guest.ok());
  EXPECT_NE(guest.error().message().find("hostvisor-no-such-package"), std::string::npos);
  EXPECT_NE(guest.error().message().find("apt-get update"), std::string::npos);
  std::filesystem::remove_all(cache);
}

}  // namespace
}  // namespace hostvisor::guest
