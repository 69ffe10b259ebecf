// Runs tiny guest programs on a real /dev/kvm. The machine code is written
// out byte by byte with its assembly beside it. Each program ends with an
// OUT to kMarkerPort rather than HLT: with the in-kernel irqchip, HLT blocks
// in the kernel until an interrupt arrives.
#include "hv/kvm/kvm_vcpu.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "base/state_codec.h"
#include "hv/kvm/kvm_hypervisor.h"
#include "hv/kvm/kvm_vm.h"
#include "hv/testing/real_mode.h"

namespace hostvisor::kvm {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kRamSize = 0x80000;  // 512 KiB at 0; everything above is MMIO
constexpr uint64_t kCodeAddress = 0x1000;
constexpr uint16_t kMarkerPort = 0xf4;
constexpr auto kWatchdogTimeout = 20s;

// Kicks the vCPU if a run() takes longer than it may, so a broken guest
// program fails its test instead of hanging it.
class Watchdog {
 public:
  explicit Watchdog(Vcpu& vcpu)
      : thread_([this, &vcpu] {
          std::unique_lock lock(mutex_);
          if (!cv_.wait_for(lock, kWatchdogTimeout, [this] { return done_; })) {
            fired_ = true;
            vcpu.kick();
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  bool fired() {
    std::lock_guard lock(mutex_);
    return fired_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  bool fired_ = false;
  std::thread thread_;
};

class KvmVcpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/kvm", R_OK | W_OK) != 0) {
      GTEST_SKIP() << "SKIPPED: /dev/kvm is missing or not accessible on this host; the KVM backend was NOT tested";
    }
    auto hv = KvmHypervisor::open();
    ASSERT_TRUE(hv.ok()) << hv.error().message();
    hv_ = std::move(*hv);
    auto vm = hv_->create_vm(VmConfig{1});
    ASSERT_TRUE(vm.ok()) << vm.error().message();
    vm_.reset(static_cast<KvmVm*>(vm->release()));
    auto memory = GuestMemory::create({{GuestAddress(0), kRamSize}});
    ASSERT_TRUE(memory.ok()) << memory.error().message();
    memory_ = std::move(*memory);
    auto mapped = vm_->map_memory(memory_);
    ASSERT_TRUE(mapped.ok()) << mapped.error().message();
    auto vcpu = vm_->create_vcpu(0);
    ASSERT_TRUE(vcpu.ok()) << vcpu.error().message();
    vcpu_.reset(static_cast<KvmVcpu*>(vcpu->release()));
  }

  void load(uint64_t address, const std::vector<uint8_t>& bytes) {
    ASSERT_TRUE(memory_.write(GuestAddress(address), bytes).ok());
  }

  // Real mode, CS = DS = 0, IP = kCodeAddress.
  void start_real_mode(const std::vector<uint8_t>& code) {
    load(kCodeAddress, code);
    ASSERT_TRUE(testing::enter_real_mode(*vcpu_, kCodeAddress).ok());
  }

  // 64-bit long mode with the first GiB identity-mapped by 2 MiB pages.
  SystemRegisters long_mode_registers() {
    constexpr uint64_t kPml4 = 0x10000, kPdpt = 0x11000, kPd = 0x12000;
    EXPECT_TRUE(memory_.write_obj<uint64_t>(GuestAddress(kPml4), kPdpt | 0x3).ok());
    EXPECT_TRUE(memory_.write_obj<uint64_t>(GuestAddress(kPdpt), kPd | 0x3).ok());
    for (uint64_t i = 0; i < 512; ++i) {
      EXPECT_TRUE(memory_.write_obj<uint64_t>(GuestAddress(kPd + 8 * i), (i << 21) | 0x83).ok());  // P|RW|PS
    }
    // GDT: null, 64-bit code (0x08), data (0x10).
    const uint64_t gdt[] = {0, 0x00af9b000000ffffull, 0x00cf93000000ffffull};
    EXPECT_TRUE(memory_.write(GuestAddress(0x500), std::span(reinterpret_cast<const uint8_t*>(gdt), sizeof gdt)).ok());

    SystemRegisters s = reset_system_registers();
    s.cr0 = x86::kCr0Pe | x86::kCr0Mp | x86::kCr0Et | x86::kCr0Ne | x86::kCr0Wp | x86::kCr0Pg;
    s.cr3 = kPml4;
    s.cr4 = x86::kCr4Pae;
    s.efer = x86::kEferLme | x86::kEferLma;
    s.gdt = {0x500, sizeof gdt - 1};
    s.idt = {0, 0};
    Segment code;
    code.base = 0, code.limit = 0xffffffff, code.selector = 0x08, code.type = 0xb;
    code.s = true, code.present = true, code.l = true, code.g = true;
    Segment data;
    data.base = 0, data.limit = 0xffffffff, data.selector = 0x10, data.type = 0x3;
    data.s = true, data.present = true, data.db = true, data.g = true;
    s.cs = code;
    s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.tr.base = 0, s.tr.limit = 0x67, s.tr.selector = 0, s.tr.type = 0xb, s.tr.s = false, s.tr.present = true;
    s.ldt.base = 0, s.ldt.limit = 0, s.ldt.selector = 0, s.ldt.type = 0x2, s.ldt.s = false, s.ldt.present = true;
    return s;
  }

  void start_long_mode(const std::vector<uint8_t>& code) {
    load(kCodeAddress, code);
    auto set = vcpu_->set_system_registers(long_mode_registers());
    ASSERT_TRUE(set.ok()) << set.error().message();
    Registers regs;
    regs.rip = kCodeAddress;
    regs.rsp = 0x8000;
    ASSERT_TRUE(vcpu_->set_registers(regs).ok());
  }

  VcpuExit run() {
    Watchdog watchdog(*vcpu_);
    auto exit = vcpu_->run();
    EXPECT_FALSE(watchdog.fired()) << "the guest ran for " << kWatchdogTimeout.count() << " s without exiting";
    EXPECT_TRUE(exit.ok()) << exit.error().message();
    if (!exit.ok()) return FailureExit{exit.error().message()};
    return std::move(*exit);
  }

  static std::string describe(const VcpuExit& exit) {
    if (auto* io = std::get_if<PortIoExit>(&exit)) return "port I/O on " + std::to_string(io->port);
    if (auto* mmio = std::get_if<MmioExit>(&exit)) return "MMIO at " + std::to_string(mmio->address);
    if (std::holds_alternative<HaltExit>(exit)) return "halt";
    if (std::holds_alternative<SystemEventExit>(exit)) return "system event";
    if (std::holds_alternative<InterruptedExit>(exit)) return "interrupted";
    return "failure: " + std::get<FailureExit>(exit).detail;
  }

  // Runs to the next port I/O exit, which must be on `port`.
  PortIoExit run_to_port(uint16_t port) {
    VcpuExit exit = run();
    auto* io = std::get_if<PortIoExit>(&exit);
    EXPECT_NE(io, nullptr) << "expected port I/O on " << port << ", got " << describe(exit);
    if (io == nullptr) return PortIoExit{};
    EXPECT_EQ(io->port, port);
    return *io;
  }

  MmioExit run_to_mmio() {
    VcpuExit exit = run();
    auto* mmio = std::get_if<MmioExit>(&exit);
    EXPECT_NE(mmio, nullptr) << "expected MMIO, got " << describe(exit);
    return mmio ? *mmio : MmioExit{};
  }

  Registers registers() {
    auto regs = vcpu_->get_registers();
    EXPECT_TRUE(regs.ok());
    return regs.ok() ? *regs : Registers{};
  }

  static std::vector<uint8_t> bytes(std::span<const uint8_t> data) { return {data.begin(), data.end()}; }

  std::unique_ptr<KvmHypervisor> hv_;
  std::unique_ptr<KvmVm> vm_;
  GuestMemory memory_;
  std::unique_ptr<KvmVcpu> vcpu_;
};

TEST_F(KvmVcpuTest, OutReportsPortSizeAndData) {
  // clang-format off
  start_real_mode({
      0xb0, 0x42,                          // mov al, 0x42
      0xe6, 0x10,                          // out 0x10, al
      0xba, 0xf8, 0x03,                    // mov dx, 0x3f8
      0xb8, 0x34, 0x12,                    // mov ax, 0x1234
      0xef,                                // out dx, ax
      0x66, 0xb8, 0xef, 0xbe, 0xad, 0xde,  // mov eax, 0xdeadbeef
      0x66, 0xef,                          // out dx, eax
      0xe6, kMarkerPort,                   // out marker, al
      0xeb, 0xfe,                          // jmp $
  });
  // clang-format on
  PortIoExit out8 = run_to_port(0x10);
  EXPECT_TRUE(out8.is_write);
  EXPECT_EQ(out8.size, 1);
  EXPECT_EQ(out8.count, 1u);
  EXPECT_EQ(bytes(out8.data), (std::vector<uint8_t>{0x42}));

  PortIoExit out16 = run_to_port(0x3f8);
  EXPECT_TRUE(out16.is_write);
  EXPECT_EQ(out16.size, 2);
  EXPECT_EQ(bytes(out16.data), (std::vector<uint8_t>{0x34, 0x12}));

  PortIoExit out32 = run_to_port(0x3f8);
  EXPECT_EQ(out32.size, 4);
  EXPECT_EQ(bytes(out32.data), (std::vector<uint8_t>{0xef, 0xbe, 0xad, 0xde}));

  run_to_port(kMarkerPort);
}

TEST_F(KvmVcpuTest, InCompletesWithTheDataWrittenIntoTheExit) {
  // clang-format off
  start_real_mode({
      0xba, 0x60, 0x00,   // mov dx, 0x60
      0xec,               // in al, dx
      0x88, 0xc3,         // mov bl, al
      0xed,               // in ax, dx
      0x89, 0xc1,         // mov cx, ax
      0x66, 0xed,         // in eax, dx
      0xe6, kMarkerPort,  // out marker, al
      0xeb, 0xfe,         // jmp $
  });
  // clang-format on
  PortIoExit in8 = run_to_port(0x60);
  EXPECT_FALSE(in8.is_write);
  ASSERT_EQ(in8.data.size(), 1u);
  in8.data[0] = 0x5a;

  PortIoExit in16 = run_to_port(0x60);
  ASSERT_EQ(in16.data.size(), 2u);
  const uint8_t word[] = {0xef, 0xbe};
  std::memcpy(in16.data.data(), word, 2);

  PortIoExit in32 = run_to_port(0x60);
  ASSERT_EQ(in32.data.size(), 4u);
  const uint8_t dword[] = {0x78, 0x56, 0x34, 0x12};
  std::memcpy(in32.data.data(), dword, 4);

  run_to_port(kMarkerPort);
  Registers regs = registers();
  EXPECT_EQ(regs.rbx & 0xff, 0x5au);
  EXPECT_EQ(regs.rcx & 0xffff, 0xbeefu);
  EXPECT_EQ(regs.rax & 0xffffffff, 0x12345678u);
}

TEST_F(KvmVcpuTest, RepOutsbAndRepInsbMoveEveryByte) {
  load(0x2000, {'h', 'e', 'l', 'l', 'o'});
  // clang-format off
  start_real_mode({
      0xbe, 0x00, 0x20,   // mov si, 0x2000
      0xb9, 0x05, 0x00,   // mov cx, 5
      0xba, 0xf8, 0x03,   // mov dx, 0x3f8
      0xfc,               // cld
      0xf3, 0x6e,         // rep outsb
      0xbf, 0x00, 0x30,   // mov di, 0x3000
      0xb9, 0x04, 0x00,   // mov cx, 4
      0xf3, 0x6c,         // rep insb
      0xe6, kMarkerPort,  // out marker, al
      0xeb, 0xfe,         // jmp $
  });
  // clang-format on
  // KVM may hand the string over in one exit (count 5) or, like kvm_pvm,
  // one byte per exit; either way every byte arrives once and in order.
  std::string written;
  while (written.size() < 5) {
    PortIoExit out = run_to_port(0x3f8);
    ASSERT_TRUE(out.is_write);
    ASSERT_EQ(out.size, 1);
    ASSERT_EQ(out.data.size(), out.count);
    ASSERT_GE(out.count, 1u);
    written.append(out.data.begin(), out.data.end());
  }
  EXPECT_EQ(written, "hello");

  const std::string input = "abcd";
  size_t supplied = 0;
  while (supplied < input.size()) {
    PortIoExit in = run_to_port(0x3f8);
    ASSERT_FALSE(in.is_write);
    ASSERT_LE(supplied + in.data.size(), input.size());
    std::memcpy(in.data.data(), input.data() + supplied, in.data.size());
    supplied += in.data.size();
  }
  run_to_port(kMarkerPort);
  std::vector<uint8_t> stored(4);
  ASSERT_TRUE(memory_.read(GuestAddress(0x3000), stored).ok());
  EXPECT_EQ(std::string(stored.begin(), stored.end()), input);
}

TEST_F(KvmVcpuTest, MmioReadAndWriteOutsideRam) {
  // clang-format off
  start_real_mode({
      0xb8, 0x00, 0xd0,                    // mov ax, 0xd000
      0x8e, 0xd8,                          // mov ds, ax
      0xa0, 0x10, 0x00,                    // mov al, [0x10]        (0xd0010)
      0x88, 0xc3,                          // mov bl, al
      0xc7, 0x06, 0x20, 0x00, 0xef, 0xbe,  // mov word [0x20], 0xbeef (0xd0020)
      0x66, 0xa1, 0x30, 0x00,              // mov eax, [0x30]       (0xd0030)
      0xe6, kMarkerPort,                   // out marker, al
      0xeb, 0xfe,                          // jmp $
  });
  // clang-format on
  MmioExit read8 = run_to_mmio();
  EXPECT_EQ(read8.address, 0xd0010u);
  EXPECT_FALSE(read8.is_write);
  ASSERT_EQ(read8.data.size(), 1u);
  read8.data[0] = 0xa5;

  MmioExit write16 = run_to_mmio();
  EXPECT_EQ(write16.address, 0xd0020u);
  EXPECT_TRUE(write16.is_write);
  EXPECT_EQ(bytes(write16.data), (std::vector<uint8_t>{0xef, 0xbe}));

  MmioExit read32 = run_to_mmio();
  EXPECT_EQ(read32.address, 0xd0030u);
  ASSERT_EQ(read32.data.size(), 4u);
  const uint8_t value[] = {0x44, 0x33, 0x22, 0x11};
  std::memcpy(read32.data.data(), value, 4);

  run_to_port(kMarkerPort);
  Registers regs = registers();
  EXPECT_EQ(regs.rbx & 0xff, 0xa5u);
  EXPECT_EQ(regs.rax & 0xffffffff, 0x11223344u);
}

TEST_F(KvmVcpuTest, LongModeMmioAndPortIo) {
  // clang-format off
  start_long_mode({
      0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,  // mov rax, 0x1122334455667788
      0x48, 0xbb, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00,  // mov rbx, 0x20000000
      0x48, 0x89, 0x03,                                            // mov [rbx], rax
      0x48, 0x8b, 0x4b, 0x08,                                      // mov rcx, [rbx + 8]
      0x66, 0xba, 0xf8, 0x03,                                      // mov dx, 0x3f8
      0xef,                                                        // out dx, eax
      0xe6, kMarkerPort,                                           // out marker, al
      0xeb, 0xfe,                                                  // jmp $
  });
  // clang-format on
  MmioExit write64 = run_to_mmio();
  EXPECT_EQ(write64.address, 0x20000000u);
  EXPECT_TRUE(write64.is_write);
  EXPECT_EQ(bytes(write64.data), (std::vector<uint8_t>{0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11}));

  MmioExit read64 = run_to_mmio();
  EXPECT_EQ(read64.address, 0x20000008u);
  EXPECT_FALSE(read64.is_write);
  ASSERT_EQ(read64.data.size(), 8u);
  const uint64_t value = 0xfedcba9876543210ull;
  std::memcpy(read64.data.data(), &value, 8);

  PortIoExit out32 = run_to_port(0x3f8);
  EXPECT_EQ(bytes(out32.data), (std::vector<uint8_t>{0x88, 0x77, 0x66, 0x55}));
  run_to_port(kMarkerPort);
  EXPECT_EQ(registers().rcx, value);
}

TEST_F(KvmVcpuTest, RegistersRoundTrip) {
  Registers in;
  in.rax = 0x0101010101010101, in.rbx = 0x0202020202020202, in.rcx = 3, in.rdx = 4;
  in.rsi = 5, in.rdi = 6, in.rsp = 0x7ff0, in.rbp = 8;
  in.r8 = 9, in.r9 = 10, in.r10 = 11, in.r11 = 12, in.r12 = 13, in.r13 = 14, in.r14 = 15, in.r15 = ~0ull;
  in.rip = 0x1234;
  in.rflags = 0x2 | 0x1 | 0x40;  // CF, ZF
  ASSERT_TRUE(vcpu_->set_registers(in).ok());
  Registers out = registers();
  EXPECT_EQ(std::memcmp(&in, &out, sizeof in), 0);
}

TEST_F(KvmVcpuTest, SystemRegistersRoundTrip) {
  SystemRegisters in = long_mode_registers();
  in.cr2 = 0xdead000;
  in.idt = {0x9000, 0xfff};
  in.fs.base = 0x7fff00001000;
  in.gs.base = 0xffff800000002000;
  ASSERT_TRUE(vcpu_->set_system_registers(in).ok());
  auto got = vcpu_->get_system_registers();
  ASSERT_TRUE(got.ok());
  const SystemRegisters& out = *got;
  EXPECT_EQ(out.cr0, in.cr0);
  EXPECT_EQ(out.cr2, in.cr2);
  EXPECT_EQ(out.cr3, in.cr3);
  EXPECT_EQ(out.cr4, in.cr4);
  EXPECT_EQ(out.efer, in.efer);
  EXPECT_EQ(out.gdt.base, in.gdt.base);
  EXPECT_EQ(out.gdt.limit, in.gdt.limit);
  EXPECT_EQ(out.idt.base, in.idt.base);
  EXPECT_EQ(out.idt.limit, in.idt.limit);
  EXPECT_EQ(out.apic_base, in.apic_base);
  for (auto [a, b] : {std::pair{&in.cs, &out.cs},
                      {&in.ds, &out.ds},
                      {&in.ss, &out.ss},
                      {&in.fs, &out.fs},
                      {&in.gs, &out.gs},
                      {&in.tr, &out.tr}}) {
    EXPECT_EQ(a->base, b->base);
    EXPECT_EQ(a->limit, b->limit);
    EXPECT_EQ(a->selector, b->selector);
    EXPECT_EQ(a->type, b->type);
    EXPECT_EQ(a->s, b->s);
    EXPECT_EQ(a->l, b->l);
    EXPECT_EQ(a->db, b->db);
    EXPECT_EQ(a->g, b->g);
    EXPECT_EQ(a->present, b->present);
  }
}

TEST_F(KvmVcpuTest, MsrsSetAtCreationAndBySetMsrs) {
  constexpr uint32_t kMiscEnable = 0x1a0, kTscAux = 0xc0000103;
  auto created = vcpu_->get_msrs({kMiscEnable});
  ASSERT_TRUE(created.ok()) << created.error().message();
  EXPECT_EQ((*created)[0].value & 1, 1u) << "fast strings should be on";

  ASSERT_TRUE(vcpu_->set_msrs({{kTscAux, 7}}).ok());
  auto aux = vcpu_->get_msrs({kTscAux});
  ASSERT_TRUE(aux.ok());
  EXPECT_EQ((*aux)[0].value, 7u);

  auto refused = vcpu_->set_msrs({{0xdeadbeef, 1}});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message().find("0xdeadbeef"), std::string::npos) << refused.error().message();
}

TEST_F(KvmVcpuTest, KickFromAnotherThreadStopsASpinningGuest) {
  // clang-format off
  start_real_mode({
      0xeb, 0xfe,         // 0x1000: jmp $
      0xe6, kMarkerPort,  // 0x1002: out marker, al
      0xeb, 0xfe,         //         jmp $
  });
  // clang-format on
  std::thread kicker([this] {
    std::this_thread::sleep_for(100ms);
    vcpu_->kick();
  });
  auto start = std::chrono::steady_clock::now();
  VcpuExit exit = run();
  auto elapsed = std::chrono::steady_clock::now() - start;
  kicker.join();
  EXPECT_TRUE(std::holds_alternative<InterruptedExit>(exit)) << describe(exit);
  EXPECT_LT(elapsed, 10s);

  // The kick is spent: the next run() enters the guest again.
  Registers regs = registers();
  EXPECT_EQ(regs.rip, kCodeAddress);
  regs.rip = kCodeAddress + 2;
  ASSERT_TRUE(vcpu_->set_registers(regs).ok());
  run_to_port(kMarkerPort);
}

TEST_F(KvmVcpuTest, KickWakesAGuestHaltedWithInterruptsOff) {
  // cli; hlt blocks inside KVM_RUN (the in-kernel LAPIC waits for an
  // interrupt that cannot come); pausing such a guest must still work.
  start_real_mode({0xfa, 0xf4, 0xeb, 0xfe});  // cli; hlt; jmp $
  std::thread kicker([this] {
    std::this_thread::sleep_for(200ms);
    vcpu_->kick();
  });
  VcpuExit exit = run();
  kicker.join();
  EXPECT_TRUE(std::holds_alternative<InterruptedExit>(exit)) << describe(exit);
}

TEST_F(KvmVcpuTest, KickBeforeRunMakesRunReturnAtOnce) {
  // clang-format off
  start_real_mode({
      0xe6, kMarkerPort,  // out marker, al
      0xeb, 0xfe,         // jmp $
  });
  // clang-format on
  vcpu_->kick();
  auto start = std::chrono::steady_clock::now();
  VcpuExit exit = run();
  EXPECT_TRUE(std::holds_alternative<InterruptedExit>(exit)) << describe(exit);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(registers().rip, kCodeAddress) << "the guest must not have run";
  run_to_port(kMarkerPort);
}

TEST_F(KvmVcpuTest, KicksAreNeverLost) {
  // Kicks landing at every point around KVM_RUN (before it, during guest
  // execution, while it returns) must each end a run of a guest that never
  // exits by itself; a lost kick would leave the watchdog to end the run.
  start_real_mode({0xeb, 0xfe});  // jmp $
  for (int i = 0; i < 100; ++i) {
    std::thread kicker([this, i] {
      std::this_thread::sleep_for(std::chrono::microseconds((i * 37) % 2000));
      vcpu_->kick();
    });
    VcpuExit exit = run();
    kicker.join();
    ASSERT_TRUE(std::holds_alternative<InterruptedExit>(exit)) << "iteration " << i << ": " << describe(exit);
  }
}

TEST_F(KvmVcpuTest, KickAfterAnIoExitKeepsTheAccessPending) {
  // clang-format off
  start_real_mode({
      0xba, 0x60, 0x00,   // mov dx, 0x60
      0xec,               // in al, dx
      0xe6, kMarkerPort,  // out marker, al
      0xeb, 0xfe,         // jmp $
  });
  // clang-format on
  PortIoExit in = run_to_port(0x60);
  ASSERT_EQ(in.data.size(), 1u);
  in.data[0] = 0x77;
  vcpu_->kick();
  VcpuExit exit = run();
  EXPECT_TRUE(std::holds_alternative<InterruptedExit>(exit)) << describe(exit);
  // KVM_RUN with immediate_exit completed the IN before returning and ran
  // nothing after it: the state a pause reads now is right past the IN.
  auto regs = vcpu_->get_registers();
  ASSERT_TRUE(regs.ok()) << regs.error().message();
  EXPECT_EQ(regs->rax & 0xff, 0x77u);
  EXPECT_EQ(regs->rip, kCodeAddress + 4);
  PortIoExit marker = run_to_port(kMarkerPort);
  ASSERT_EQ(marker.data.size(), 1u);
  EXPECT_EQ(marker.data[0], 0x77) << "the IN completed with the data written before the kick";
}

TEST_F(KvmVcpuTest, Ud2WithAnEmptyIdtIsATripleFault) {
  // clang-format off
  start_long_mode({
      0x0f, 0x0b,  // ud2 -> #UD -> #GP (IDT limit) -> #DF -> shutdown
  });
  // clang-format on
  VcpuExit exit = run();
  auto* event = std::get_if<SystemEventExit>(&exit);
  ASSERT_NE(event, nullptr) << describe(exit);
  EXPECT_EQ(event->kind, SystemEventExit::Kind::kTripleFault);
}

TEST_F(KvmVcpuTest, IrqLineAndMsiCallsSucceed) {
  auto& irq = vm_->kvm_interrupts();
  EXPECT_TRUE(irq.try_set_irq_line(4, true).ok());
  EXPECT_TRUE(irq.try_set_irq_line(4, false).ok());
  EXPECT_TRUE(irq.try_set_irq_line(23, true).ok());
  EXPECT_TRUE(irq.try_set_irq_line(23, false).ok());
  auto msi = irq.try_signal_msi(0xfee00000, 0x30);
  EXPECT_TRUE(msi.ok()) << msi.error().message();
  // Through the neutral interface too (failures would only be logged).
  vm_->interrupts().set_irq_line(4, true);
  vm_->interrupts().set_irq_line(4, false);
  vm_->interrupts().signal_msi(0xfee00000, 0x30);
}

// Real-mode program that programs the master PIC (vectors 0x08-0x0f, only
// IRQ 5 unmasked), enables interrupts and spins; IRQ 5 (vector 0x0d) runs a
// handler that writes to port 0xf5.
class KvmInterruptTest : public KvmVcpuTest {
 protected:
  static constexpr uint16_t kHandlerPort = 0xf5;
  static constexpr uint32_t kIrq = 5;

