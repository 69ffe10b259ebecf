#include "hv/accel.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace hostvisor {
namespace {

namespace fs = std::filesystem;

constexpr const char* kIntelFlags =
    "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme de pse tsc msr pae vmx ssse3 x2apic\n\n";
constexpr const char* kAmdFlags = "processor\t: 0\nflags\t\t: fpu pae lm svm sse4a\n\n";
constexpr const char* kNoVirtFlags = "processor\t: 0\nflags\t\t: fpu pae lm hypervisor avx2 vmxnotreally\n\n";

// A fake host in a temporary directory: cpuinfo, sys/module, and a dev/kvm
// that is an ordinary file (opens read/write like the device would).
class FakeHost {
 public:
  FakeHost() {
    char pattern[] = "/tmp/hostvisor-accel-XXXXXX";
    root_ = ::mkdtemp(pattern);
    fs::create_directories(root_ / "sys/module/kvm");
    fs::create_directories(root_ / "dev");
  }
  ~FakeHost() { fs::remove_all(root_); }

  void cpuinfo(const std::string& text) { std::ofstream(root_ / "cpuinfo") << text; }
  void module(const std::string& name) { fs::create_directories(root_ / "sys/module" / name); }
  void dev_kvm() { std::ofstream(root_ / "dev/kvm") << ""; }

  HostVirtualization probe() const {
    return probe_host_virtualization((root_ / "cpuinfo").string(), (root_ / "sys/module").string(),
                                     (root_ / "dev/kvm").string());
  }

 private:
  fs::path root_;
};

TEST(ParseAccel, AcceptsTheThreeNames) {
  EXPECT_EQ(*parse_accel("auto"), Accel::kAuto);
  EXPECT_EQ(*parse_accel("kvm"), Accel::kKvm);
  EXPECT_EQ(*parse_accel("emu"), Accel::kEmu);
}

TEST(ParseAccel, RejectsOthersNamingTheAcceptedValues) {
  for (const char* bad : {"", "KVM", "hvf", "tcg", "kvm "}) {
    auto r = parse_accel(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message().find("auto"), std::string::npos);
    EXPECT_NE(r.error().message().find("kvm"), std::string::npos);
    EXPECT_NE(r.error().message().find("emu"), std::string::npos);
  }
}

TEST(ProbeHost, IntelWithKvmIntelAndDevice) {
  FakeHost host;
  host.cpuinfo(kIntelFlags);
  host.module("kvm_intel");
  host.dev_kvm();
  HostVirtualization h = host.probe();
  EXPECT_TRUE(h.cpu_has_vmx_or_svm);
  EXPECT_TRUE(h.hardware_kvm_module);
  EXPECT_FALSE(h.software_kvm_module);
  EXPECT_TRUE(h.dev_kvm_usable);

  auto choice = choose_accel(Accel::kAuto, h);
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->accel, Accel::kKvm);
  EXPECT_FALSE(choice->reason.empty());
}

TEST(ProbeHost, AmdWithKvmAmd) {
  FakeHost host;
  host.cpuinfo(kAmdFlags);
  host.module("kvm_amd");
  host.dev_kvm();
  HostVirtualization h = host.probe();
  EXPECT_TRUE(h.cpu_has_vmx_or_svm);
  EXPECT_TRUE(h.hardware_kvm_module);
  EXPECT_EQ(choose_accel(Accel::kAuto, h)->accel, Accel::kKvm);
}

TEST(ProbeHost, KvmPvmMeansSoftwareCpuForAuto) {
  FakeHost host;
  host.cpuinfo(kNoVirtFlags);
  host.module("kvm_pvm");
  host.dev_kvm();
  HostVirtualization h = host.probe();
  EXPECT_FALSE(h.cpu_has_vmx_or_svm);  // "vmxnotreally" is not "vmx"
  EXPECT_TRUE(h.software_kvm_module);
  EXPECT_EQ(h.software_kvm_module_name, "kvm_pvm");
  EXPECT_TRUE(h.dev_kvm_usable);

  auto choice = choose_accel(Accel::kAuto, h);
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->accel, Accel::kEmu);
  EXPECT_NE(choice->reason.find("kvm_pvm"), std::string::npos) << choice->reason;
  EXPECT_EQ(choice->reason.find('\n'), std::string::npos);
}

TEST(ProbeHost, KvmPvmWinsEvenWithVmxAndKvmIntel) {
  // A nested host can show vmx and kvm_intel while /dev/kvm belongs to kvm_pvm.
  FakeHost host;
  host.cpuinfo(kIntelFlags);
  host.module("kvm_intel");
  host.module("kvm_pvm");
  host.dev_kvm();
  auto choice = choose_accel(Accel::kAuto, host.probe());
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->accel, Accel::kEmu);
  EXPECT_NE(choice->reason.find("kvm_pvm"), std::string::npos);
}

