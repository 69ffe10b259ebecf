#include "agent/qga/qga_replies.h"

#include "agent/qga/base64.h"

namespace hostvisor::agent::qga {

using nlohmann::json;

namespace {

constexpr size_t kMaxInterfaces = 256;
constexpr size_t kMaxAddresses = 64;
constexpr size_t kMaxFilesystems = 256;

Error corrupt(const std::string& what) {
  return Error(ErrorCode::kCorrupt, "qemu-guest-agent sent a bad reply: " + what);
}

// What the agent says, fit for one line of a terminal.
std::string printable(const std::string& text) {
  std::string out;
  for (char c : text.substr(0, 200)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (text.size() > 200) out += "...";
  return out;
}

const json* member(const json& object, const char* name) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(name);
  return it == object.end() ? nullptr : &*it;
}

Result<std::string> string_member(const json& object, const char* name, bool required = true) {
  const json* value = member(object, name);
  if (!value) {
    if (required) return corrupt(std::string("no \"") + name + "\"");
    return std::string();
  }
  if (!value->is_string()) return corrupt(std::string("\"") + name + "\" is not a string");
  const auto& text = value->get_ref<const std::string&>();
  if (text.size() > kMaxReplyString) return corrupt(std::string("\"") + name + "\" is too long");
  return text;
}

Result<int64_t> integer_member(const json& object, const char* name, int64_t min, int64_t max) {
  const json* value = member(object, name);
  if (!value) return corrupt(std::string("no \"") + name + "\"");
  if (!value->is_number_integer()) return corrupt(std::string("\"") + name + "\" is not an integer");
  // Unsigned values above INT64_MAX are out of range too.
  if (value->is_number_unsigned() && value->get<uint64_t>() > static_cast<uint64_t>(max))
    return corrupt(std::string("\"") + name + "\" out of range");
  const int64_t v = value->get<int64_t>();
  if (v < min || v > max) return corrupt(std::string("\"") + name + "\" out of range");
  return v;
}

Result<bool> bool_member(const json& object, const char* name, bool fallback) {
  const json* value = member(object, name);
  if (!value) return fallback;
  if (!value->is_boolean()) return corrupt(std::string("\"") + name + "\" is not a boolean");
  return value->get<bool>();
}

Result<std::vector<uint8_t>> base64_member(const json& object, const char* name, size_t max_bytes) {
  const json* value = member(object, name);
  if (!value) return std::vector<uint8_t>();
  if (!value->is_string()) return corrupt(std::string("\"") + name + "\" is not a string");
  const auto& text = value->get_ref<const std::string&>();
  if (text.size() / 4 * 3 > max_bytes + 2) return corrupt(std::string("\"") + name + "\" holds more than was asked");
  auto bytes = base64_decode(text);
  if (!bytes) return corrupt(std::string("\"") + name + "\" is not base64");
  if (bytes->size() > max_bytes) return corrupt(std::string("\"") + name + "\" holds more than was asked");
  return std::move(*bytes);
}

Result<const json*> return_of(const json& reply, json::value_t type) {
  const json* value = member(reply, "return");
  if (!value) return corrupt("no \"return\"");
  if (value->type() != type) return corrupt("\"return\" has the wrong type");
  return value;
}

}  // namespace

Result<json> reply_return(const json& reply) {
  if (const json* error = member(reply, "error")) {
    std::string desc = "no description";
    if (const json* d = member(*error, "desc"); d && d->is_string()) desc = d->get<std::string>();
    return Error(ErrorCode::kIo, "qemu-guest-agent: " + printable(desc));
  }
  const json* value = member(reply, "return");
  if (!value) return corrupt("neither \"return\" nor \"error\"");
  return *value;
}

bool is_sync_reply(const json& reply, int64_t id) {
  const json* value = member(reply, "return");
  return value && value->is_number_integer() && value->get<int64_t>() == id;
}

Result<std::string> decode_version(const json& reply) {
  const json* ret = HV_TRY(return_of(reply, json::value_t::object));
  return string_member(*ret, "version");
}

Result<void> decode_osinfo(const json& reply, AgentInfo& info) {
  const json* ret = HV_TRY(return_of(reply, json::value_t::object));
  info.kernel_release = HV_TRY(string_member(*ret, "kernel-release", false));
  info.os = HV_TRY(string_member(*ret, "pretty-name", false));
  if (info.os.empty()) info.os = HV_TRY(string_member(*ret, "name", false));
  if (info.os.empty()) info.os = "Linux";
  return ok();
}

Result<std::string> decode_host_name(const json& reply) {
  const json* ret = HV_TRY(return_of(reply, json::value_t::object));
  return string_member(*ret, "host-name");
}

Result<std::vector<InterfaceInfo>> decode_interfaces(const json& reply) {
  const json* ret = HV_TRY(return_of(reply, json::value_t::array));
  if (ret->size() > kMaxInterfaces) return corrupt(std::to_string(ret->size()) + " interfaces");
  std::vector<InterfaceInfo> interfaces;
  for (const json& entry : *ret) {
    InterfaceInfo nic;
    nic.name = HV_TRY(string_member(entry, "name"));
    nic.mac = HV_TRY(string_member(entry, "hardware-address", false));
    if (const json* addresses = member(entry, "ip-addresses")) {
      if (!addresses->is_array() || addresses->size() > kMaxAddresses) return corrupt("bad \"ip-addresses\"");
      for (const json& address : *addresses) {
        const std::string ip = HV_TRY(string_member(address, "ip-address"));
        const int64_t prefix = HV_TRY(integer_member(address, "prefix", 0, 128));
        nic.addresses.push_back(ip + "/" + std::to_string(prefix));
      }
    }
    interfaces.push_back(std::move(nic));
  }
  return interfaces;
}

Result<std::vector<FilesystemInfo>> decode_filesystems(const json& reply) {
  const json* ret = HV_TRY(return_of(reply, json::value_t::array));
  if (ret->size() > kMaxFilesystems) return corrupt(std::to_string(ret->size()) + " filesystems");
  std::vector<FilesystemInfo> filesystems;
  for (const json& entry : *ret) {
    FilesystemInfo fs;
    fs.mount_point = HV_TRY(string_member(entry, "mountpoint"));
    fs.type = HV_TRY(string_member(entry, "type"));
    fs.device = HV_TRY(string_member(entry, "name", false));
    // Sizes are optional (qemu-ga leaves them out where statvfs failed).
    if (member(entry, "total-bytes")) {
      fs.total_bytes = static_cast<uint64_t>(HV_TRY(integer_member(entry, "total-bytes", 0, INT64_MAX)));
      const int64_t used = member(entry, "used-bytes") ? HV_TRY(integer_member(entry, "used-bytes", 0, INT64_MAX)) : 0;
      fs.free_bytes = fs.total_bytes > static_cast<uint64_t>(used) ? fs.total_bytes - static_cast<uint64_t>(used) : 0;
    }
    filesystems.push_back(std::move(fs));
  }
  return filesystems;
}

Result<int64_t> decode_exec_pid(const json& reply) {
  const json* ret = HV_TRY(return_of(reply, json::value_t::object));
  return integer_member(*ret, "pid", 1, INT32_MAX);
}

Result<ExecStatus> decode_exec_status(const json& reply) {
  const json* ret = HV_TRY(return_of(reply, json::value_t::object));
  ExecStatus status;
  status.exited = HV_TRY(bool_member(*ret, "exited", false));
  if (!status.exited) return status;
  if (member(*ret, "exitcode")) status.exit_code = static_cast<int>(HV_TRY(integer_member(*ret, "exitcode", 0, 255)));
  if (member(*ret, "signal")) status.signal = static_cast<int>(HV_TRY(integer_member(*ret, "signal", 0, 127)));
  // qemu-ga keeps at most 16 MiB of each stream (GUEST_EXEC_MAX_OUTPUT).
  constexpr size_t kMaxOutput = 16 << 20;
  status.out = HV_TRY(base64_member(*ret, "out-data", kMaxOutput));
  status.err = HV_TRY(base64_member(*ret, "err-data", kMaxOutput));
  status.truncated = HV_TRY(bool_member(*ret, "out-truncated", false)) || HV_TRY(bool_member(*ret, "err-truncated", false));
  return status;
}

Result<int64_t> decode_file_handle(const json& reply) {
  const json* ret = member(reply, "return");
  if (!ret || !ret->is_number_integer()) return corrupt("no file handle");
  if (ret->is_number_unsigned() && ret->get<uint64_t>() > INT64_MAX) return corrupt("file handle out of range");
  const int64_t handle = ret->get<int64_t>();
  if (handle < 0) return corrupt("negative file handle");
  return handle;
}

Result<FileChunk> decode_file_read(const json& reply, uint64_t requested) {
  const json* ret = HV_TRY(return_of(reply, json::value_t::object));
  FileChunk chunk;
  const int64_t count = HV_TRY(integer_member(*ret, "count", 0, static_cast<int64_t>(requested)));
  chunk.data = HV_TRY(base64_member(*ret, "buf-b64", requested));
  if (chunk.data.size() != static_cast<uint64_t>(count)) return corrupt("\"count\" does not match \"buf-b64\"");
  chunk.eof = HV_TRY(bool_member(*ret, "eof", false));
  return chunk;
}

Result<uint64_t> decode_file_write(const json& reply, uint64_t sent) {
  const json* ret = HV_TRY(return_of(reply, json::value_t::object));
  return static_cast<uint64_t>(HV_TRY(integer_member(*ret, "count", 0, static_cast<int64_t>(sent))));
}

}  // namespace hostvisor::agent::qga
