// Moved to devices/virtio/testing/, with the layer's other test helpers.
// Kept only until src/vmm/console_test.cpp (outside the virtio layer)
// includes the new path; nothing in devices/virtio includes this one.
#pragma once

#include "devices/virtio/testing/virtqueue_test_driver.h"

namespace hostvisor {
using testing::VirtqueueTestDriver;
}  // namespace hostvisor