TEST(ProbeHost, ExplicitKvmOnKvmPvmWorksButSaysItIsSlow) {
  FakeHost host;
  host.cpuinfo(kNoVirtFlags);
  host.module("kvm_pvm");
  host.dev_kvm();
  auto choice = choose_accel(Accel::kKvm, host.probe());
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->accel, Accel::kKvm);
  EXPECT_NE(choice->reason.find("kvm_pvm"), std::string::npos);
  EXPECT_NE(choice->reason.find("slow"), std::string::npos);
}

TEST(ProbeHost, NoVmxMeansEmu) {
  FakeHost host;
  host.cpuinfo(kNoVirtFlags);
  HostVirtualization h = host.probe();
  EXPECT_FALSE(h.cpu_has_vmx_or_svm);
  EXPECT_FALSE(h.hardware_kvm_module);
  EXPECT_FALSE(h.dev_kvm_usable);
  auto choice = choose_accel(Accel::kAuto, h);
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->accel, Accel::kEmu);
  EXPECT_NE(choice->reason.find("vmx"), std::string::npos) << choice->reason;
}

TEST(ProbeHost, VmxWithoutModuleMeansEmu) {
  FakeHost host;
  host.cpuinfo(kIntelFlags);
  host.dev_kvm();
  auto choice = choose_accel(Accel::kAuto, host.probe());
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->accel, Accel::kEmu);
  EXPECT_NE(choice->reason.find("kvm_intel"), std::string::npos) << choice->reason;
}

TEST(ProbeHost, VmxAndModuleWithoutDeviceMeansEmu) {
  FakeHost host;
  host.cpuinfo(kIntelFlags);
  host.module("kvm_intel");
  HostVirtualization h = host.probe();
  EXPECT_FALSE(h.dev_kvm_usable);
  EXPECT_NE(h.dev_kvm_problem.find("does not exist"), std::string::npos) << h.dev_kvm_problem;
  auto choice = choose_accel(Accel::kAuto, h);
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->accel, Accel::kEmu);
}

TEST(ProbeHost, ExplicitKvmWithoutDeviceIsAnError) {
  FakeHost host;
  host.cpuinfo(kIntelFlags);
  host.module("kvm_intel");
  auto choice = choose_accel(Accel::kKvm, host.probe());
  ASSERT_FALSE(choice.ok());
  EXPECT_EQ(choice.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(choice.error().message().find("--accel emu"), std::string::npos) << choice.error().message();
}

TEST(ProbeHost, MissingCpuinfoIsNoVirtualization) {
  HostVirtualization h = probe_host_virtualization("/nonexistent/cpuinfo", "/nonexistent/module", "/nonexistent/kvm");
  EXPECT_FALSE(h.cpu_has_vmx_or_svm);
  EXPECT_FALSE(h.hardware_kvm_module);
  EXPECT_FALSE(h.software_kvm_module);
  EXPECT_FALSE(h.dev_kvm_usable);
  EXPECT_EQ(choose_accel(Accel::kAuto, h)->accel, Accel::kEmu);
}

TEST(ChooseAccel, ExplicitEmuIsAlwaysEmu) {
  HostVirtualization everything{true, true, false, true, "", ""};
  auto choice = choose_accel(Accel::kEmu, everything);
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->accel, Accel::kEmu);
}

TEST(ChooseAccel, PermissionProblemReachesTheError) {
  HostVirtualization h;
  h.cpu_has_vmx_or_svm = true;
  h.hardware_kvm_module = true;
  h.dev_kvm_problem = "/dev/kvm: permission denied — add yourself to the kvm group";
  auto choice = choose_accel(Accel::kKvm, h);
  ASSERT_FALSE(choice.ok());
  EXPECT_NE(choice.error().message().find("kvm group"), std::string::npos);
}

TEST(CreateHypervisor, AutoMustBeResolvedFirst) {
  auto hv = create_hypervisor(Accel::kAuto);
  ASSERT_FALSE(hv.ok());
  EXPECT_EQ(hv.error().code(), ErrorCode::kInternal);
}

TEST(CreateHypervisor, KvmWhereTheDeviceWorks) {
  HostVirtualization real = probe_host_virtualization();
  if (!real.dev_kvm_usable) GTEST_SKIP() << "SKIPPED: /dev/kvm is not usable here (" << real.dev_kvm_problem << ")";
  auto hv = create_hypervisor(Accel::kKvm);
  ASSERT_TRUE(hv.ok()) << hv.error().message();
  EXPECT_STREQ((*hv)->name(), "kvm");
}

}  // namespace
}  // namespace hostvisor
