#include "hv/kvm/kvm_vm.h"

#include <time.h>

#include <cstring>
#include <string>

#include "hv/hex.h"
#include "hv/kvm/kvm_abi.h"
#include "hv/kvm/kvm_ioctl.h"
#include "hv/kvm/kvm_irqchip_state.h"
#include "hv/kvm/kvm_vcpu.h"

namespace hostvisor::kvm {
KvmVm::KvmVm(UniqueFd vm, const VmConfig& config, const KvmCapabilities& caps,
             const std::vector<kvm_cpuid_entry2>& supported_cpuid, size_t vcpu_mmap_size)
    : vm_(std::move(vm)),
      config_(config),
      caps_(caps),
      supported_cpuid_(supported_cpuid),
      vcpu_mmap_size_(vcpu_mmap_size),
      interrupts_(std::make_unique<KvmInterruptController>(vm_.get(), caps.signal_msi)) {}

Result<std::unique_ptr<KvmVm>> KvmVm::create(int kvm, const VmConfig& config, const KvmCapabilities& caps,
                                             const std::vector<kvm_cpuid_entry2>& supported_cpuid,
                                             size_t vcpu_mmap_size) {
  int raw = kvm_ioctl(kvm, KVM_CREATE_VM, 0);
  if (raw < 0) return Error::from_errno("KVM_CREATE_VM");
  UniqueFd vm(raw);

  // KVM_SET_TSS_ADDR takes the address itself, not a pointer to it.
  if (kvm_ioctl(vm.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(kTssAddress)) < 0) {
    return Error::from_errno("KVM_SET_TSS_ADDR " + hex(kTssAddress));
  }
  uint64_t identity_map = kIdentityMapAddress;
  if (kvm_ioctl(vm.get(), KVM_SET_IDENTITY_MAP_ADDR, &identity_map) < 0) {
    return Error::from_errno("KVM_SET_IDENTITY_MAP_ADDR " + hex(kIdentityMapAddress));
  }
  if (kvm_ioctl(vm.get(), KVM_CREATE_IRQCHIP, 0) < 0) return Error::from_errno("KVM_CREATE_IRQCHIP");
  // SPEAKER_DUMMY: the kernel also answers port 0x61 (the channel 2 gate and
  // output), so guests' PIT calibration loops on channel 2 run without exits.
  kvm_pit_config pit{};
  pit.flags = KVM_PIT_SPEAKER_DUMMY;
  if (kvm_ioctl(vm.get(), KVM_CREATE_PIT2, &pit) < 0) return Error::from_errno("KVM_CREATE_PIT2");

  std::unique_ptr<KvmVm> result(new KvmVm(std::move(vm), config, caps, supported_cpuid, vcpu_mmap_size));
  // KVM's own default wires ISA IRQ 0 to IOAPIC pin 0; replace it with the PC wiring.
  {
    std::lock_guard lock(result->routing_mutex_);
    HV_TRY(result->apply_routing());
  }
  return result;
}

Result<void> KvmVm::map_memory(const GuestMemory& memory) {
  std::lock_guard lock(mutex_);
  const auto& regions = memory.regions();
  if (regions.size() > caps_.max_memory_slots - next_slot_) {
    return Error(ErrorCode::kOutOfRange, "KVM: " + std::to_string(next_slot_ + regions.size()) +
                                             " memory regions, this host allows " +
                                             std::to_string(caps_.max_memory_slots));
  }
  for (const auto& region : regions) {
    kvm_userspace_memory_region slot{};
    slot.slot = next_slot_;
    slot.guest_phys_addr = region.start.value();
    slot.memory_size = region.size;
    slot.userspace_addr = reinterpret_cast<uint64_t>(region.host);
    if (kvm_ioctl(vm_.get(), KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
      int err = errno;
      std::string what = "KVM_SET_USER_MEMORY_REGION [" + hex(region.start.value()) + ", " +
                         hex(region.start.value() + region.size) + ")";
      if (err == EEXIST) {
        return Error(ErrorCode::kBusy, what + " overlaps memory already mapped (or KVM's own pages at " +
                                           hex(kIdentityMapAddress) + "-" + hex(kTssAddress + 0x3000) + ")");
      }
      return Error::from_errno(what, err);
    }
    ++next_slot_;
  }
  return ok();
}

Result<std::unique_ptr<Vcpu>> KvmVm::create_vcpu(unsigned index) {
  std::lock_guard lock(mutex_);
  if (index >= config_.vcpu_count) {
    return Error(ErrorCode::kInvalidArgument, "vCPU " + std::to_string(index) + ": this VM was configured with " +
                                                  std::to_string(config_.vcpu_count) + " vCPUs");
  }
  if (created_vcpus_.count(index) != 0) {
    return Error(ErrorCode::kBusy, "vCPU " + std::to_string(index) + " already exists");
  }
  auto vcpu = HV_TRY(KvmVcpu::create(vm_.get(), index, caps_, supported_cpuid_, vcpu_mmap_size_));
  created_vcpus_.insert(index);
  return std::unique_ptr<Vcpu>(std::move(vcpu));
}

bool KvmVm::supports_fast_eventfds() const {
  return caps_.irqfd && caps_.ioeventfd && caps_.irq_routing_entries > kIrqchipGsiCount;
}

Result<void> KvmVm::check_irqfd_gsi(uint32_t gsi) const {
  if (!caps_.irqfd) return Error(ErrorCode::kUnsupported, "this KVM lacks KVM_CAP_IRQFD");
  uint32_t limit = caps_.irq_routing_entries;
  if (gsi >= limit) {
    return Error(ErrorCode::kOutOfRange,
                 "GSI " + std::to_string(gsi) + " is past the last one (" + std::to_string(limit - 1) + ")");
  }
  return ok();
}

Result<void> KvmVm::register_irqfd(const EventFd& event, uint32_t gsi) {
  HV_TRY(check_irqfd_gsi(gsi));
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(event.fd());
  irqfd.gsi = gsi;
  if (kvm_ioctl(vm_.get(), KVM_IRQFD, &irqfd) < 0) {
    return Error::from_errno("KVM_IRQFD fd " + std::to_string(event.fd()) + " gsi " + std::to_string(gsi));
  }
  return ok();
}

Result<void> KvmVm::unregister_irqfd(const EventFd& event, uint32_t gsi) {
  HV_TRY(check_irqfd_gsi(gsi));
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(event.fd());
  irqfd.gsi = gsi;
  irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
  if (kvm_ioctl(vm_.get(), KVM_IRQFD, &irqfd) < 0) {
    return Error::from_errno("KVM_IRQFD deassign fd " + std::to_string(event.fd()) + " gsi " + std::to_string(gsi));
  }
  return ok();
}

// KVM_SET_GSI_ROUTING replaces the whole table, so it always carries the
// PC wiring of the irqchip pins (see kPcIrqRouting in kvm_vm.h) plus our MSI
// routes.
Result<void> KvmVm::apply_routing() {
  std::vector<kvm_irq_routing_entry> entries;
  auto add_pin = [&entries](uint32_t gsi, uint32_t irqchip, uint32_t pin) {
    kvm_irq_routing_entry entry{};
    entry.gsi = gsi;
    entry.type = KVM_IRQ_ROUTING_IRQCHIP;
    entry.u.irqchip.irqchip = irqchip;
    entry.u.irqchip.pin = pin;
    entries.push_back(entry);
  };
  for (uint32_t gsi = 0; gsi < kIrqchipGsiCount; ++gsi) {
    if (gsi == kCascadeIrq) continue;  // not a device line
    if (gsi < 16) add_pin(gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, gsi % 8);
    add_pin(gsi, KVM_IRQCHIP_IOAPIC, gsi == kPitIsaIrq ? kPitIoApicPin : gsi);
  }
  for (const auto& [gsi, msi] : msi_routes_) {
    kvm_irq_routing_entry entry{};
    entry.gsi = gsi;
    entry.type = KVM_IRQ_ROUTING_MSI;
    entry.u.msi = msi;
    entries.push_back(entry);
  }
  FlexibleArray<KvmIrqRoutingHeader, kvm_irq_routing_entry> routing(entries.size());
  routing.header()->nr = static_cast<uint32_t>(entries.size());
  std::memcpy(routing.entries(), entries.data(), entries.size() * sizeof(kvm_irq_routing_entry));
  if (kvm_ioctl(vm_.get(), kKvmSetGsiRouting, routing.data()) < 0) return Error::from_errno("KVM_SET_GSI_ROUTING");
  return ok();
}

Result<void> KvmVm::set_msi_route(uint32_t gsi, uint64_t address, uint32_t data) {
  if (gsi < kIrqchipGsiCount || gsi >= caps_.irq_routing_entries) {
    return Error(ErrorCode::kOutOfRange,
                 "MSI route on GSI " + std::to_string(gsi) + ": use GSIs " + std::to_string(kIrqchipGsiCount) + " to " +
                     std::to_string(caps_.irq_routing_entries - 1) + " (the ones below are irqchip pins)");
  }
  std::lock_guard lock(routing_mutex_);
  if (msi_routes_.size() + 1 + kIrqchipRouteCount > caps_.irq_routing_entries && msi_routes_.count(gsi) == 0) {
    return Error(ErrorCode::kOutOfRange, "the KVM GSI routing table is full");
  }
  kvm_irq_routing_msi msi{};
  msi.address_lo = static_cast<uint32_t>(address);
  msi.address_hi = static_cast<uint32_t>(address >> 32);
  msi.data = data;
  auto previous = msi_routes_.find(gsi);
  std::optional<kvm_irq_routing_msi> old;
  if (previous != msi_routes_.end()) old = previous->second;
  msi_routes_[gsi] = msi;
  auto applied = apply_routing();
  if (!applied.ok()) {  // keep our table what KVM has
    if (old) {
      msi_routes_[gsi] = *old;
    } else {
      msi_routes_.erase(gsi);
    }
  }
  return applied;
}

Vm::GsiRange KvmVm::msi_route_gsis() const {
  if (caps_.irq_routing_entries <= kIrqchipGsiCount) return {};
  return {kIrqchipGsiCount, caps_.irq_routing_entries};
}

Result<void> KvmVm::remove_msi_route(uint32_t gsi) {
  std::lock_guard lock(routing_mutex_);
  auto it = msi_routes_.find(gsi);
  if (it == msi_routes_.end()) {
    return Error(ErrorCode::kNotFound, "no MSI route on GSI " + std::to_string(gsi));
  }
  kvm_irq_routing_msi old = it->second;
  msi_routes_.erase(it);
  auto applied = apply_routing();
  if (!applied.ok()) msi_routes_[gsi] = old;
  return applied;
}

Result<kvm_ioeventfd> KvmVm::make_ioeventfd(const EventFd& event, uint64_t address, uint32_t length, bool is_pio,
                                            std::optional<uint64_t> datamatch) const {
  if (!caps_.ioeventfd) return Error(ErrorCode::kUnsupported, "this KVM lacks KVM_CAP_IOEVENTFD");
  std::string what = std::string(is_pio ? "port " : "MMIO ") + hex(address) + " length " + std::to_string(length);
  if (length != 0 && length != 1 && length != 2 && length != 4 && length != 8) {
    return Error(ErrorCode::kInvalidArgument, "ioeventfd on " + what + ": the length must be 1, 2, 4 or 8");
  }
  if (length == 0 && (is_pio || datamatch || !caps_.ioeventfd_any_length)) {
    return Error(ErrorCode::kInvalidArgument,
                 "ioeventfd on " + what +
                     ": length 0 (any) is only for MMIO without a datamatch, on a KVM with "
                     "KVM_CAP_IOEVENTFD_ANY_LENGTH");
  }
  uint64_t limit = is_pio ? 0x10000 : 0;  // 0: the whole 64-bit space
  if ((is_pio && (address >= limit || length > limit - address)) ||
      (!is_pio && length != 0 && address > UINT64_MAX - (length - 1))) {
    return Error(ErrorCode::kOutOfRange, "ioeventfd on " + what + ": past the end of the address space");
  }
  if (datamatch && length < 8 && (*datamatch >> (8 * length)) != 0) {
    return Error(ErrorCode::kInvalidArgument, "ioeventfd on " + what + ": datamatch " + hex(*datamatch) +
                                                  " does not fit in " + std::to_string(length) + " bytes");
  }
  kvm_ioeventfd io{};
  io.addr = address;
  io.len = length;
  io.fd = event.fd();
  if (is_pio) io.flags |= KVM_IOEVENTFD_FLAG_PIO;
  if (datamatch) {
    io.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
    io.datamatch = *datamatch;
  }
  return io;
}

Result<void> KvmVm::register_ioeventfd(const EventFd& event, uint64_t address, uint32_t length, bool is_pio,
                                       std::optional<uint64_t> datamatch) {
  kvm_ioeventfd io = HV_TRY(make_ioeventfd(event, address, length, is_pio, datamatch));
  if (kvm_ioctl(vm_.get(), KVM_IOEVENTFD, &io) < 0) {
    int err = errno;
    std::string what = std::string("KVM_IOEVENTFD ") + (is_pio ? "port " : "MMIO ") + hex(address);
    if (err == EEXIST) return Error(ErrorCode::kBusy, what + ": an ioeventfd with the same match is registered");
    return Error::from_errno(what, err);
  }
  return ok();
}

Result<void> KvmVm::unregister_ioeventfd(const EventFd& event, uint64_t address, uint32_t length, bool is_pio,
                                         std::optional<uint64_t> datamatch) {
  kvm_ioeventfd io = HV_TRY(make_ioeventfd(event, address, length, is_pio, datamatch));
  io.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
  if (kvm_ioctl(vm_.get(), KVM_IOEVENTFD, &io) < 0) {
    int err = errno;
    std::string what = std::string("KVM_IOEVENTFD deassign ") + (is_pio ? "port " : "MMIO ") + hex(address);
    if (err == ENOENT) return Error(ErrorCode::kNotFound, what + ": no such ioeventfd is registered");
    return Error::from_errno(what, err);
  }
  return ok();
}

namespace {

// count_load_time in KVM's PIT state is ktime_get(): CLOCK_MONOTONIC.
int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

Result<IrqchipState> KvmVm::save_irqchip() {
  IrqchipState s;
  kvm_irqchip chip{};
  for (uint32_t id : {KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC}) {
    chip = {};
    chip.chip_id = id;
    if (kvm_ioctl(vm_.get(), KVM_GET_IRQCHIP, &chip) < 0)
      return Error::from_errno("KVM_GET_IRQCHIP " + std::to_string(id));
    if (id == KVM_IRQCHIP_IOAPIC) {
      s.io_apic = ioapic_from_kvm(chip.chip.ioapic);
    } else {
      s.pic.chips[id] = pic_from_kvm(chip.chip.pic, id == KVM_IRQCHIP_PIC_MASTER);
    }
  }
  kvm_pit_state2 pit{};
  if (kvm_ioctl(vm_.get(), KVM_GET_PIT2, &pit) < 0) return Error::from_errno("KVM_GET_PIT2");
  s.pit = pit_from_kvm(pit, monotonic_ns());
  kvm_clock_data clock{};
  if (kvm_ioctl(vm_.get(), KVM_GET_CLOCK, &clock) < 0) return Error::from_errno("KVM_GET_CLOCK");
  s.clock_ns = clock.clock;
  s.vcpu_count = config_.vcpu_count;
  return s;
}

Result<void> KvmVm::restore_irqchip(const IrqchipState& s) {
  HV_TRY(check_irqchip_vcpu_count(s, config_.vcpu_count));
  // kvmclock first: the guest's monotonic time goes on from the saved one.
  kvm_clock_data clock{};
  clock.clock = s.clock_ns;
  if (kvm_ioctl(vm_.get(), KVM_SET_CLOCK, &clock) < 0) return Error::from_errno("KVM_SET_CLOCK");
  for (uint32_t id : {KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC}) {
    kvm_irqchip chip{};
    chip.chip_id = id;
    // Read first: what the neutral state does not carry (the ELCR mask) stays.
    if (kvm_ioctl(vm_.get(), KVM_GET_IRQCHIP, &chip) < 0)
      return Error::from_errno("KVM_GET_IRQCHIP " + std::to_string(id));
    if (id == KVM_IRQCHIP_IOAPIC) {
      ioapic_to_kvm(s.io_apic, chip.chip.ioapic);
    } else {
      pic_to_kvm(s.pic.chips[id], chip.chip.pic);
    }
    if (kvm_ioctl(vm_.get(), KVM_SET_IRQCHIP, &chip) < 0)
      return Error::from_errno("KVM_SET_IRQCHIP " + std::to_string(id));
  }
  kvm_pit_state2 pit = pit_to_kvm(s.pit, monotonic_ns());
  if (kvm_ioctl(vm_.get(), KVM_SET_PIT2, &pit) < 0) return Error::from_errno("KVM_SET_PIT2");
  return ok();
}

}  // namespace hostvisor::kvm
