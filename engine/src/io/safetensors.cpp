#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/tensor_impl.h"
#include "graft/serialize.h"

namespace graft {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian; so is this code");

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeader = 100u << 20;  // the format's own limit on the JSON header

const char* dtype_code(DType t) {
  switch (t) {
    case kFloat32: return "F32";
    case kFloat64: return "F64";
    case kInt32: return "I32";
    case kInt64: return "I64";
    case kBool: return "BOOL";
    case kBFloat16: return "BF16";
  }
  return "?";
}

bool dtype_from_code(const std::string& code, DType* t) {
  for (DType d : kAllDTypes)
    if (code == dtype_code(d)) {
      *t = d;
      return true;
    }
  return false;
}

[[noreturn]] void corrupt(const std::string& name, const std::string& what) {
  throw Error("graft: " + name + ": not a valid safetensors file: " + what);
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

std::string to_safetensors(const StateDict& dict) {
  json header = json::object();
  header["__metadata__"] = {{"format", "graft"}};
  std::vector<Tensor> hosts;
  uint64_t offset = 0;
  for (const auto& [key, t] : dict) {
    check(t.defined(), "graft: to_safetensors: tensor '", key, "' is undefined");
    check(key != "__metadata__", "graft: to_safetensors: '__metadata__' cannot be a tensor name");
    Tensor h = t.detach().cpu().contiguous();
    uint64_t nbytes = static_cast<uint64_t>(h.numel()) * element_size(h.dtype());
    header[key] = {{"dtype", dtype_code(h.dtype())}, {"shape", h.shape()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    hosts.push_back(h);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  std::string out(8, '\0');
  uint64_t n = text.size();
  std::memcpy(out.data(), &n, 8);
  out += text;
  out.reserve(out.size() + offset);
  for (const Tensor& h : hosts)
    out.append(static_cast<const char*>(h.data_ptr()), static_cast<size_t>(h.numel()) * element_size(h.dtype()));
  return out;
}

StateDict from_safetensors(const std::string& bytes, const std::string& name) {
  if (bytes.size() < 8) corrupt(name, "shorter than the 8-byte header length (" + std::to_string(bytes.size()) + " bytes)");
  uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);
  if (header_size > kMaxHeader || header_size > bytes.size() - 8)
    corrupt(name, "the header claims " + std::to_string(header_size) + " bytes but the file has " +
                      std::to_string(bytes.size()) + " (truncated?)");
  json header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(header_size), nullptr,
                            /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) corrupt(name, "the header is not a JSON object");
  uint64_t data_size = bytes.size() - 8 - header_size;
  const char* data = bytes.data() + 8 + header_size;

  struct Entry {
    std::string key;
    DType dtype;
    Dims shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    if (key == "__metadata__") continue;
    const json& e = it.value();
    auto bad = [&](const std::string& what) { corrupt(name, "tensor '" + key + "': " + what); };
    if (!e.is_object()) bad("its entry is not an object");
    auto dt = e.find("dtype");
    auto sh = e.find("shape");
    auto off = e.find("data_offsets");
    if (dt == e.end() || !dt->is_string()) bad("no dtype");
    if (sh == e.end() || !sh->is_array()) bad("no shape");
    if (off == e.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      bad("data_offsets must be two unsigned integers");
    Entry entry{key, kFloat32, {}, (*off)[0].get<uint64_t>(), (*off)[1].get<uint64_t>()};
    if (!dtype_from_code(dt->get<std::string>(), &entry.dtype))
      bad("dtype " + dt->get<std::string>() + " is not one graft reads (F32, F64, I32, I64, BOOL, BF16)");
    if (sh->size() > 64) bad("more than 64 dims");
    // The product of the non-zero sizes must fit too: strides are computed from it.
    uint64_t count = 1, nonzero = 1;
    bool overflow = false;
    for (const json& d : *sh) {
      if (!d.is_number_unsigned()) bad("shape entries must be unsigned integers");
      uint64_t v = d.get<uint64_t>();
      overflow = overflow || v > uint64_t(std::numeric_limits<int64_t>::max()) ||
                 (v != 0 && __builtin_mul_overflow(nonzero, v, &nonzero)) ||
                 nonzero > uint64_t(std::numeric_limits<int64_t>::max());
      count *= v;
      entry.shape.push_back(static_cast<int64_t>(v));
    }
    if (overflow || count > data_size) bad("its shape holds more elements than the file has bytes");
    if (entry.begin > entry.end || entry.end > data_size)
      bad("data_offsets [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) +
          ") lie outside the data (" + std::to_string(data_size) + " bytes)");
    if (entry.end - entry.begin != count * element_size(entry.dtype))
      bad("data_offsets span " + std::to_string(entry.end - entry.begin) + " bytes but shape and dtype need " +
          std::to_string(count * element_size(entry.dtype)));
    entries.push_back(std::move(entry));
  }
  // The data must be covered exactly once, without gaps or overlaps.
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const Entry& e : entries) spans.emplace_back(e.begin, e.end);
  std::sort(spans.begin(), spans.end());
  uint64_t at = 0;
  for (const auto& [b, e] : spans) {
    if (b != at) corrupt(name, "tensor data overlaps or leaves a gap at byte " + std::to_string(std::min(b, at)));
    at = e;
  }
  if (at != data_size) corrupt(name, std::to_string(data_size - at) + " bytes of data belong to no tensor");

  StateDict dict;
  for (const Entry& e : entries) {
    Tensor t = make_empty(e.shape, e.dtype, kCPU);
    if (e.end > e.begin) std::memcpy(t.data_ptr(), data + e.begin, e.end - e.begin);
    if (e.dtype == kBool) {
      const auto* b = static_cast<const unsigned char*>(t.data_ptr());
      for (int64_t i = 0; i < t.numel(); ++i)
        if (b[i] > 1) corrupt(name, "tensor '" + e.key + "': a BOOL byte is neither 0 nor 1");
    }
    dict.set(e.key, t);
  }
  return dict;
}

namespace {

// Removes the temporaries (.NAME.tmp-PID-N) that processes killed while
// saving to target left behind: those whose PID is no longer alive.
void remove_stale_temporaries(const std::filesystem::path& dir, const std::filesystem::path& target) {
  namespace fs = std::filesystem;
  const std::string prefix = "." + target.filename().string() + ".tmp-";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    std::string rest = name.substr(prefix.size());
    size_t dash = rest.find('-');
    if (dash == 0 || dash == std::string::npos || dash + 1 == rest.size() ||
        rest.find_first_not_of("0123456789-") != std::string::npos || rest.find('-', dash + 1) != std::string::npos)
      continue;  // not a name save() makes
    long pid = std::strtol(rest.c_str(), nullptr, 10);
    if (pid <= 0 || pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    fs::remove(e.path(), ec);
  }
}

}  // namespace

void save(const StateDict& dict, const std::string& path) {
  std::string bytes = to_safetensors(dict);
  namespace fs = std::filesystem;
  fs::path target(path);
  fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  remove_stale_temporaries(dir, target);
  static std::atomic<uint64_t> counter{0};
  fs::path tmp = dir / ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                        std::to_string(counter++));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  check(fd >= 0, "graft: cannot write checkpoint '", path, "': creating ", tmp.string(), " failed: ", errno_text());
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string why = errno_text();
      ::close(fd);
      ::unlink(tmp.c_str());
      detail::fail("graft: cannot write checkpoint '", path, "': ", why, "; the previous file is untouched");
    }
    done += static_cast<size_t>(n);
  }
  bool synced = ::fsync(fd) == 0;
  bool closed = ::close(fd) == 0;
  if (!synced || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = errno_text();
    ::unlink(tmp.c_str());
    detail::fail("graft: cannot write checkpoint '", path, "': ", why, "; the previous file is untouched");
  }
  if (int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);  // makes the rename itself durable
    ::close(dfd);
  }
}

StateDict load_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  check(f.good(), "graft: cannot open checkpoint '", path, "': ", errno_text());
  std::ostringstream buffer;
  buffer << f.rdbuf();
  check(!f.bad(), "graft: reading checkpoint '", path, "' failed");
  return from_safetensors(buffer.str(), path);
}

namespace {
// Loads path into target (a module or an optimizer); errors name the file.
template <class T>
void load_into(T& target, const std::string& path) {
  StateDict dict = load_file(path);
  try {
    target.load_state_dict(dict);
  } catch (const Error& e) {
    throw Error("graft: " + path + ": " + std::string(e.what()).substr(7));  // drop the inner "graft: "
  }
}
}  // namespace

void save(const nn::Module& module, const std::string& path) { save(module.state_dict(), path); }
void load(nn::Module& module, const std::string& path) { load_into(module, path); }
void save(const optim::Optimizer& optimizer, const std::string& path) { save(optimizer.state_dict(), path); }
void load(optim::Optimizer& optimizer, const std::string& path) { load_into(optimizer, path); }

}  // namespace graft
