#include "hv/emu/emu_hypervisor.h"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "base/log.h"
#include "devices/bus/bus.h"
#include "hv/emu/code_map.h"
#include "hv/emu/cpu.h"
#include "hv/emu/execute/x87_state.h"
#include "hv/emu/flags.h"
#include "hv/emu/interpreter.h"
#include "hv/emu/mmu.h"
#include "hv/emu/msr.h"
#include "hv/emu/platform/emu_platform.h"
#include "hv/emu/segments.h"
#include "hv/emu/zydis_library.h"
#include "hv/hex.h"

namespace hostvisor::emu {
namespace {

constexpr uint32_t kMsrTsc = 0x10;
// XCR0 bits the software CPU has state for: x87 and SSE. It has no XSAVE, so
// its guests never change XCR0 from its reset value (x87 only).
constexpr uint64_t kSupportedXcr0 = 0x3;

// Registers in the neutral struct's order -> x86 encoding order.
constexpr int kGprOrder[16] = {0, 3, 1, 2, 6, 7, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15};

uint64_t* neutral_gpr(Registers& r, int i) {
  uint64_t* fields[16] = {&r.rax, &r.rbx, &r.rcx, &r.rdx, &r.rsi, &r.rdi, &r.rsp, &r.rbp,
                          &r.r8,  &r.r9,  &r.r10, &r.r11, &r.r12, &r.r13, &r.r14, &r.r15};
  return fields[i];
}

// HOSTVISOR_EMU_STATS=1 makes every vCPU log, when it is destroyed, the
// instructions it retired and its thread's CPU time (bench/ reads it).
bool stats_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("HOSTVISOR_EMU_STATS");
    return v && std::strcmp(v, "1") == 0;
  }();
  return enabled;
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

class EmuVm;

class EmuVcpu final : public Vcpu {
 public:
  EmuVcpu(EmuVm& vm, unsigned index);
  ~EmuVcpu() override;

  Result<VcpuExit> run() override;
  void kick() override {
    interpreter_.kick();
    std::lock_guard lock(mutex_);
    wake_ = true;
    cv_.notify_all();
  }
  Result<Registers> get_registers() override;
  Result<void> set_registers(const Registers& regs) override;
  Result<SystemRegisters> get_system_registers() override;
  Result<void> set_system_registers(const SystemRegisters& sregs) override;
  Result<void> set_msrs(const std::vector<Msr>& msrs) override;
  Result<VcpuState> save_state() override;
  Result<void> restore_state(const VcpuState& state) override;
  unsigned index() const override { return index_; }
  // Wakes wait_for_event() to look at its conditions again.
  void wake() {
    std::lock_guard lock(mutex_);
    wake_ = true;
    cv_.notify_all();
  }

 private:
  bool wait_for_event();
  // What restore_state() checks before it changes anything.
  Result<void> check_restorable(const VcpuState& state) const;
  Result<void> apply_state(const VcpuState& state);
  // Delivers the event a restored state had injected; false on shutdown.
  bool deliver_injected_event();

  // Statistics (HOSTVISOR_EMU_STATS=1): read the clock once per exit, never
  // per instruction. CPU time runs from the first run() to the last exit, so
  // it includes the device work this thread does between runs.
  const bool stats_ = stats_enabled();
  uint64_t exits_ = 0;
  double cpu_first_ = 0, cpu_last_ = 0;
  std::chrono::steady_clock::duration halted_{};  // wall time asleep in HLT (or waiting for SIPI)

  EmuVm& vm_;
  unsigned index_;
  Cpu cpu_;
  Interpreter interpreter_{cpu_};
  std::mutex mutex_;
  std::condition_variable cv_;
  bool wake_ = false;
  // Events a restored state was delivering (from KVM); the software CPU
  // delivers them before its first instruction, and saves them meanwhile.
  PendingEvents injected_;
};

class EmuVm final : public Vm {
 public:
  static Result<std::unique_ptr<EmuVm>> create(const VmConfig& config) {
    if (config.vcpu_count == 0 || config.vcpu_count > 255) {
      return Error(ErrorCode::kInvalidArgument,
                   "the software CPU supports 1 to 255 vCPUs; use --cpus within that range");
    }
    auto vm = std::unique_ptr<EmuVm>(new EmuVm(config));
    auto platform = EmuPlatform::create({.vcpu_count = config.vcpu_count});
    if (!platform) return platform.error().with_context("emu interrupt controllers");
    vm->platform_ = std::move(*platform);
    HV_TRY(vm->platform_->attach(vm->ports_, vm->mmio_));
    return vm;
  }

