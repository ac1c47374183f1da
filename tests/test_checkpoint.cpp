// safetensors checkpoints: exact round trips, and every corrupt-file case
// refused with the file and key named, leaving the module as it was.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "helpers.h"

using namespace graft;
namespace fs = std::filesystem;

namespace {

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "graft_ckpt_" + name; }

std::string read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

nn::Sequential small_net() {
  return nn::Sequential{nn::Conv2d(1, 2, 3), nn::BatchNorm2d(2), nn::ReLU(), nn::Flatten(), nn::Linear(8, 3)};
}

// The file's header as JSON, and a file rebuilt from a changed header.
nlohmann::json header_of(const std::string& bytes) {
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  return nlohmann::json::parse(bytes.substr(8, n));
}
std::string with_header(const std::string& bytes, const nlohmann::json& header) {
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  std::string text = header.dump();
  std::string out(8, '\0');
  uint64_t m = text.size();
  std::memcpy(out.data(), &m, 8);
  return out + text + bytes.substr(8 + n);
}

}  // namespace

TEST(Checkpoint, RoundTripIsBitIdentical) {
  manual_seed(1);
  nn::Sequential a = small_net(), b = small_net();
  a(randn({4, 1, 4, 4}));  // moves the running statistics off their initial values
  std::string path = temp_path("roundtrip.safetensors");
  save(a, path);
  load(b, path);
  StateDict sa = a.state_dict(), sb = b.state_dict();
  for (const auto& [name, t] : sa) {
    const Tensor& u = sb.at(name);
    ASSERT_EQ(t.sizes(), u.sizes()) << name;
    EXPECT_EQ(std::memcmp(t.data_ptr(), u.data_ptr(), t.numel() * element_size(t.dtype())), 0) << name;
  }
  a.eval();
  b.eval();
  Tensor x = randn({2, 1, 4, 4});
  EXPECT_EQ(a(x).to_vector<float>(), b(x).to_vector<float>());
  // Every dtype survives.
  StateDict d;
  d.set("f64", tensor({1.5, -2.0}, {2}, kFloat64));
  d.set("i32", tensor({7, -8}, {2}, kInt32));
  d.set("i64", arange(0, 6).view({2, 3}));
  d.set("bool", tensor({true, false, true}));
  d.set("scalar", scalar_tensor(3.25));
  d.set("empty", zeros({0, 4}));
  StateDict back = from_safetensors(to_safetensors(d));
  ASSERT_EQ(back.size(), d.size());
  for (const auto& [k, t] : d) {
    EXPECT_EQ(back.at(k).dtype(), t.dtype()) << k;
    EXPECT_EQ(back.at(k).sizes(), t.sizes()) << k;
    EXPECT_EQ(back.at(k).to_vector<double>(), t.to_vector<double>()) << k;
  }
  std::remove(path.c_str());
}

TEST(Checkpoint, TheFormatIsSafetensors) {
  std::string bytes = to_safetensors([] {
    StateDict d;
    d.set("w", tensor({1.f, 2.f, 3.f, 4.f}, {2, 2}));
    d.set("b", tensor({5.f}));
    return d;
  }());
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u) << "data starts 8-byte aligned";
  nlohmann::json h = header_of(bytes);
  EXPECT_EQ(h["w"]["dtype"], "F32");
  EXPECT_EQ(h["w"]["shape"], nlohmann::json::array({2, 2}));
  EXPECT_EQ(h["w"]["data_offsets"], nlohmann::json::array({0, 16}));
  EXPECT_EQ(h["b"]["data_offsets"], nlohmann::json::array({16, 20}));
  float w3;
  std::memcpy(&w3, bytes.data() + 8 + n + 12, 4);
  EXPECT_EQ(w3, 4.f);
  EXPECT_EQ(bytes.size(), 8 + n + 20);
}

