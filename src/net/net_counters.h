// Traffic counters of one NIC's backend, from the guest's side: tx is what
// the guest sent, rx what it was handed. Dropped counts packets lost on the
// way (a full queue, a malformed or unsupported packet).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace hostvisor::net {

struct NetCounters {
  uint64_t tx_packets = 0;
  uint64_t tx_bytes = 0;
  uint64_t tx_dropped = 0;
  uint64_t rx_packets = 0;
  uint64_t rx_bytes = 0;
  uint64_t rx_dropped = 0;
};

// The live counters, bumped by whichever thread moves the packet and read
// by any (a log line at exit, the API).
class AtomicNetCounters {
 public:
  void count_tx(uint64_t bytes) { add(tx_packets_, 1), add(tx_bytes_, bytes); }
  void count_tx_drop() { add(tx_dropped_, 1); }
  void count_rx(uint64_t bytes) { add(rx_packets_, 1), add(rx_bytes_, bytes); }
  void count_rx_drop() { add(rx_dropped_, 1); }

  NetCounters read() const {
    auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    return {get(tx_packets_), get(tx_bytes_), get(tx_dropped_), get(rx_packets_), get(rx_bytes_), get(rx_dropped_)};
  }

 private:
  static void add(std::atomic<uint64_t>& a, uint64_t n) { a.fetch_add(n, std::memory_order_relaxed); }
  std::atomic<uint64_t> tx_packets_{0}, tx_bytes_{0}, tx_dropped_{0};
  std::atomic<uint64_t> rx_packets_{0}, rx_bytes_{0}, rx_dropped_{0};
};

// "tx 12 packets 3456 bytes 0 dropped, rx ...": for the log line at exit.
inline std::string format_net_counters(const NetCounters& c) {
  return "tx " + std::to_string(c.tx_packets) + " packets " + std::to_string(c.tx_bytes) + " bytes " +
         std::to_string(c.tx_dropped) + " dropped, rx " + std::to_string(c.rx_packets) + " packets " +
         std::to_string(c.rx_bytes) + " bytes " + std::to_string(c.rx_dropped) + " dropped";
}

}  // namespace hostvisor::net
