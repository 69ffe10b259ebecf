// virtio socket device (virtio 1.2, 5.10) in userspace, no vhost-vsock: the
// guest's stream sockets to the host (CID 2) become unix stream sockets on
// the host, the protocol Firecracker and Cloud Hypervisor use:
//
//  - host-initiated: a host program connects to the listener at uds_path
//    and writes "CONNECT <port>\n"; the device sends the guest a REQUEST for
//    that port and, once the guest answers RESPONSE, writes "OK <host
//    port>\n" back; from then on the socket carries the stream. A guest that
//    refuses (RST), or a driver that is not running, closes the socket, and
//    so does a guest that has not answered within connect_timeout;
//  - guest-initiated: a REQUEST to host port P connects to the listener at
//    uds_path + "_P"; none there, or it refuses: RST.
//
// Queues: rx (0) carries packets to the guest, tx (1) the guest's packets,
// event (2) the TRANSPORT_RESET event after a snapshot restore. Control
// packets (RESPONSE, RST, SHUTDOWN, CREDIT_UPDATE, REQUEST) go first, then
// data, round-robin over the streams whose host socket is readable and whose
// guest has credit. Flow control is the spec's (see VsockCredit): each
// stream's guest->host buffer is kBufferAlloc bytes at most, and while more
// than kMaxPendingControl control packets wait for rx buffers the device
// stops taking tx packets, so neither a flooding guest nor one that posts no
// rx buffers grows host memory without bound.
//
// Anything malformed gets an RST: a wrong CID, a type other than STREAM, an
// unknown op, a packet for no stream, a length beyond the descriptors or
// beyond the credit given. The device never fails for a guest's packet;
// only a broken ring (the core's checks) needs a reset.
//
// Host sockets are non-blocking and edge-triggered in an epoll set of the
// device's own: the VMM's event loop watches host_fd() and calls
// process_host() on its thread. No thread per stream.
//
// Snapshots: the state is the guest CID and the next host port; streams are
// not saved. A restored device (or one given a clone's CID) sends the guest
// TRANSPORT_RESET, on which Linux's driver reads the CID again and resets
// every connected socket it has (marks it closed with ECONNRESET), without
// a packet to us. A host CONNECT whose
// REQUEST reached the guest before that reset would be reset with them, so
// host CONNECTs are held (kHeld) from the moment the event is queued until
// the driver has finished with it: the driver posts a fresh event buffer
// after handling an event (Linux refills after its handler returns, and the
// device asks for a notification at that entry), which is the signal. The
// config read comes too early to be one: Linux reads the CID before it
// resets the sockets. A driver that never finishes does not hold
// connections forever: a held one is closed at its connect_timeout, and the
// device stops holding until the next reset. Host ports go on from the saved
// one after a restore, so a REQUEST never reuses a port pair the guest may
// still hold from before the snapshot (a reset socket stays in its table
// until the program closes it, and it answers a REQUEST with an RST).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/fd.h"
#include "devices/virtio/virtio_device_core.h"
#include "devices/virtio/vsock/virtio_vsock_spec.h"
#include "devices/virtio/vsock/vsock_credit.h"

namespace hostvisor {

struct VirtioVsockOptions {
  uint64_t guest_cid = 3;
  std::string uds_path;  // the host side's listener; PATH_<port> for guest-initiated streams
  uint16_t queue_size = 256;
  // How long a host-initiated stream waits for the guest's RESPONSE or RST
  // (a guest whose driver is stuck) before the host program's socket is
  // closed and the guest gets an RST. It counts from the CONNECT line, so it
  // also bounds the wait of a CONNECT held for a TRANSPORT_RESET.
  std::chrono::milliseconds connect_timeout{10000};
};

class VirtioVsock : public VirtioDeviceCore {
 public:
  // Each stream's guest->host buffer: the credit the guest gets.
  static constexpr uint32_t kBufferAlloc = 256 * 1024;
  // Streams at once (host-initiated ones waiting for their CONNECT line
  // included); more are refused. Bounds host memory to about
  // kMaxStreams * kBufferAlloc.
  static constexpr size_t kMaxStreams = 256;
  // Control packets waiting for rx buffers beyond which tx stops.
  static constexpr size_t kMaxPendingControl = 512;
  // The largest payload one packet carries either way (Linux's
  // VIRTIO_VSOCK_MAX_PKT_BUF_SIZE); a longer one is malformed.
  static constexpr uint32_t kMaxPayload = 64 * 1024;
  // Where host-initiated streams' host ports start (above any a guest
  // listens on by convention, so "OK <port>" is recognisable).
  static constexpr uint32_t kFirstHostPort = 1u << 30;

