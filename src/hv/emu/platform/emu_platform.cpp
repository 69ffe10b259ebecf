#include "hv/emu/platform/emu_platform.h"

#include <string>

#include "hv/emu/platform/platform_devices.h"

namespace hostvisor::emu {

Result<std::unique_ptr<EmuPlatform>> EmuPlatform::create(const EmuPlatformConfig& config) {
  if (config.vcpu_count == 0 || config.vcpu_count > 255) {
    return Error(ErrorCode::kInvalidArgument, "the emulated APIC platform supports 1 to 255 vCPUs, not " +
                                                  std::to_string(config.vcpu_count) + "; use fewer --cpus");
  }
  std::unique_ptr<EmuPlatform> p(new EmuPlatform());
  if (config.clock) {
    p->clock_ = config.clock;
  } else {
    p->owned_clock_ = std::make_unique<HostClock>();
    p->clock_ = p->owned_clock_.get();
  }
  p->timers_ = std::make_unique<PlatformTimers>(*p->clock_);
  p->bus_ = std::make_unique<ApicBus>();
  p->pic_ = std::make_unique<Pic>();
  p->io_apic_ = std::make_unique<IoApic>(*p->bus_, config.io_apic_id);
  p->pit_ = std::make_unique<Pit>(*p->timers_);
  p->bus_->set_io_apic(p->io_apic_.get());
  for (unsigned i = 0; i < config.vcpu_count; ++i) {
    p->lapics_.push_back(std::make_unique<LocalApic>(i, i == 0, *p->bus_, *p->timers_));
    p->bus_->add(*p->lapics_.back());
  }
  p->interrupts_ = std::make_unique<EmuInterruptController>(*p->pic_, *p->io_apic_, *p->bus_);
  p->port61_ = std::make_shared<SystemControlPortB>(p->pit_.get());

  // The PIC's INT output is wired to LINT0 of the BSP; any LAPIC that takes
  // an ExtINT request runs the PIC's INTA cycle.
  LocalApic* bsp = p->lapics_.front().get();
  Pic* pic = p->pic_.get();
  pic->set_intr_callback([bsp](bool level) { bsp->set_lint0(level); });
  for (auto& lapic : p->lapics_) lapic->set_extint_source([pic] { return pic->acknowledge(); });
  // PIT channel 0 -> ISA IRQ 0 (PIC IRQ 0 and IOAPIC pin 2), one edge per
  // rising output.
  EmuInterruptController* ic = p->interrupts_.get();
  p->pit_->set_irq0_callback([ic] {
    ic->set_irq_line(EmuInterruptController::kPitIsaIrq, true);
    ic->set_irq_line(EmuInterruptController::kPitIsaIrq, false);
  });

  if (config.start_timer_thread) {
    auto started = p->timers_->start();
    if (!started) return std::move(started).error();
  }
  return p;
}

EmuPlatform::~EmuPlatform() {
  // No timer callback may run into components being destroyed.
  if (timers_) timers_->stop();
}

Result<void> EmuPlatform::attach(Bus& port_bus, Bus& mmio_bus) {
  auto add = [](Bus& bus, std::shared_ptr<BusDevice> device, uint64_t base, uint64_t length) -> Result<void> {
    const std::string name(device->name());
    auto r = bus.insert(std::move(device), base, length);
    if (!r) return r.error().with_context("emu platform: placing " + name);
    return {};
  };
  HV_TRY(add(port_bus, std::make_shared<PicPorts>(*pic_, Pic::kMasterCommand), Pic::kMasterCommand, 2));
  HV_TRY(add(port_bus, std::make_shared<PicPorts>(*pic_, Pic::kSlaveCommand), Pic::kSlaveCommand, 2));
  HV_TRY(add(port_bus, std::make_shared<PicPorts>(*pic_, Pic::kElcrMaster), Pic::kElcrMaster, 2));
  HV_TRY(add(port_bus, std::make_shared<PitPorts>(*pit_), Pit::kChannel0, 4));
  HV_TRY(add(port_bus, port61_, SystemControlPortB::kPort, 1));
  HV_TRY(add(mmio_bus, std::make_shared<IoApicMmio>(*io_apic_), IoApic::kDefaultBase, IoApic::kMmioSize));
  return {};
}

void EmuPlatform::reset() {
  port61_->reset();
  pit_->reset();
  pic_->reset();
  io_apic_->reset();
  for (auto& lapic : lapics_) lapic->reset();
}

IrqchipState EmuPlatform::save() const {
  IrqchipState s;
  s.io_apic = io_apic_->save();
  s.pic = pic_->save();
  s.pit = pit_->save();
  s.pit.port61 = port61_->save().control;
  s.clock_ns = clock_->now_ns();
  return s;
}

Result<void> EmuPlatform::restore(const IrqchipState& state) {
  // First: it sets the PIT's channel 2 gate. The refresh toggle is not
  // state a guest can rely on.
  HV_TRY(port61_->restore({.control = state.pit.port61, .refresh = false}));

  // The LAPIC timers count from clock times, and the TSC is the clock plus
  // an offset: take both before the clock moves and put them back after.
  std::vector<uint64_t> tscs;
  std::vector<LocalApic::State> lapics;
  for (const auto& lapic : lapics_) {
    tscs.push_back(lapic->guest_tsc());
    lapics.push_back(lapic->save());
  }
  clock_->set_now_ns(state.clock_ns);
  const uint64_t base_tsc = tsc_at_ns(clock_->now_ns());
  for (size_t i = 0; i < lapics_.size(); ++i) {
    lapics_[i]->set_tsc_offset(tscs[i] - base_tsc);
    lapics_[i]->restore(lapics[i]);
  }

  pic_->restore(state.pic);
  io_apic_->restore(state.io_apic);
  pit_->restore(state.pit);
  return {};
}

}  // namespace hostvisor::emu