  Result<void> map_memory(const GuestMemory& memory) override {
    uint64_t end = 0;
    for (const auto& r : memory.regions()) end = std::max(end, r.end().value());
    memory_ = &memory;
    code_.resize(end);
    return ok();
  }

  void dma_written(uint64_t gpa, uint64_t length) override { code_.invalidate_range(gpa, length); }

  Result<std::unique_ptr<Vcpu>> create_vcpu(unsigned index) override {
    if (index >= vcpu_count_) {
      return Error(ErrorCode::kInvalidArgument, "vCPU " + std::to_string(index) +
                                                    " does not exist: the VM was created with " +
                                                    std::to_string(vcpu_count_) + " vCPUs");
    }
    if (created_[index]) return Error(ErrorCode::kBusy, "vCPU " + std::to_string(index) + " was already created");
    created_[index] = true;
    return std::unique_ptr<Vcpu>(new EmuVcpu(*this, index));
  }

  InterruptController& interrupts() override { return platform_->interrupts(); }

  // The VM clock of the state is the platform clock (platform_clock.h):
  // the software CPU has no kvmclock, so every emulated timer and the TSC
  // follow this one clock, and a restore sets it (EmuPlatform::restore).
  Result<IrqchipState> save_irqchip() override {
    IrqchipState state = platform_->save();
    state.vcpu_count = vcpu_count_;
    return state;
  }
  Result<void> restore_irqchip(const IrqchipState& state) override {
    HV_TRY(check_irqchip_vcpu_count(state, vcpu_count_));
    return platform_->restore(state);
  }

  const GuestMemory* memory() const { return memory_; }
  CodeMap& code() { return code_; }
  EmuPlatform& platform() { return *platform_; }
  Bus& ports() { return ports_; }
  Bus& mmio() { return mmio_; }
  void register_vcpu(unsigned index, EmuVcpu* vcpu) {
    std::lock_guard lock(sleep_mutex_);
    live_[index] = vcpu;
  }
  void release_vcpu(unsigned index) {
    std::lock_guard lock(sleep_mutex_);
    created_[index] = false;
    live_[index] = nullptr;
  }

  // The stuck check of EmuVcpu::wait_for_event(). begin: false when this
  // vCPU is the last to fall asleep without interrupts and nothing can wake
  // any of them (the others are woken to see it). end: false when the
  // guest turned out stuck meanwhile. Once stuck, a VM stays so: its run
  // ends (a reset builds a new VM).
  bool begin_sleep_without_interrupts() {
    std::lock_guard lock(sleep_mutex_);
    if (stuck_) return false;
    if (++asleep_without_interrupts_ < vcpu_count_) return true;
    for (unsigned i = 0; i < vcpu_count_; ++i) {
      const LocalApic& apic = platform_->local_apic(i);
      if (apic.has_init() || apic.has_nmi() || (apic.waiting_for_sipi() && apic.has_sipi())) return true;
    }
    stuck_ = true;
    --asleep_without_interrupts_;
    for (EmuVcpu* vcpu : live_) {
      if (vcpu) vcpu->wake();
    }
    return false;
  }
  bool end_sleep_without_interrupts() {
    std::lock_guard lock(sleep_mutex_);
    if (stuck_) return false;
    --asleep_without_interrupts_;
    return true;
  }

 private:
  explicit EmuVm(const VmConfig& config)
      : vcpu_count_(config.vcpu_count), created_(config.vcpu_count, false), live_(config.vcpu_count, nullptr) {}

