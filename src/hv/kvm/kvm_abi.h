// The KVM ioctls whose argument ends in a variable-length array.
//
// The uapi headers declare those arrays with __DECLARE_FLEX_ARRAY, which in
// C++ (Linux 6.1 headers) wraps them with an empty struct of size 1: the
// array moves from offset 8 to 12 and sizeof() grows to 12, so both the
// layout and the ioctl numbers (which encode the size) come out wrong.
// These headers have the kernel's real layout; the array follows at offset 8.
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace hostvisor::kvm {

struct KvmCpuidHeader {  // struct kvm_cpuid2
  uint32_t nent;
  uint32_t padding;
};
struct KvmMsrsHeader {  // struct kvm_msrs
  uint32_t nmsrs;
  uint32_t pad;
};
struct KvmIrqRoutingHeader {  // struct kvm_irq_routing
  uint32_t nr;
  uint32_t flags;
};
struct KvmMsrListHeader {  // struct kvm_msr_list
  uint32_t nmsrs;
};
// struct kvm_xsave: its first 4096 bytes; KVM_GET_XSAVE2 writes as many more
// as KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) says (the ioctl number keeps 4096).
struct KvmXsave {
  uint32_t region[1024];
};
static_assert(sizeof(KvmCpuidHeader) == 8 && sizeof(KvmMsrsHeader) == 8 && sizeof(KvmIrqRoutingHeader) == 8);
static_assert(sizeof(KvmMsrListHeader) == 4 && sizeof(KvmXsave) == 4096);

inline constexpr unsigned long kKvmGetSupportedCpuid = _IOWR(KVMIO, 0x05, KvmCpuidHeader);
inline constexpr unsigned long kKvmSetCpuid2 = _IOW(KVMIO, 0x90, KvmCpuidHeader);
inline constexpr unsigned long kKvmGetMsrs = _IOWR(KVMIO, 0x88, KvmMsrsHeader);
inline constexpr unsigned long kKvmSetMsrs = _IOW(KVMIO, 0x89, KvmMsrsHeader);
inline constexpr unsigned long kKvmSetGsiRouting = _IOW(KVMIO, 0x6a, KvmIrqRoutingHeader);
inline constexpr unsigned long kKvmGetMsrIndexList = _IOWR(KVMIO, 0x02, KvmMsrListHeader);
inline constexpr unsigned long kKvmGetXsave = _IOR(KVMIO, 0xa4, KvmXsave);
inline constexpr unsigned long kKvmSetXsave = _IOW(KVMIO, 0xa5, KvmXsave);
inline constexpr unsigned long kKvmGetXsave2 = _IOR(KVMIO, 0xcf, KvmXsave);
// The numbers a C compiler computes from the uapi header (size field 8).
static_assert(kKvmGetSupportedCpuid == 0xc008ae05ul && kKvmSetCpuid2 == 0x4008ae90ul);
static_assert(kKvmGetMsrs == 0xc008ae88ul && kKvmSetMsrs == 0x4008ae89ul && kKvmSetGsiRouting == 0x4008ae6aul);
static_assert(kKvmGetMsrIndexList == 0xc004ae02ul && kKvmGetXsave == 0x9000aea4ul && kKvmSetXsave == 0x5000aea5ul &&
              kKvmGetXsave2 == 0x9000aecful);

// A header followed by `count` entries, in 8-byte aligned storage.
template <typename Header, typename Entry>
class FlexibleArray {
 public:
  explicit FlexibleArray(size_t count) : storage_((sizeof(Header) + count * sizeof(Entry) + 7) / 8) {
    static_assert(alignof(Entry) <= 8 && sizeof(Header) % alignof(Entry) == 0);
  }
  Header* header() { return reinterpret_cast<Header*>(storage_.data()); }
  Entry* entries() { return reinterpret_cast<Entry*>(reinterpret_cast<uint8_t*>(storage_.data()) + sizeof(Header)); }
  void* data() { return storage_.data(); }

 private:
  std::vector<uint64_t> storage_;
};

}  // namespace hostvisor::kvm