  void start_pic_program() {
    // IVT entry 0x0d -> 0000:0x1800
    load(0x0d * 4, {0x00, 0x18, 0x00, 0x00});
    load(0x1800, {0xe6, kHandlerPort, 0xeb, 0xfe});  // out 0xf5, al; jmp $
    // clang-format off
    start_real_mode({
        0xb0, 0x11, 0xe6, 0x20,  // ICW1: edge, cascade, ICW4 follows
        0xb0, 0x08, 0xe6, 0x21,  // ICW2: vector base 0x08
        0xb0, 0x04, 0xe6, 0x21,  // ICW3: slave on IRQ 2
        0xb0, 0x01, 0xe6, 0x21,  // ICW4: 8086 mode
        0xb0, 0xdf, 0xe6, 0x21,  // OCW1: mask all but IRQ 5
        0xfb,                    // sti
        0xe6, kMarkerPort,       // out marker, al
        0xeb, 0xfe,              // jmp $
    });
    // clang-format on
    // With the LAPIC hardware-disabled, the PIC's output goes straight to the CPU.
    SystemRegisters sregs = *vcpu_->get_system_registers();
    sregs.apic_base = 0xfee00000 | (1u << 8);  // BSP, not enabled
    ASSERT_TRUE(vcpu_->set_system_registers(sregs).ok());
    run_to_port(kMarkerPort);
  }
};

TEST_F(KvmInterruptTest, IrqLineReachesTheGuestThroughThePic) {
  start_pic_program();
  ASSERT_TRUE(vm_->kvm_interrupts().try_set_irq_line(kIrq, true).ok());
  ASSERT_TRUE(vm_->kvm_interrupts().try_set_irq_line(kIrq, false).ok());
  run_to_port(kHandlerPort);
}

TEST_F(KvmInterruptTest, IrqfdReachesTheGuestThroughThePic) {
  ASSERT_TRUE(vm_->supports_fast_eventfds());
  auto event = EventFd::create();
  ASSERT_TRUE(event.ok());
  auto registered = vm_->register_irqfd(*event, kIrq);
  ASSERT_TRUE(registered.ok()) << registered.error().message();
  start_pic_program();
  event->signal();
  run_to_port(kHandlerPort);
  EXPECT_TRUE(vm_->unregister_irqfd(*event, kIrq).ok());
}

// 64-bit program that masks the PICs, enables its LAPIC, points IOAPIC
// pin 2 at vector 0x40, enables interrupts and spins. Vector 0x40 writes to
// port 0xf5, vector 0x41 to port 0xf6.
class KvmApicTest : public KvmVcpuTest {
 protected:
  void start_apic_program() {
    // Map the IOAPIC and LAPIC pages (uncached) through PDPT[3].
    constexpr uint64_t kPdpt = 0x11000, kHighPd = 0x13000;
    ASSERT_TRUE(memory_.write_obj<uint64_t>(GuestAddress(kPdpt + 3 * 8), kHighPd | 0x3).ok());
    for (uint64_t address : {0xfec00000ull, 0xfee00000ull}) {
      uint64_t index = (address - 0xc0000000) >> 21;
      ASSERT_TRUE(memory_.write_obj<uint64_t>(GuestAddress(kHighPd + 8 * index), address | 0x93).ok());
    }
    // IDT: 64-bit interrupt gates for vectors 0x40 and 0x41.
    constexpr uint64_t kIdt = 0x9000;
    for (auto [vector, handler] : {std::pair<uint64_t, uint64_t>{0x40, 0x1800}, {0x41, 0x1810}}) {
      uint64_t low = (handler & 0xffff) | (0x08ull << 16) | (0x8eull << 40) | ((handler >> 16 & 0xffff) << 48);
      ASSERT_TRUE(memory_.write_obj<uint64_t>(GuestAddress(kIdt + 16 * vector), low).ok());
      ASSERT_TRUE(memory_.write_obj<uint64_t>(GuestAddress(kIdt + 16 * vector + 8), handler >> 32).ok());
    }
    load(0x1800, {0xe6, 0xf5, 0xeb, 0xfe});  // out 0xf5, al; jmp $
    load(0x1810, {0xe6, 0xf6, 0xeb, 0xfe});  // out 0xf6, al; jmp $
    // clang-format off
    start_long_mode({
        0xb0, 0xff, 0xe6, 0x21, 0xe6, 0xa1,                          // mask both PICs (KVM's LVT0 is ExtINT)
        0x48, 0xbb, 0xf0, 0x00, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x00,  // mov rbx, 0xfee000f0 (LAPIC SVR)
        0xc7, 0x03, 0xff, 0x01, 0x00, 0x00,                          // mov dword [rbx], 0x1ff (enable)
        0x48, 0xb9, 0x00, 0x00, 0xc0, 0xfe, 0x00, 0x00, 0x00, 0x00,  // mov rcx, 0xfec00000 (IOREGSEL)
        0xc7, 0x01, 0x14, 0x00, 0x00, 0x00,                          // mov dword [rcx], 0x14 (pin 2 low)
        0xc7, 0x41, 0x10, 0x40, 0x00, 0x00, 0x00,                    // mov dword [rcx+0x10], 0x40
        0xc7, 0x01, 0x15, 0x00, 0x00, 0x00,                          // mov dword [rcx], 0x15 (pin 2 high)
        0xc7, 0x41, 0x10, 0x00, 0x00, 0x00, 0x00,                    // mov dword [rcx+0x10], 0 (APIC 0)
        0xfb,                                                        // sti
        0xe6, kMarkerPort,                                           // out marker, al
        0xeb, 0xfe,                                                  // jmp $
    });
    // clang-format on
    SystemRegisters sregs = *vcpu_->get_system_registers();
    sregs.idt = {kIdt, 0xfff};
    ASSERT_TRUE(vcpu_->set_system_registers(sregs).ok());
    run_to_port(kMarkerPort);
  }
};

TEST_F(KvmApicTest, IsaIrq0ArrivesOnIoApicPin2LikeThePcAndTheMadtSay) {
  start_apic_program();
  ASSERT_TRUE(vm_->kvm_interrupts().try_set_irq_line(0, true).ok());
  ASSERT_TRUE(vm_->kvm_interrupts().try_set_irq_line(0, false).ok());
  run_to_port(0xf5);
}

TEST_F(KvmApicTest, MsiReachesTheLapic) {
  start_apic_program();
  auto delivered = vm_->kvm_interrupts().try_signal_msi(0xfee00000, 0x40);
  ASSERT_TRUE(delivered.ok()) << delivered.error().message();
  EXPECT_TRUE(*delivered);
  run_to_port(0xf5);
}

TEST_F(KvmApicTest, IrqfdOnAnMsiRouteReachesTheLapic) {
  auto event = EventFd::create();
  ASSERT_TRUE(event.ok());
  ASSERT_TRUE(vm_->set_msi_route(24, 0xfee00000, 0x41).ok());
  auto registered = vm_->register_irqfd(*event, 24);
  ASSERT_TRUE(registered.ok()) << registered.error().message();
  start_apic_program();
  event->signal();
  run_to_port(0xf6);
  EXPECT_TRUE(vm_->unregister_irqfd(*event, 24).ok());
}

TEST_F(KvmVcpuTest, IoeventfdAbsorbsMatchingWrites) {
  auto any = EventFd::create(0, EFD_NONBLOCK);
  auto match = EventFd::create(0, EFD_NONBLOCK);
  ASSERT_TRUE(any.ok() && match.ok());
  ASSERT_TRUE(vm_->register_ioeventfd(*any, 0x500, 1, true, std::nullopt).ok());
  ASSERT_TRUE(vm_->register_ioeventfd(*match, 0x504, 2, true, 0x1234).ok());
  // clang-format off
  start_real_mode({
      0xba, 0x00, 0x05,   // mov dx, 0x500
      0xb0, 0x07,         // mov al, 7
      0xee,               // out dx, al        -> eventfd, no exit
      0xba, 0x04, 0x05,   // mov dx, 0x504
      0xb8, 0x34, 0x12,   // mov ax, 0x1234
      0xef,               // out dx, ax        -> matches: eventfd, no exit
      0xb8, 0x35, 0x12,   // mov ax, 0x1235
      0xef,               // out dx, ax        -> no match: exits
      0xe6, kMarkerPort,  // out marker, al
      0xeb, 0xfe,         // jmp $
  });
  // clang-format on
  PortIoExit unmatched = run_to_port(0x504);
  EXPECT_EQ(bytes(unmatched.data), (std::vector<uint8_t>{0x35, 0x12}));
  run_to_port(kMarkerPort);
  EXPECT_EQ(any->consume(), 1u);
  EXPECT_EQ(match->consume(), 1u);

  EXPECT_TRUE(vm_->unregister_ioeventfd(*any, 0x500, 1, true, std::nullopt).ok());
  auto again = vm_->unregister_ioeventfd(*any, 0x500, 1, true, std::nullopt);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), ErrorCode::kNotFound);
}