  // Validates the CID and listens at options.uds_path.
  static Result<std::shared_ptr<VirtioVsock>> create(VirtioVsockOptions options);
  ~VirtioVsock() override;

  // The fd the event loop watches; process_host() when it is readable.
  int host_fd() const { return epoll_.get(); }
  void process_host();

  uint64_t guest_cid() const;
  // A new CID (a clone's), before the guest runs: the guest hears of it
  // through a TRANSPORT_RESET event.
  void set_guest_cid(uint64_t cid);
  // Streams open now (tests, the log).
  size_t stream_count() const;

  struct State {
    uint64_t guest_cid = 0;
    // The host port the next host-initiated stream takes (version 2; 0 when
    // restored from version 1, which did not save it).
    uint32_t next_host_port = 0;
  };
  // 2: next_host_port. Version 1 (the CID alone) is still read.
  static constexpr uint32_t kStateVersion = 2;
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in, uint32_t version = kStateVersion);
  // Host-initiated streams whose REQUEST waits for the guest's driver to
  // finish a TRANSPORT_RESET (tests, the log).
  size_t held_connect_count() const;
  uint32_t state_version() const override { return kStateVersion; }
  void save_state(StateWriter& out) const override;
  Result<void> restore_state(StateReader& in, uint32_t version) override;

  std::string_view name() const override { return "vsock"; }
  uint32_t device_type() const override { return virtio_vsock::kDeviceType; }
  uint64_t device_features() const override;
  uint32_t config_size() const override { return sizeof(virtio_vsock::Config); }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;

 private:
  // A stream by its ports: the host's (the listener's port P for a guest-
  // initiated stream, one we picked for a host-initiated one), the guest's.
  struct Key {
    uint32_t host_port;
    uint32_t guest_port;
    auto operator<=>(const Key&) const = default;
  };
  enum class StreamState {
    kHeld,         // host-initiated: REQUEST waits for the driver to finish a TRANSPORT_RESET
    kConnecting,   // host-initiated: REQUEST queued or sent, no RESPONSE yet
    kEstablished,  // data may flow
  };
  struct Stream {
    explicit Stream(UniqueFd socket) : fd(std::move(socket)) {}
    UniqueFd fd;
    StreamState state = StreamState::kConnecting;
    std::chrono::steady_clock::time_point connect_deadline;  // kConnecting, host-initiated
    vsock::VsockCredit credit{kBufferAlloc};
    std::vector<uint8_t> to_host;      // guest bytes the host socket has not taken yet
    size_t to_host_sent = 0;           // of which the first this many went already
    bool host_readable = false;        // the socket may have bytes (edge-triggered)
    bool host_eof = false;             // the host program sent its last byte: SHUTDOWN(SEND) queued
    bool guest_sent_all = false;       // guest's SHUTDOWN(SEND): shut the socket's write side once flushed
    bool guest_reads_no_more = false;  // guest's SHUTDOWN(RECEIVE): stop reading the socket
    bool closing = false;              // guest shut both ways: RST and close once flushed
    bool update_queued = false;        // a CREDIT_UPDATE waits in control_
  };
  // What an fd in the epoll set is.
  struct Watched {
    enum Kind { kListener, kConnectLine, kStream, kConnectTimer } kind;
    Key key{};  // kStream
  };
  struct Control {
    Key key;
    uint16_t op;
    uint32_t flags = 0;
  };