  unsigned vcpu_count_;
  std::vector<bool> created_;
  std::mutex sleep_mutex_;
  std::vector<EmuVcpu*> live_;
  unsigned asleep_without_interrupts_ = 0;
  bool stuck_ = false;
  const GuestMemory* memory_ = nullptr;
  CodeMap code_;
  // The platform devices the backend serves itself (PIC, PIT, port 0x61, IOAPIC).
  Bus ports_{"emu platform ports", 0x10000};
  Bus mmio_{"emu platform mmio"};
  std::unique_ptr<EmuPlatform> platform_;
};

EmuVcpu::EmuVcpu(EmuVm& vm, unsigned index) : vm_(vm), index_(index) {
  reset_cpu(cpu_);
  cpu_.apic_id = index;
  cpu_.code = &vm.code();
  // Indexes are below kMaxVcpus (255), so every vCPU has its slot.
  if (vm.code().attach(index)) cpu_.code_slot = index;
  cpu_.lapic = &vm.platform().local_apic(index);
  cpu_.clock = &vm.platform().clock();
  cpu_.internal_ports = &vm.ports();
  cpu_.internal_mmio = &vm.mmio();
  cpu_.apic_base = LocalApic::kDefaultBase | LocalApic::kApicBaseEnable | (index == 0 ? LocalApic::kApicBaseBsp : 0);
  cpu_.lapic->set_wakeup([this] { wake(); });
  vm.register_vcpu(index, this);
  interpreter_.wait_for_event = [this] { return wait_for_event(); };
}

EmuVcpu::~EmuVcpu() {
  if (stats_) {
    const uint64_t retired = interpreter_.instructions();
    const double seconds = cpu_last_ - cpu_first_;
    HV_LOG_INFO(
        "emu vCPU {}: {} instructions retired in {:.3f} s of thread CPU time: {:.1f} MIPS ({} exits, {:.3f} s halted)",
        index_, retired, seconds, seconds > 0 ? static_cast<double>(retired) / seconds / 1e6 : 0.0, exits_,
        std::chrono::duration<double>(halted_).count());
    HV_LOG_INFO("emu vCPU {}: soft TLB misses served by the second-level TLB {}, page walks {}", index_,
                cpu_.tlb.second.hits(), cpu_.tlb.second.walks());
    if (interpreter_.translator()) {
      HV_LOG_INFO("emu vCPU {}: {}", index_, jit::describe(interpreter_.translator_stats()));
    }
  }
  cpu_.lapic->set_wakeup(nullptr);
  vm_.release_vcpu(index_);
}

// HLT, or an AP waiting for SIPI: sleep until the LAPIC may have something
// for this CPU, or kick(). A CPU that only another CPU can wake (HLT with
// IF=0, as Linux stops CPUs and firmware parks the APs it counted, or
// waiting for SIPI) sleeps too, as under KVM's in-kernel LAPIC, and counts
// towards the VM's stuck check: once every vCPU sleeps so, with no INIT,
// NMI or SIPI on its way, the guest can never go on, and each of them
// returns false so its run() reports the halt.
bool EmuVcpu::wait_for_event() {
  LocalApic& apic = *cpu_.lapic;
  const bool only_ipi_wakes = apic.waiting_for_sipi() || !(cpu_.rflags & kFlagIf);
  if (only_ipi_wakes && !vm_.begin_sleep_without_interrupts()) return false;
  const auto asleep = stats_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] {
      if (wake_ || interpreter_.kicked()) return true;
      if (apic.has_init() || apic.has_nmi()) return true;
      if (apic.waiting_for_sipi()) return apic.has_sipi();
      return (cpu_.rflags & kFlagIf) && apic.has_interrupt();
    });
    wake_ = false;
  }
  if (stats_) halted_ += std::chrono::steady_clock::now() - asleep;
  return !only_ipi_wakes || vm_.end_sleep_without_interrupts();
}

