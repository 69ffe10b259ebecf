// Skips the kvm variant of a test, loudly, on a host whose /dev/kvm is
// missing or not accessible: a skipped kvm test must never pass unnoticed.
#pragma once

#include <gtest/gtest.h>

#include "hv/accel.h"

// In a test body or SetUp(); `what` names the test in the message.
#define HV_SKIP_WITHOUT_DEV_KVM(what)                                                                             \
  do {                                                                                                            \
    const ::hostvisor::HostVirtualization host_ = ::hostvisor::probe_host_virtualization();                       \
    if (!host_.dev_kvm_usable)                                                                                    \
      GTEST_SKIP() << "\n*** /dev/kvm is missing or not accessible (" << host_.dev_kvm_problem << "): " << (what) \
                   << " did NOT run. ***";                                                                        \
  } while (0)