TEST_F(KvmVcpuTest, IoeventfdRejectsBadArguments) {
  auto event = EventFd::create();
  ASSERT_TRUE(event.ok());
  EXPECT_EQ(vm_->register_ioeventfd(*event, 0x500, 3, true, std::nullopt).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(vm_->register_ioeventfd(*event, 0xffff, 2, true, std::nullopt).error().code(), ErrorCode::kOutOfRange);
  EXPECT_EQ(vm_->register_ioeventfd(*event, 0x500, 0, true, std::nullopt).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(vm_->register_ioeventfd(*event, 0x500, 1, true, 0x100).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(vm_->register_ioeventfd(*event, UINT64_MAX - 2, 4, false, std::nullopt).error().code(),
            ErrorCode::kOutOfRange);
  EXPECT_TRUE(vm_->register_ioeventfd(*event, 0xd0000000, 0, false, std::nullopt).ok());
}

TEST_F(KvmVcpuTest, MsiRoutesTakeGsisAboveTheIrqchipPins) {
  EXPECT_TRUE(vm_->set_msi_route(30, 0xfee00000, 0x31).ok());
  EXPECT_TRUE(vm_->set_msi_route(30, 0xfee00000, 0x32).ok());  // update
  EXPECT_TRUE(vm_->set_msi_route(31, 0xfee00000, 0x33).ok());
  EXPECT_EQ(vm_->set_msi_route(5, 0xfee00000, 0x31).error().code(), ErrorCode::kOutOfRange);
  EXPECT_EQ(vm_->set_msi_route(1u << 20, 0xfee00000, 0x31).error().code(), ErrorCode::kOutOfRange);
  EXPECT_TRUE(vm_->remove_msi_route(30).ok());
  EXPECT_EQ(vm_->remove_msi_route(30).error().code(), ErrorCode::kNotFound);
  // What msi_route_gsis() reports is what set_msi_route() takes.
  const Vm::GsiRange range = vm_->msi_route_gsis();
  EXPECT_EQ(range.first, kIrqchipGsiCount);
  ASSERT_GT(range.end, range.first);
  EXPECT_TRUE(vm_->set_msi_route(range.end - 1, 0xfee00000, 0x34).ok());
  EXPECT_TRUE(vm_->remove_msi_route(range.end - 1).ok());
  EXPECT_EQ(vm_->set_msi_route(range.end, 0xfee00000, 0x34).error().code(), ErrorCode::kOutOfRange);
  EXPECT_EQ(vm_->set_msi_route(range.first - 1, 0xfee00000, 0x34).error().code(), ErrorCode::kOutOfRange);
  // The irqchip pins still work after the table was replaced.
  EXPECT_TRUE(vm_->kvm_interrupts().try_set_irq_line(4, true).ok());
  EXPECT_TRUE(vm_->kvm_interrupts().try_set_irq_line(4, false).ok());
}

// Save -> encode -> decode -> restore into a fresh KVM VM -> save gives the
// same state (time fields moved on by no more than the time in between),
// and the copy computes on from where the first VM stopped.
TEST_F(KvmVcpuTest, StateRoundTripsThroughTheCodecIntoAFreshVm) {
  // clang-format off
  start_long_mode({
      0x31, 0xc9,        // xor ecx, ecx
      0x48, 0xff, 0xc1,  // 1: inc rcx
      0xeb, 0xfb,        // jmp 1b
  });
  // clang-format on
  // FPU and SSE state through restore_state() (this host's KVM emulates
  // every guest instruction and has no SSE in its emulator).
  VcpuState initial = vcpu_->save_state().value();
  initial.fpu.xmm[3][0] = 0x78;
  initial.fpu.st[0] = {0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f};  // 1.0
  initial.fpu.fsw = 7u << 11;                                   // TOP = 7
  initial.fpu.ftw = 0x80;                                       // R7 valid
  initial.fpu.mxcsr = 0x1fa0;
  auto set = vcpu_->restore_state(initial);
  ASSERT_TRUE(set.ok()) << set.error().message();
  std::thread kicker([this] {
    std::this_thread::sleep_for(200ms);
    vcpu_->kick();
  });
  VcpuExit exit = run();
  kicker.join();
  ASSERT_TRUE(std::holds_alternative<InterruptedExit>(exit)) << describe(exit);

  auto saved = vcpu_->save_state();
  ASSERT_TRUE(saved.ok()) << saved.error().message();
  auto chip = vm_->save_irqchip();
  ASSERT_TRUE(chip.ok()) << chip.error().message();
  ASSERT_GT(saved->regs.rcx, 0u) << "the guest did not run";
  EXPECT_EQ(saved->fpu.xmm[3][0], 0x78);
  EXPECT_EQ(saved->fpu.st[0][9], 0x3f) << "ST(0) = 1.0";
  EXPECT_NE(saved->tsc, 0u);
  EXPECT_NE(saved->tsc_khz, 0u);

  StateWriter vcpu_bytes, chip_bytes;
  encode_vcpu_state(vcpu_bytes, *saved);
  encode_irqchip_state(chip_bytes, *chip);
  const VcpuState state = decode_vcpu_state(vcpu_bytes.bytes(), kVcpuStateVersion).value();
  const IrqchipState chip_state = decode_irqchip_state(chip_bytes.bytes(), kIrqchipStateVersion).value();

  auto vm = hv_->create_vm(VmConfig{1});
  ASSERT_TRUE(vm.ok()) << vm.error().message();
  auto memory = GuestMemory::create({{GuestAddress(0), kRamSize}});
  ASSERT_TRUE(memory.ok());
  ASSERT_TRUE(
      memory->write(GuestAddress(0), std::span(memory_.host_pointer(GuestAddress(0), kRamSize), kRamSize)).ok());
  ASSERT_TRUE((*vm)->map_memory(*memory).ok());
  auto copy = (*vm)->create_vcpu(0);
  ASSERT_TRUE(copy.ok()) << copy.error().message();

  const auto restored_at = std::chrono::steady_clock::now();
  auto restored = (*copy)->restore_state(state);
  ASSERT_TRUE(restored.ok()) << restored.error().message();
  auto chip_restored = (*vm)->restore_irqchip(chip_state);
  ASSERT_TRUE(chip_restored.ok()) << chip_restored.error().message();
  VcpuState again = (*copy)->save_state().value();
  IrqchipState chip_again = (*vm)->save_irqchip().value();
  const uint64_t slack_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - restored_at).count();

  EXPECT_GE(chip_again.clock_ns, chip_state.clock_ns) << "kvmclock went back";
  EXPECT_LE(chip_again.clock_ns - chip_state.clock_ns, slack_ns) << "kvmclock jumped";
  EXPECT_GE(again.tsc, state.tsc) << "the TSC went back";
  if (static_cast<KvmVcpu&>(**copy).tsc_settable()) {
    EXPECT_LE(again.tsc - state.tsc, slack_ns * state.tsc_khz / 1'000'000 + 1) << "the TSC jumped";
  } else {
    std::printf(
        "*** this KVM gives guests the host's TSC: the restored TSC continued from the host's, %llu ticks "
        "on; the TSC restore was NOT tested ***\n",
        static_cast<unsigned long long>(again.tsc - state.tsc));
  }
  again.tsc = state.tsc;
  chip_again.clock_ns = chip_state.clock_ns;
  // KVM_SET_PIT2 reloads every count: what had elapsed starts again from 0.
  for (unsigned ch = 0; ch < 3; ++ch) {
    EXPECT_LE(chip_again.pit.channels[ch].elapsed_ticks, slack_ns / 800 + 1);
    chip_again.pit.channels[ch].elapsed_ticks = chip_state.pit.channels[ch].elapsed_ticks;
  }
  EXPECT_EQ(again, state);
  EXPECT_EQ(chip_again, chip_state);

  std::thread copy_kicker([&] {
    std::this_thread::sleep_for(100ms);
    (*copy)->kick();
  });
  auto copy_exit = (*copy)->run();
  copy_kicker.join();
  ASSERT_TRUE(copy_exit.ok()) << copy_exit.error().message();
  EXPECT_TRUE(std::holds_alternative<InterruptedExit>(*copy_exit)) << describe(*copy_exit);
  EXPECT_GT((*copy)->get_registers().value().rcx, state.regs.rcx);
}

TEST_F(KvmVcpuTest, StateIsRefusedWhileAnIoAccessIsPendingAndBadRestoresChangeNothing) {
  // clang-format off
  start_real_mode({
      0xe4, 0x71,  // in al, 0x71
      0xeb, 0xfe,  // jmp $
  });
  // clang-format on
  run_to_port(0x71);
  auto refused = vcpu_->save_state();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kBusy);
  vcpu_->kick();
  ASSERT_TRUE(std::holds_alternative<InterruptedExit>(run()));
  const VcpuState before = vcpu_->save_state().value();

  VcpuState ap = before;
  ap.lapic.apic_base &= ~(1ull << 8);
  auto r = vcpu_->restore_state(ap);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("application processor"), std::string::npos) << r.error().message();
  VcpuState wide = before;
  wide.xcr0 = 0x7 | (1ull << 62);
  r = vcpu_->restore_state(wide);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("XCR0"), std::string::npos) << r.error().message();
  VcpuState now = vcpu_->save_state().value();
  now.tsc = before.tsc;
  EXPECT_EQ(now, before);

  IrqchipState chip = vm_->save_irqchip().value();
  chip.vcpu_count = 3;
  auto chip_refused = vm_->restore_irqchip(chip);
  ASSERT_FALSE(chip_refused.ok());
  EXPECT_NE(chip_refused.error().message().find("--cpus 3"), std::string::npos);
}