Result<VcpuExit> EmuVcpu::run() {
  cpu_.memory = vm_.memory();
  if (!cpu_.memory) {
    return Error(ErrorCode::kInvalidArgument, "the VM has no guest RAM: call map_memory() before running a vCPU");
  }
  if (stats_ && exits_ == 0) cpu_first_ = cpu_last_ = thread_cpu_seconds();
  try {
    if (!interpreter_.while_running([&] { return deliver_injected_event(); })) {
      return VcpuExit(SystemEventExit{SystemEventExit::Kind::kTripleFault});
    }
  } catch (const EmulationFailure& e) {
    return VcpuExit(FailureExit{std::string(e.what) + " at rip " + hex(cpu_.rip)});
  }
  const Interpreter::Outcome outcome = interpreter_.run();
  if (stats_) {
    ++exits_;
    cpu_last_ = thread_cpu_seconds();
  }
  switch (outcome.stop) {
    case Interpreter::Stop::kIo: {
      IoRecord& r = cpu_.io.records[cpu_.io.count - 1];
      std::span<uint8_t> data(r.data, r.size);
      if (r.is_port) {
        return VcpuExit(PortIoExit{static_cast<uint16_t>(r.address), r.size, 1, r.is_write, data});
      }
      return VcpuExit(MmioExit{r.address, r.is_write, data});
    }
    case Interpreter::Stop::kHalt: return VcpuExit(HaltExit{});
    case Interpreter::Stop::kShutdown: return VcpuExit(SystemEventExit{SystemEventExit::Kind::kTripleFault});
    case Interpreter::Stop::kInterrupted:
    case Interpreter::Stop::kInstructionLimit: return VcpuExit(InterruptedExit{});
    case Interpreter::Stop::kFailure: return VcpuExit(FailureExit{outcome.detail});
  }
  return VcpuExit(FailureExit{"unknown interpreter stop"});
}

Result<Registers> EmuVcpu::get_registers() {
  Registers r;
  for (int i = 0; i < 16; ++i) *neutral_gpr(r, i) = cpu_.gpr[kGprOrder[i]];
  r.rip = cpu_.rip;
  r.rflags = read_flags(cpu_);
  return r;
}

Result<void> EmuVcpu::set_registers(const Registers& regs) {
  if (regs.rflags & kFlagVm) {
    return Error(ErrorCode::kUnsupported, "virtual-8086 mode (RFLAGS.VM) is not supported by the software CPU");
  }
  Registers copy = regs;
  for (int i = 0; i < 16; ++i) cpu_.gpr[kGprOrder[i]] = *neutral_gpr(copy, i);
  cpu_.rip = regs.rip;
  write_flags(cpu_, regs.rflags);
  return ok();
}

Result<SystemRegisters> EmuVcpu::get_system_registers() {
  SystemRegisters s;
  const auto segments = segment_registers(s);
  for (size_t i = 0; i < segments.size(); ++i) *segments[i] = cpu_.seg[i];
  s.tr = cpu_.tr;
  s.ldt = cpu_.ldt;
  s.gdt = cpu_.gdt;
  s.idt = cpu_.idt;
  copy_control_registers(cpu_, s);
  s.cr8 = cpu_cr8(cpu_);
  return s;
}

Result<void> EmuVcpu::set_system_registers(const SystemRegisters& s) {
  if ((s.efer & x86::kEferLma) && !((s.cr0 & x86::kCr0Pg) && (s.cr4 & x86::kCr4Pae))) {
    return Error(ErrorCode::kInvalidArgument, "EFER.LMA needs CR0.PG and CR4.PAE (long mode needs PAE paging)");
  }
  load_segment_state(cpu_, s);
  cpu_.cr0 = s.cr0;
  cpu_.cr2 = s.cr2;
  cpu_.cr3 = s.cr3;
  cpu_.cr4 = s.cr4;
  cpu_.efer = s.efer;
  set_cpu_cr8(cpu_, s.cr8);
  if (s.apic_base != cpu_.apic_base) {
    if (!write_msr(cpu_, LocalApic::kMsrApicBase, s.apic_base)) {
      return Error(ErrorCode::kInvalidArgument, "invalid IA32_APIC_BASE value in the system registers");
    }
  }
  // CPL as KVM defines it: SS.DPL in protected mode.
  cpu_.cpl = (s.cr0 & x86::kCr0Pe) ? s.ss.dpl : 0;
  update_mode(cpu_);
  tlb_flush(cpu_);
  interpreter_.flush_code();
  return ok();
}