// bfloat16 is safetensors' "BF16": each element's two bytes, little-endian,
// as PyTorch writes torch.bfloat16 tensors.
TEST(Checkpoint, BFloat16IsBF16) {
  std::string text = R"({"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]}})";
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string file(8, '\0');
  uint64_t n = text.size();
  std::memcpy(file.data(), &n, 8);
  file += text + std::string("\x80\x3f\x20\xc0\x49\x40", 6);  // 1, -2.5, 3.140625
  Tensor w = from_safetensors(file).at("w");
  EXPECT_EQ(w.dtype(), kBFloat16);
  expect_values(w, {1, -2.5, 3.140625}, 0);
  std::string written = to_safetensors([&] {
    StateDict d;
    d.set("w", w);
    return d;
  }());
  EXPECT_EQ(header_of(written)["w"], header_of(file)["w"]);
  EXPECT_EQ(written.substr(written.size() - 6), file.substr(file.size() - 6));

  manual_seed(2);
  nn::Sequential a = small_net(), b = small_net(), f32 = small_net();
  a->to(kBFloat16);
  b->to(kBFloat16);
  a(randn({4, 1, 4, 4}, kBFloat16));  // moves the running statistics
  std::string path = temp_path("bf16.safetensors");
  save(a, path);
  nlohmann::json h = header_of(read(path));
  EXPECT_EQ(h["0.weight"]["dtype"], "BF16");
  EXPECT_EQ(h["1.running_mean"]["dtype"], "BF16");
  EXPECT_EQ(h["4.bias"]["data_offsets"][1].get<uint64_t>() - h["4.bias"]["data_offsets"][0].get<uint64_t>(), 6u);
  load(b, path);
  StateDict sa = a.state_dict(), sb = b.state_dict();
  for (const auto& [name, t] : sa) {
    ASSERT_EQ(sb.at(name).dtype(), t.dtype()) << name;
    EXPECT_EQ(std::memcmp(t.data_ptr(), sb.at(name).data_ptr(), t.numel() * element_size(t.dtype())), 0) << name;
  }
  EXPECT_GRAFT_ERROR(load(f32, path), "bfloat16", "float32");
  std::remove(path.c_str());
}

TEST(Checkpoint, WritesAtomically) {
  std::string path = temp_path("atomic.safetensors");
  nn::Linear lin(3, 2);
  save(lin, path);
  std::string before = read(path);
  StateDict broken;
  broken.set("weight", Tensor());
  EXPECT_GRAFT_ERROR(save(broken, path), "undefined");
  EXPECT_EQ(read(path), before) << "a failed save must leave the old file";
  EXPECT_GRAFT_ERROR(save(lin, "/nonexistent-dir/x.safetensors"), "cannot write checkpoint", "/nonexistent-dir");
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path()))
    EXPECT_EQ(e.path().filename().string().find(".graft_ckpt_atomic.safetensors.tmp"), std::string::npos)
        << "temporary file left behind: " << e.path();
  std::remove(path.c_str());
}

