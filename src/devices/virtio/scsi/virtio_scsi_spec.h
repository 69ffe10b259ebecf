// Numbers and layouts of the virtio SCSI host device from the virtio 1.2
// specification (OASIS), section 5.6.
#pragma once

#include <cstdint>

namespace hostvisor::virtio_scsi {

inline constexpr uint32_t kDeviceType = 8;

// 5.6.2 queues: control, event, then the request queues.
inline constexpr uint16_t kControlQueue = 0;
inline constexpr uint16_t kEventQueue = 1;
inline constexpr uint16_t kRequestQueue = 2;

// The sizes a driver gets unless it writes others to the config (5.6.4).
inline constexpr uint32_t kDefaultCdbSize = 32;
inline constexpr uint32_t kDefaultSenseSize = 96;
// Largest sizes accepted from the driver: what the fields' users allow.
inline constexpr uint32_t kMaxCdbSize = 256;
inline constexpr uint32_t kMaxSenseSize = 256;

// 5.6.4 struct virtio_scsi_config.
struct __attribute__((packed)) Config {
  uint32_t num_queues;
  uint32_t seg_max;
  uint32_t max_sectors;
  uint32_t cmd_per_lun;
  uint32_t event_info_size;
  uint32_t sense_size;
  uint32_t cdb_size;
  uint16_t max_channel;
  uint16_t max_target;
  uint32_t max_lun;
};
static_assert(sizeof(Config) == 36);
inline constexpr uint64_t kConfigSenseSizeOffset = 20;
inline constexpr uint64_t kConfigCdbSizeOffset = 24;

// 5.6.6.1 struct virtio_scsi_req_cmd: the device-readable part before the
// CDB (lun[8], id, task_attr, prio, crn), and the device-writable response
// before the sense bytes (sense_len, residual, status_qualifier, status,
// response).
inline constexpr uint32_t kCommandHeaderBytes = 8 + 8 + 1 + 1 + 1;
inline constexpr uint32_t kResponseHeaderBytes = 4 + 4 + 2 + 1 + 1;

// Response codes (5.6.6.1).
inline constexpr uint8_t kResponseOk = 0;
inline constexpr uint8_t kResponseOverrun = 1;
inline constexpr uint8_t kResponseBadTarget = 3;
inline constexpr uint8_t kResponseFailure = 9;
inline constexpr uint8_t kResponseFunctionComplete = 0;
inline constexpr uint8_t kResponseFunctionRejected = 11;

// 5.6.6.2 control queue requests.
inline constexpr uint32_t kControlTmf = 0;
inline constexpr uint32_t kControlAnQuery = 1;
inline constexpr uint32_t kControlAnSubscribe = 2;
// A TMF: type, subtype, lun[8], id; then the device writes one response byte.
inline constexpr uint32_t kTmfRequestBytes = 4 + 4 + 8 + 8;
// An asynchronous-notification query or subscription: type, lun[8],
// event_requested; then the device writes event_actual and a response byte.
inline constexpr uint32_t kAnRequestBytes = 4 + 8 + 4;
inline constexpr uint32_t kAnResponseBytes = 4 + 1;

}  // namespace hostvisor::virtio_scsi