TEST(KvmHypervisorOpen, MissingDeviceSaysWhatToDo) {
  auto hv = KvmHypervisor::open("/nonexistent/kvm");
  ASSERT_FALSE(hv.ok());
  EXPECT_EQ(hv.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(hv.error().message().find("--accel emu"), std::string::npos) << hv.error().message();
}

TEST(KvmHypervisorOpen, SomethingThatIsNotKvmIsRejected) {
  auto hv = KvmHypervisor::open("/dev/null");
  ASSERT_FALSE(hv.ok());
  EXPECT_EQ(hv.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(hv.error().message().find("API version"), std::string::npos) << hv.error().message();
}

TEST(KvmHypervisorOpen, TooManyVcpusIsRejected) {
  if (::access("/dev/kvm", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "SKIPPED: /dev/kvm is missing or not accessible on this host; the KVM backend was NOT tested";
  }
  auto hv = KvmHypervisor::open();
  ASSERT_TRUE(hv.ok()) << hv.error().message();
  EXPECT_EQ((*hv)->create_vm(VmConfig{0}).error().code(), ErrorCode::kInvalidArgument);
  auto too_many = (*hv)->create_vm(VmConfig{(*hv)->capabilities().max_vcpus + 1});
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.error().code(), ErrorCode::kInvalidArgument);
}

TEST(KvmCpuid, EachVcpuSeesItsOwnApicId) {
  if (::access("/dev/kvm", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "SKIPPED: /dev/kvm is missing or not accessible on this host; the KVM backend was NOT tested";
  }
  auto hv = KvmHypervisor::open();
  ASSERT_TRUE(hv.ok()) << hv.error().message();
  auto vm = (*hv)->create_vm(VmConfig{3});
  ASSERT_TRUE(vm.ok()) << vm.error().message();
  auto memory = GuestMemory::create({{GuestAddress(0), kRamSize}});
  ASSERT_TRUE(memory.ok());
  ASSERT_TRUE((*vm)->map_memory(*memory).ok());
  // clang-format off
  const std::vector<uint8_t> code = {
      0x66, 0xb8, 0x01, 0x00, 0x00, 0x00,  // mov eax, 1
      0x0f, 0xa2,                          // cpuid
      0x66, 0x89, 0xde,                    // mov esi, ebx
      0x66, 0x89, 0xcf,                    // mov edi, ecx
      0x66, 0xb8, 0x0b, 0x00, 0x00, 0x00,  // mov eax, 0xb
      0x66, 0x31, 0xc9,                    // xor ecx, ecx
      0x0f, 0xa2,                          // cpuid
      0xe6, kMarkerPort,                   // out marker, al
      0xeb, 0xfe,                          // jmp $
  };
  // clang-format on
  ASSERT_TRUE(memory->write(GuestAddress(kCodeAddress), code).ok());
  for (unsigned index : {0u, 2u}) {
    auto created = (*vm)->create_vcpu(index);
    ASSERT_TRUE(created.ok()) << created.error().message();
    auto& vcpu = static_cast<KvmVcpu&>(**created);
    // Application processors wait for INIT/SIPI from the guest; make this one runnable directly.
    kvm_mp_state runnable{KVM_MP_STATE_RUNNABLE};
    ASSERT_EQ(::ioctl(vcpu.fd(), KVM_SET_MP_STATE, &runnable), 0);
    ASSERT_TRUE(testing::enter_real_mode(vcpu, kCodeAddress).ok());
    Watchdog watchdog(vcpu);
    auto exit = vcpu.run();
    ASSERT_TRUE(exit.ok()) << exit.error().message();
    auto* io = std::get_if<PortIoExit>(&*exit);
    ASSERT_NE(io, nullptr) << "vCPU " << index << " did not reach the marker";
    EXPECT_EQ(io->port, kMarkerPort);
    auto out = vcpu.get_registers();
    ASSERT_TRUE(out.ok());
    EXPECT_EQ((out->rsi >> 24) & 0xff, index) << "CPUID.1:EBX[31:24] on vCPU " << index;
    EXPECT_NE(out->rdi & (1u << 31), 0u) << "CPUID.1:ECX hypervisor bit";
    EXPECT_EQ(out->rdx & 0xffffffff, index) << "CPUID.0xB:EDX on vCPU " << index;
  }
}

TEST_F(KvmVcpuTest, VcpuIndexesAreCheckedAndUnique) {
  EXPECT_EQ(vm_->create_vcpu(0).error().code(), ErrorCode::kBusy);
  EXPECT_EQ(vm_->create_vcpu(1).error().code(), ErrorCode::kInvalidArgument);  // VM has 1 vCPU
}

TEST_F(KvmVcpuTest, OverlappingMemoryIsRejected) {
  auto more = GuestMemory::create({{GuestAddress(0x40000), 0x1000}});
  ASSERT_TRUE(more.ok());
  auto mapped = vm_->map_memory(*more);
  ASSERT_FALSE(mapped.ok());
  EXPECT_EQ(mapped.error().code(), ErrorCode::kBusy);
}

}  // namespace
}  // namespace hostvisor::kvm