Result<void> EmuVcpu::set_msrs(const std::vector<Msr>& msrs) {
  for (const Msr& m : msrs) {
    if (!write_msr(cpu_, m.index, m.value)) {
      char buf[64];
      snprintf(buf, sizeof(buf), "MSR 0x%x cannot be set to 0x%llx", m.index, static_cast<unsigned long long>(m.value));
      return Error(ErrorCode::kInvalidArgument, std::string(buf) + " on the software CPU");
    }
  }
  return ok();
}

Result<VcpuState> EmuVcpu::save_state() {
  if (cpu_.io.count != 0) {
    return Error(ErrorCode::kBusy, "vCPU " + std::to_string(index_) +
                                       " is inside an I/O access: its state can be read only after kick() made "
                                       "run() return InterruptedExit (pause the machine first)");
  }
  VcpuState s;
  s.regs = *get_registers();
  s.sregs = *get_system_registers();

  FpuState& f = s.fpu;
  const X87State& x = cpu_.x87;
  f.fcw = x.fcw;
  f.fsw = x.fsw;
  f.ftw = x.ftw;
  f.fop = x.fop;
  f.fip = x.fip;
  f.fdp = x.fdp;
  f.fcs = x.fcs;
  f.fds = x.fds;
  const unsigned top = x87_top(x);
  for (unsigned i = 0; i < 8; ++i) std::memcpy(f.st[i].data(), x.st[(top + i) & 7], 10);
  f.mxcsr = cpu_.mxcsr;
  for (unsigned i = 0; i < 16; ++i) std::memcpy(f.xmm[i].data(), cpu_.xmm[i], 16);
  s.xcr0 = 1;  // no XSAVE: XCR0 keeps its reset value

  s.tsc = guest_tsc(cpu_);
  s.tsc_khz = static_cast<uint32_t>(kTscFrequencyHz / 1000);
  for (uint32_t index : saved_msr_indices()) {
    if (is_kvmclock_msr(index)) continue;  // the software CPU has no kvmclock
    if (auto value = read_msr(cpu_, index)) s.msrs.push_back({index, *value});
  }

  s.events = injected_;
  s.events.shadow_sti = cpu_.interrupt_shadow;  // the software CPU does not tell STI and MOV SS apart
  s.events.nmi_masked = cpu_.nmi_blocked;
  s.halted = cpu_.halted;
  s.lapic = cpu_.lapic->save();
  return s;
}

Result<void> EmuVcpu::check_restorable(const VcpuState& s) const {
  const std::string who = "vCPU " + std::to_string(index_) + ": ";
  if (cpu_.io.count != 0) {
    return Error(ErrorCode::kBusy, who + "inside an I/O access: restore a state only into a paused or new vCPU");
  }
  if (s.xcr0 & ~kSupportedXcr0) {
    return Error(ErrorCode::kUnsupported, who + "the state uses XSAVE components (XCR0 = " + hex(s.xcr0) +
                                              ", e.g. AVX) that the software CPU does not implement; restore it "
                                              "with --accel kvm");
  }
  for (const Msr& m : s.msrs) {
    if (is_kvmclock_msr(m.index) && m.value != 0) {
      return Error(ErrorCode::kUnsupported, who + "the guest uses kvmclock (MSR " + hex(m.index) +
                                                "), which the software CPU does not provide; restore it with "
                                                "--accel kvm");
    }
  }
  HV_TRY(check_vcpu_state_index(s, index_));
  if (s.regs.rflags & kFlagVm) {
    return Error(ErrorCode::kUnsupported, who + "virtual-8086 mode (RFLAGS.VM) is not supported by the software CPU");
  }
  if ((s.sregs.efer & x86::kEferLma) && !((s.sregs.cr0 & x86::kCr0Pg) && (s.sregs.cr4 & x86::kCr4Pae))) {
    return Error(ErrorCode::kInvalidArgument, who + "EFER.LMA without CR0.PG and CR4.PAE in the state");
  }
  return {};
}

