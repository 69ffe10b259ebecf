#include "devices/fw_cfg/fw_cfg.h"

#include <algorithm>
#include <cstring>

namespace hostvisor {

namespace {

uint32_t load_be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

void store_be32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// The item a selector names: the write-channel bit selects nothing different.
uint16_t item_key(uint16_t selector) { return selector & static_cast<uint16_t>(~fw_cfg::kWriteChannel); }

std::vector<uint8_t> le_bytes(uint64_t value, size_t size) {
  std::vector<uint8_t> out(size);
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<uint8_t>(value >> (8 * i));
  return out;
}

}  // namespace

FwCfg::FwCfg(GuestMemory& memory) : memory_(memory) {
  items_[fw_cfg::kSignature] = {'Q', 'E', 'M', 'U'};
  items_[fw_cfg::kId] = le_bytes(fw_cfg::kIdTraditional | fw_cfg::kIdDma, 4);
  rebuild_directory();
}

Result<void> FwCfg::set_item(uint16_t key, std::vector<uint8_t> data) {
  if (key & fw_cfg::kWriteChannel)
    return Error(ErrorCode::kInternal, "fw_cfg: key " + std::to_string(key) + " has the write-channel bit");
  const uint16_t index = key & static_cast<uint16_t>(~fw_cfg::kArchLocal);
  if (!(key & fw_cfg::kArchLocal) && index >= fw_cfg::kFileFirst)
    return Error(ErrorCode::kInternal, "fw_cfg: key " + std::to_string(key) + " is a file's; use add_file()");
  if (data.size() > UINT32_MAX) return Error(ErrorCode::kOutOfRange, "fw_cfg: item larger than 4 GiB");
  std::lock_guard lock(mutex_);
  items_[key] = std::move(data);
  return {};
}

Result<uint16_t> FwCfg::add_file(const std::string& name, std::vector<uint8_t> data) {
  if (name.empty() || name.size() >= fw_cfg::kFileNameSize || name.find('\0') != std::string::npos)
    return Error(ErrorCode::kInvalidArgument, "fw_cfg: file name \"" + name + "\" must be 1 to " +
                                                  std::to_string(fw_cfg::kFileNameSize - 1) + " characters");
  if (data.size() > UINT32_MAX) return Error(ErrorCode::kOutOfRange, "fw_cfg: file " + name + " is larger than 4 GiB");
  std::lock_guard lock(mutex_);
  if (files_.count(name)) return Error(ErrorCode::kBusy, "fw_cfg: file " + name + " is already there");
  if (next_file_key_ >= fw_cfg::kFileFirst + fw_cfg::kMaxFiles)
    return Error(ErrorCode::kOutOfRange, "fw_cfg: no room for file " + name);
  const uint16_t key = next_file_key_++;
  files_[name] = key;
  items_[key] = std::move(data);
  rebuild_directory();
  return key;
}

void FwCfg::rebuild_directory() {
  std::vector<uint8_t> dir(4 + files_.size() * fw_cfg::kFileEntrySize);
  store_be32(dir.data(), static_cast<uint32_t>(files_.size()));
  size_t at = 4;
  for (const auto& [name, key] : files_) {
    uint8_t* entry = dir.data() + at;
    store_be32(entry, static_cast<uint32_t>(items_[key].size()));
    entry[4] = static_cast<uint8_t>(key >> 8);
    entry[5] = static_cast<uint8_t>(key);
    std::memcpy(entry + 8, name.data(), name.size());  // the rest of the 56 bytes stays NUL
    at += fw_cfg::kFileEntrySize;
  }
  items_[fw_cfg::kFileDir] = std::move(dir);
}

std::vector<uint8_t> FwCfg::item(uint16_t key) const {
  std::lock_guard lock(mutex_);
  auto it = items_.find(item_key(key));
  return it == items_.end() ? std::vector<uint8_t>{} : it->second;
}

std::optional<uint16_t> FwCfg::file_key(const std::string& name) const {
  std::lock_guard lock(mutex_);
  auto it = files_.find(name);
  if (it == files_.end()) return std::nullopt;
  return it->second;
}

void FwCfg::select(uint16_t selector) {
  selector_ = selector;
  offset_ = 0;
}

const std::vector<uint8_t>* FwCfg::selected() const {
  auto it = items_.find(item_key(selector_));
  return it == items_.end() ? nullptr : &it->second;
}

void FwCfg::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mutex_);
  if (offset == fw_cfg::kDataOffset && data.size() == 1) {
    const auto* item = selected();
    if (item && offset_ < item->size()) {
      data[0] = (*item)[offset_++];
    } else {
      data[0] = 0;  // past the end, or nothing selected
    }
    return;
  }
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i;
    data[i] = at >= fw_cfg::kDmaOffset && at < fw_cfg::kDmaOffset + sizeof fw_cfg::kDmaSignature
                  ? static_cast<uint8_t>(fw_cfg::kDmaSignature[at - fw_cfg::kDmaOffset])
                  : 0;
  }
}

