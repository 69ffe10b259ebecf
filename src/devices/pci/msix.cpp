#include "devices/pci/msix.h"

#include <algorithm>
#include <string>

#include "base/log.h"
#include "base/log_rate_limit.h"

namespace hostvisor {

Msix::Msix(uint16_t vectors, uint8_t bar, uint32_t table_offset, uint32_t pba_offset)
    : entries_(std::clamp<uint16_t>(vectors, 1, kMaxVectors)),
      pending_(entries_.size(), false),
      bar_(bar),
      table_offset_(table_offset & ~7u),
      pba_offset_(pba_offset & ~7u) {}

Result<void> Msix::install(PciConfigSpace& config) {
  if (bar_ >= PciConfigSpace::kBarCount || config.bar_info(bar_).size == 0)
    return Error(ErrorCode::kInternal, "MSI-X table placed in a BAR the device does not have");
  const uint64_t bar_size = config.bar_info(bar_).size;
  if (table_offset_ > bar_size || table_size() > bar_size - table_offset_ || pba_offset_ > bar_size ||
      pba_size() > bar_size - pba_offset_)
    return Error(ErrorCode::kInternal, "MSI-X table or PBA does not fit its BAR");
  if (table_offset_ < pba_offset_ + pba_size() && pba_offset_ < table_offset_ + table_size())
    return Error(ErrorCode::kInternal, "MSI-X table and PBA overlap");
  const uint16_t control = static_cast<uint16_t>(entries_.size() - 1);
  const uint32_t table = table_offset_ | bar_;
  const uint32_t pba = pba_offset_ | bar_;
  const uint8_t body[10] = {
      static_cast<uint8_t>(control),    static_cast<uint8_t>(control >> 8), static_cast<uint8_t>(table),
      static_cast<uint8_t>(table >> 8), static_cast<uint8_t>(table >> 16),  static_cast<uint8_t>(table >> 24),
      static_cast<uint8_t>(pba),        static_cast<uint8_t>(pba >> 8),     static_cast<uint8_t>(pba >> 16),
      static_cast<uint8_t>(pba >> 24),
  };
  // Only Enable and Function Mask are writable.
  const uint8_t writable[10] = {
      0, static_cast<uint8_t>((kControlEnable | kControlFunctionMask) >> 8), 0, 0, 0, 0, 0, 0, 0, 0};
  cap_offset_ = HV_TRY(config.add_capability(pci_cap_id::kMsix, body, writable));
  return ok();
}

void Msix::config_written(const PciConfigSpace& config) {
  if (cap_offset_ == 0) return;
  const uint16_t control = config.raw_u16(cap_offset_ + 2);
  enabled_ = control & kControlEnable;
  function_masked_ = control & kControlFunctionMask;
  sync_unmasked_routes();
  deliver_unmasked_pending();
}

bool Msix::in_table(uint64_t offset, uint64_t length) const {
  return offset >= table_offset_ && offset - table_offset_ < table_size() &&
         length <= table_size() - (offset - table_offset_);
}

bool Msix::in_pba(uint64_t offset, uint64_t length) const {
  return offset >= pba_offset_ && offset - pba_offset_ < pba_size() && length <= pba_size() - (offset - pba_offset_);
}

uint32_t Msix::entry_dword(size_t index) const {
  const Entry& e = entries_[index / 4];
  switch (index % 4) {
    case 0: return e.address_low;
    case 1: return e.address_high;
    case 2: return e.data;
    default: return e.control;
  }
}

void Msix::table_read(uint64_t offset, std::span<uint8_t> data) const {
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i - table_offset_;
    if (offset + i < table_offset_ || at >= table_size()) {
      data[i] = 0;
      continue;
    }
    data[i] = static_cast<uint8_t>(entry_dword(at / 4) >> (8 * (at % 4)));
  }
}

void Msix::table_write(uint64_t offset, std::span<const uint8_t> data) {
  std::vector<uint16_t> touched;
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i - table_offset_;
    if (offset + i < table_offset_ || at >= table_size()) continue;
    Entry& e = entries_[at / kEntrySize];
    uint32_t* field = nullptr;
    switch ((at / 4) % 4) {
      case 0: field = &e.address_low; break;
      case 1: field = &e.address_high; break;
      case 2: field = &e.data; break;
      default: field = &e.control; break;
    }
    const unsigned shift = 8 * (at % 4);
    *field = (*field & ~(0xffu << shift)) | (uint32_t{data[i]} << shift);
    if ((at / 4) % 4 == 3) {
      e.control &= 1;  // only the mask bit exists; the rest is reserved
      touched.push_back(static_cast<uint16_t>(at / kEntrySize));
    }
  }
  // Unmasking a vector binds its route to the message the guest programmed
  // (drivers change an entry only while it is masked), and with its pending
  // bit set delivers it now.
  for (uint16_t v : touched) {
    if (!deliverable(v)) continue;
    sync_route(v);
    if (pending_[v]) {
      pending_[v] = false;
      deliver(v);
    }
  }
}

void Msix::pba_read(uint64_t offset, std::span<uint8_t> data) const {
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i - pba_offset_;
    data[i] = 0;
    if (offset + i < pba_offset_ || at >= pba_size()) continue;
    for (unsigned bit = 0; bit < 8; ++bit) {
      const uint64_t v = at * 8 + bit;
      if (v < pending_.size() && pending_[v]) data[i] |= static_cast<uint8_t>(1u << bit);
    }
  }
}