Result<void> EmuVcpu::restore_state(const VcpuState& state) {
  HV_TRY(check_restorable(state));
  auto before = save_state();
  if (auto applied = apply_state(state); !applied) {
    // Whatever failed (an MSR value the software CPU refuses), leave the
    // vCPU as it was rather than half restored.
    if (before) (void)apply_state(*before);
    return applied.error().with_context("vCPU " + std::to_string(index_));
  }
  return {};
}

Result<void> EmuVcpu::apply_state(const VcpuState& s) {
  // IA32_APIC_BASE goes in as is (set_system_registers() would check the
  // transition from the current value); the LAPIC after the system
  // registers, as CR8 holds only the top half of its TPR.
  cpu_.apic_base = s.sregs.apic_base;
  HV_TRY(set_system_registers(s.sregs));
  HV_TRY(set_registers(s.regs));
  cpu_.lapic->restore(s.lapic);

  X87State& x = cpu_.x87;
  const FpuState& f = s.fpu;
  x.fcw = f.fcw;
  x.fsw = f.fsw;
  x.ftw = f.ftw;
  x.fop = f.fop;
  x.fip = f.fip;
  x.fdp = f.fdp;
  x.fcs = f.fcs;
  x.fds = f.fds;
  const unsigned top = x87_top(x);
  for (unsigned i = 0; i < 8; ++i) std::memcpy(x.st[(top + i) & 7], f.st[i].data(), 10);
  cpu_.mxcsr = f.mxcsr;
  for (unsigned i = 0; i < 16; ++i) std::memcpy(cpu_.xmm[i], f.xmm[i].data(), 16);

  std::vector<Msr> msrs;
  for (const Msr& m : s.msrs) {
    if (!is_kvmclock_msr(m.index)) msrs.push_back(m);  // all zero: checked
  }
  msrs.push_back({kMsrTsc, s.tsc});  // also moves the LAPIC's TSC-deadline timer
  HV_TRY(set_msrs(msrs));

  if (s.tsc_khz != 0 && s.tsc_khz != kTscFrequencyHz / 1000) {
    HV_LOG_WARN("vCPU {}: the guest's TSC ran at {} kHz and goes on at the software CPU's {} kHz; a guest timing "
                "itself by the TSC sees its clock run at another rate",
                index_, s.tsc_khz, kTscFrequencyHz / 1000);
  }
  injected_ = s.events;
  injected_.shadow_sti = injected_.shadow_mov_ss = injected_.nmi_masked = false;
  cpu_.interrupt_shadow = s.events.shadow_sti || s.events.shadow_mov_ss;
  cpu_.nmi_blocked = s.events.nmi_masked;
  cpu_.halted = s.halted;
  cpu_.io = IoReplay{};
  return {};
}

bool EmuVcpu::deliver_injected_event() {
  PendingEvents e = std::exchange(injected_, PendingEvents{});
  if (e.exception_injected || e.exception_pending) {
    return deliver_unrestartable(cpu_, e.exception_vector, EventKind::kException, e.exception_has_error,
                                 e.exception_error);
  }
  if (e.nmi_injected) {
    if (!deliver_unrestartable(cpu_, kNmi, EventKind::kExternal, false, 0)) return false;
    cpu_.nmi_blocked = true;
    return true;
  }
  // A software interrupt (INT n) is not delivered here: RIP still points at
  // the instruction, which runs again.
  if (e.interrupt_injected && !e.interrupt_soft) {
    cpu_.halted = false;
    return deliver_unrestartable(cpu_, e.interrupt_vector, EventKind::kExternal, false, 0);
  }
  return true;
}

class EmuHypervisor final : public Hypervisor {
 public:
  const char* name() const override { return "emu"; }
  Result<std::unique_ptr<Vm>> create_vm(const VmConfig& config) override {
    auto vm = EmuVm::create(config);
    if (!vm) return std::move(vm).error();
    return std::unique_ptr<Vm>(std::move(*vm));
  }
};

}  // namespace

Result<std::unique_ptr<Hypervisor>> create_emu_hypervisor() {
  HV_TRY(load_zydis());  // the decoder's library: missing, it is an error now rather than mid-run
  return std::unique_ptr<Hypervisor>(new EmuHypervisor());
}

}  // namespace hostvisor::emu