  VirtioVsock(VirtioVsockOptions options, UniqueFd epoll, UniqueFd listener, UniqueFd connect_timer);

  void on_reset() override;
  void serve_queue(uint16_t queue) override;

  // tx: the guest's packets.
  void serve_tx();
  void handle_packet(const DescriptorChain& chain);
  void guest_connect(const virtio_vsock::Header& header);
  void guest_data(Stream& stream, const Key& key, const DescriptorChain& chain, uint32_t length);
  void guest_shutdown(Stream& stream, const Key& key, uint32_t flags);
  // rx: packets to the guest, control first, then data.
  void serve_rx();
  void send_control(const Control& control, const DescriptorChain& chain);
  // Reads the next readable stream's socket into `chain`: true if `chain` was used.
  bool send_data(const DescriptorChain& chain);
  void serve_events();
  // Host CONNECTs wait while a TRANSPORT_RESET is queued or the driver has
  // not finished with it.
  bool holding_connects() const { return (reset_event_due_ || reset_ack_avail_) && !hold_abandoned_; }
  // Queues a TRANSPORT_RESET (restore, new CID).
  void queue_transport_reset();
  // Has the driver posted an event buffer since it took the reset event?
  // Then it is done with it: the held CONNECTs go out.
  void check_reset_done();
  void release_held_connects();
  void write_packet(const DescriptorChain& chain, const Key& key, uint16_t op, uint32_t flags,
                    std::span<const uint8_t> payload);

  // Host side.
  void accept_host_connections();
  void read_connect_line(int fd);
  void stream_event(const Key& key, uint32_t events);
  // Writes what the host socket takes of to_host; false if the socket failed.
  bool flush_to_host(Stream& stream);
  // After a flush: credit update, a write-side shutdown or the close the guest asked for.
  void after_flush(Stream& stream, const Key& key);
  Result<void> watch(int fd, Watched what, uint32_t events);
  void unwatch(int fd);
  void close_connect_line(int fd);
  // Resets the host-initiated streams the guest left unanswered too long
  // and arms the timer for the next deadline.
  void expire_connects();
  void arm_connect_timer(std::chrono::steady_clock::time_point deadline);

  // Queues a control packet; RST also drops the stream.
  void queue_control(const Key& key, uint16_t op, uint32_t flags = 0);
  void reset_stream(const Key& key);
  // An RST answering a packet for which there is no stream to drop.
  void answer_rst(const virtio_vsock::Header& header);
  void drop_stream(const Key& key);
  void drop_all_streams();
  Key free_host_key(uint32_t guest_port);

  const VirtioVsockOptions options_;
  UniqueFd epoll_;
  UniqueFd listener_;
  UniqueFd connect_timer_;  // timerfd: the earliest connect_deadline

  // --- guarded by the core's mutex_
  uint64_t guest_cid_;
  std::map<Key, Stream> streams_;
  std::unordered_map<int, Watched> watched_;
  std::unordered_map<int, UniqueFd> connect_lines_;  // host programs yet to send CONNECT
  std::deque<Control> control_;
  std::optional<Key> last_served_;  // round-robin position of the data path
  uint32_t next_host_port_ = kFirstHostPort;
  bool tx_stalled_ = false;       // tx stopped for a full control_ queue
  bool reset_event_due_ = false;  // TRANSPORT_RESET for the guest
  // The reset event went out and the driver has not posted an event buffer
  // since: the event queue's avail->idx when it went out.
  std::optional<uint16_t> reset_ack_avail_;
  bool hold_abandoned_ = false;    // a held CONNECT timed out: hold no more until the next reset
  std::deque<Key> held_connects_;  // kHeld streams, oldest first
  bool accept_stalled_ = false;    // the listener has connections we did not take (kMaxStreams)
  bool connect_timer_armed_ = false;
  std::vector<uint8_t> scratch_;
};

}  // namespace hostvisor