bool Msix::vector_masked(uint16_t vector) const { return vector >= entries_.size() || (entries_[vector].control & 1); }

bool Msix::pending(uint16_t vector) const { return vector < pending_.size() && pending_[vector]; }

bool Msix::deliverable(uint16_t vector) const { return enabled_ && !function_masked_ && !vector_masked(vector); }

void Msix::set_msi_router(MsiRouter* router) {
  routes_.clear();  // releases the old router's routes
  router_ = router;
  if (!router_) return;
  routes_.resize(entries_.size());
  sync_unmasked_routes();
}

size_t Msix::routed_vectors() const {
  return static_cast<size_t>(
      std::count_if(routes_.begin(), routes_.end(), [](const VectorRoute& r) { return r.route != nullptr; }));
}

bool Msix::sync_route(uint16_t vector) {
  if (!router_) return false;
  const Entry& e = entries_[vector];
  const uint64_t address = uint64_t{e.address_high} << 32 | e.address_low;
  VectorRoute& r = routes_[vector];
  if ((r.route || r.failed) && r.address == address && r.data == e.data) return r.route != nullptr;
  r.address = address;
  r.data = e.data;
  Result<void> bound = ok();
  if (r.route) {
    bound = r.route->retarget(address, e.data);
    // A route still bound to the old message must never fire for this one.
    if (!bound) r.route.reset();
  } else {
    auto created = router_->create_route(address, e.data);
    if (created) {
      r.route = std::move(created).value();
    } else {
      bound = std::move(created).error();
    }
  }
  r.failed = !r.route;
  if (r.failed)
    HV_LOG_WARN_LIMITED("MSI-X vector {}: no fast route ({}); it is delivered through the interrupt controller", vector,
                        bound.error().message());
  return !r.failed;
}

void Msix::sync_unmasked_routes() {
  if (!router_ || !enabled_ || function_masked_) return;
  for (uint16_t v = 0; v < entries_.size(); ++v)
    if (!vector_masked(v)) sync_route(v);
}

bool Msix::signal(uint16_t vector) {
  if (!enabled_ || vector >= entries_.size()) return false;
  if (function_masked_ || vector_masked(vector)) {
    pending_[vector] = true;
    return true;
  }
  deliver(vector);
  return true;
}

void Msix::deliver(uint16_t vector) {
  // The route is re-bound first if the guest changed the entry while it was
  // unmasked (the spec leaves that undefined; we deliver the new message).
  if (sync_route(vector)) {
    routes_[vector].route->fire();
    return;
  }
  if (!interrupts_) return;
  const Entry& e = entries_[vector];
  interrupts_->signal_msi(uint64_t{e.address_high} << 32 | e.address_low, e.data);
}

void Msix::deliver_unmasked_pending() {
  if (!enabled_ || function_masked_) return;
  for (uint16_t v = 0; v < entries_.size(); ++v) {
    if (pending_[v] && !vector_masked(v)) {
      pending_[v] = false;
      deliver(v);
    }
  }
}

Msix::State Msix::save() const { return State{entries_, pending_}; }

Result<void> Msix::restore(const State& state) {
  if (state.entries.size() != entries_.size() || state.pending.size() != pending_.size())
    return Error(ErrorCode::kCorrupt, "snapshot MSI-X table has " + std::to_string(state.entries.size()) +
                                          " vectors, the device has " + std::to_string(entries_.size()));
  entries_ = state.entries;
  for (auto& e : entries_) e.control &= 1;
  pending_ = state.pending;
  // The messages changed underneath the routes: bind them again on use.
  routes_.clear();
  if (router_) routes_.resize(entries_.size());
  return ok();
}

void Msix::reset(PciConfigSpace& config) {
  for (auto& e : entries_) e = Entry{};
  std::fill(pending_.begin(), pending_.end(), false);
  enabled_ = false;
  function_masked_ = false;
  routes_.clear();  // every vector is masked again: release the backend's routes
  if (router_) routes_.resize(entries_.size());
  if (cap_offset_ != 0) config.set_raw_u16(cap_offset_ + 2, static_cast<uint16_t>(entries_.size() - 1));
}

void Msix::encode_state(StateWriter& out, const State& s) {
  out.put(static_cast<uint32_t>(s.entries.size()));
  for (const State::Entry& e : s.entries) {
    out.put(e.address_low);
    out.put(e.address_high);
    out.put(e.data);
    out.put(e.control);
  }
  out.put(static_cast<uint32_t>(s.pending.size()));
  for (bool pending : s.pending) out.put_bool(pending);
}

Msix::State Msix::decode_state(StateReader& in) {
  State s;
  const uint32_t entries = in.get<uint32_t>();
  if (entries > 2048) in.fail("MSI-X table of " + std::to_string(entries) + " entries");  // the PCI maximum
  for (uint32_t i = 0; i < entries && in.ok(); ++i) {
    State::Entry e;
    e.address_low = in.get<uint32_t>();
    e.address_high = in.get<uint32_t>();
    e.data = in.get<uint32_t>();
    e.control = in.get<uint32_t>();
    s.entries.push_back(e);
  }
  const uint32_t pending = in.get<uint32_t>();
  if (pending > 2048) in.fail("MSI-X pending array of " + std::to_string(pending) + " bits");
  for (uint32_t i = 0; i < pending && in.ok(); ++i) s.pending.push_back(in.get_bool());
  return s;
}

}  // namespace hostvisor