// A process killed while saving leaves its temporary file; the next save to
// the same path removes those of dead processes, and only those.
TEST(Checkpoint, SaveRemovesTemporariesOfDeadProcesses) {
  std::string path = temp_path("stale.safetensors");
  fs::path dir = fs::path(path).parent_path();
  std::string prefix = ".graft_ckpt_stale.safetensors.tmp-";
  pid_t dead = ::fork();
  ASSERT_GE(dead, 0);
  if (dead == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  std::vector<std::string> stale = {prefix + std::to_string(dead) + "-0", prefix + std::to_string(dead) + "-12"};
  std::vector<std::string> kept = {
      prefix + std::to_string(::getppid()) + "-0",                         // a live process may still be writing it
      prefix + std::to_string(dead) + "-x",                                // not a name save() makes
      ".graft_ckpt_other.safetensors.tmp-" + std::to_string(dead) + "-0",  // another checkpoint's
  };
  for (const auto& name : stale) write((dir / name).string(), std::string(1000, 'x'));
  for (const auto& name : kept) write((dir / name).string(), "y");
  save(nn::Linear(3, 2), path);
  for (const auto& name : stale) EXPECT_FALSE(fs::exists(dir / name)) << name << " was left behind";
  for (const auto& name : kept) {
    EXPECT_TRUE(fs::exists(dir / name)) << name << " was removed";
    fs::remove(dir / name);
  }
  EXPECT_EQ(load_file(path).size(), 2u);
  std::remove(path.c_str());
}

TEST(Checkpoint, CorruptFilesAreRefusedAndChangeNothing) {
  manual_seed(2);
  nn::Linear good(3, 2), target(3, 2);
  std::string path = temp_path("corrupt.safetensors");
  save(good, path);
  const std::string bytes = read(path);
  std::vector<float> before = target->weight.to_vector<float>();
  auto expect_refused = [&](const std::string& data, std::vector<std::string> fragments) {
    write(path, data);
    fragments.insert(fragments.begin(), path);
    try {
      load(target, path);
      ADD_FAILURE() << "loaded a corrupt file: " << fragments.back();
    } catch (const Error& e) {
      for (const auto& f : fragments)
        EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << "lacks '" << f << "': " << e.what();
    }
    EXPECT_EQ(target->weight.to_vector<float>(), before) << "the module changed";
  };
  expect_refused(bytes.substr(0, 5), {"shorter than the 8-byte header"});
  expect_refused(bytes.substr(0, bytes.size() - 4), {"bias", "outside the data"});
  std::string lying = bytes;
  uint64_t huge = 1 << 20;
  std::memcpy(lying.data(), &huge, 8);
  expect_refused(lying, {"header claims", "truncated"});
  std::string not_json = bytes;
  not_json[9] = '#';
  expect_refused(not_json, {"not a JSON object"});
  nlohmann::json h = header_of(bytes);
  nlohmann::json offsets = h;
  offsets["weight"]["data_offsets"] = {0, 20};
  expect_refused(with_header(bytes, offsets), {"weight", "data_offsets span 20 bytes", "need 24"});
  nlohmann::json beyond = h;
  beyond["bias"]["data_offsets"] = {24, 4000};
  expect_refused(with_header(bytes, beyond), {"bias", "outside the data"});
  nlohmann::json overlap = h;
  overlap["bias"]["data_offsets"] = {0, 8};
  expect_refused(with_header(bytes, overlap), {"overlaps"});
  nlohmann::json dtype = h;
  dtype["bias"]["dtype"] = "F16";
  expect_refused(with_header(bytes, dtype), {"bias", "F16"});
  nlohmann::json missing = h;
  missing.erase("bias");
  expect_refused(with_header(bytes, missing), {"bytes of data belong to no tensor"});
  // Well-formed files that do not fit the module.
  StateDict d = good.state_dict();
  StateDict no_bias;
  no_bias.set("weight", d.at("weight"));
  expect_refused(to_safetensors(no_bias), {"missing key", "bias"});
  StateDict extra = d;
  extra.set("gamma", ones({2}));
  expect_refused(to_safetensors(extra), {"unexpected key", "gamma"});
  StateDict shape = d;
  shape.set("bias", ones({3}));
  expect_refused(to_safetensors(shape), {"bias", "[3]", "[2]"});
  StateDict type = d;
  type.set("bias", ones({2}, kFloat64));
  expect_refused(to_safetensors(type), {"bias", "float64", "float32"});
  std::remove(path.c_str());
  EXPECT_GRAFT_ERROR(load(target, path), "cannot open checkpoint", path);
}

TEST(Checkpoint, OptimizerStateRoundTrip) {
  Tensor p = tensor({1.0, 2.0}, {2}, kFloat64).requires_grad_();
  optim::Adam a({p}, {.lr = 0.01, .amsgrad = true});
  p.set_grad(tensor({0.5, -0.5}, {2}, kFloat64));
  a.step();
  std::string path = temp_path("adam.safetensors");
  save(a, path);
  Tensor q = tensor(p.to_vector<double>(), {2}, kFloat64).requires_grad_();
  optim::Adam b({q}, {.lr = 0.5});
  load(b, path);
  p.set_grad(tensor({0.1, 0.2}, {2}, kFloat64));
  q.set_grad(tensor({0.1, 0.2}, {2}, kFloat64));
  a.step();
  b.step();
  EXPECT_EQ(p.to_vector<double>(), q.to_vector<double>());
  optim::SGD sgd({q}, {.lr = 0.1, .momentum = 0.9});
  EXPECT_GRAFT_ERROR(load(sgd, path), path, "param_groups.0.momentum");
  std::remove(path.c_str());
}

TEST(Checkpoint, RandomStateResumesTheSequence) {
  manual_seed(4);
  randn({3});
  Tensor state = random_state();
  std::vector<float> next = randn({5}).to_vector<float>();
  manual_seed(99);
  set_random_state(state);
  EXPECT_EQ(randn({5}).to_vector<float>(), next);
  EXPECT_GRAFT_ERROR(set_random_state(tensor({1.f})), "random_state");
}