void FwCfg::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mutex_);
  if (offset == fw_cfg::kSelectorOffset && data.size() == 2) {
    select(static_cast<uint16_t>(data[0] | data[1] << 8));
    return;
  }
  // The DMA address is big-endian: the bytes arrive in the order the guest
  // wrote them, most significant first. Writing the low half starts the
  // transfer.
  uint64_t dma_address = 0;
  if (offset == fw_cfg::kDmaOffset && data.size() == 4) {
    dma_address_high_ = load_be32(data.data());
    return;
  }
  if (offset == fw_cfg::kDmaOffset + 4 && data.size() == 4) {
    dma_address = uint64_t{dma_address_high_} << 32 | load_be32(data.data());
  } else if (offset == fw_cfg::kDmaOffset && data.size() == 8) {
    dma_address = uint64_t{load_be32(data.data())} << 32 | load_be32(data.data() + 4);
  } else {
    return;  // data-port writes have been ignored since QEMU 2.4; other sizes do nothing
  }
  // Like QEMU, the next address starts from a cleared high half.
  dma_address_high_ = 0;
  run_dma(dma_address);
}

void FwCfg::run_dma(uint64_t address) {
  uint8_t descriptor[fw_cfg::kDmaDescriptorSize];
  if (!memory_.read(GuestAddress(address), descriptor)) return;  // nowhere to report the error
  uint32_t control = load_be32(descriptor);
  const uint32_t length = load_be32(descriptor + 4);
  const uint64_t buffer = uint64_t{load_be32(descriptor + 8)} << 32 | load_be32(descriptor + 12);

  if (control & fw_cfg::kDmaSelect) select(static_cast<uint16_t>(control >> 16));
  const bool ok = transfer(control, length, buffer);
  control = ok ? 0 : fw_cfg::kDmaError;
  uint8_t result[4];
  store_be32(result, control);
  if (memory_.write(GuestAddress(address), result)) memory_.note_dma_write(GuestAddress(address), sizeof result);
}

bool FwCfg::transfer(uint32_t control, uint32_t length, uint64_t buffer) {
  const auto* item = selected();
  const uint64_t size = item ? item->size() : 0;
  const uint64_t available = offset_ < size ? size - offset_ : 0;
  // The precedence QEMU gives the bits: read, then write, then skip.
  if (control & fw_cfg::kDmaRead) {
    const uint64_t from_item = std::min<uint64_t>(length, available);
    if (from_item > 0 &&
        !memory_.write(GuestAddress(buffer), std::span(item->data() + offset_, static_cast<size_t>(from_item))))
      return false;
    // Past the end of the item the buffer is filled with zeros; the check
    // is on the guest's range, so a huge length costs nothing but a fill.
    if (length > from_item &&
        (buffer + from_item < buffer || !memory_.fill(GuestAddress(buffer + from_item), 0, length - from_item)))
      return false;
    memory_.note_dma_write(GuestAddress(buffer), length);
    offset_ += static_cast<uint32_t>(from_item);
    return true;
  }
  if (control & fw_cfg::kDmaWrite) return length == 0;  // no item is writable
  if (control & fw_cfg::kDmaSkip) {
    offset_ += static_cast<uint32_t>(std::min<uint64_t>(length, available));
    return true;
  }
  return true;  // select only, or nothing at all
}

FwCfg::State FwCfg::save() const {
  std::lock_guard lock(mutex_);
  return State{selector_, offset_, dma_address_high_};
}

Result<void> FwCfg::restore(const State& state) {
  std::lock_guard lock(mutex_);
  auto it = items_.find(item_key(state.selector));
  const uint64_t size = it == items_.end() ? 0 : it->second.size();
  if (state.offset > size)
    return Error(ErrorCode::kCorrupt, "fw_cfg: snapshot offset " + std::to_string(state.offset) +
                                          " is past the end of item " + std::to_string(state.selector) + " (" +
                                          std::to_string(size) + " bytes); the snapshot is damaged");
  selector_ = state.selector;
  offset_ = state.offset;
  dma_address_high_ = state.dma_address_high;
  return {};
}

void FwCfg::encode_state(StateWriter& out, const State& state) {
  out.put(state.selector);
  out.put(state.offset);
  out.put(state.dma_address_high);
}

FwCfg::State FwCfg::decode_state(StateReader& in) {
  State state;
  state.selector = in.get<uint16_t>();
  state.offset = in.get<uint32_t>();
  state.dma_address_high = in.get<uint32_t>();
  return state;
}

}  // namespace hostvisor
