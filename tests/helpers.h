#pragma once
#include <graft/graft.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

// The tests' small tensors fuse too (Note [Small expressions]), unless the
// environment says otherwise; set before graft reads it.
inline const int kFuseSmallTensors = setenv("GRAFT_FUSION_MIN_ELEMENTS", "1", 0);

// Asserts that a statement throws graft::Error whose message contains every fragment.
#define EXPECT_GRAFT_ERROR(statement, ...)                                      \
  do {                                                                          \
    try {                                                                       \
      statement;                                                                \
      ADD_FAILURE() << "expected graft::Error from: " #statement;               \
    } catch (const graft::Error& e) {                                           \
      for (const std::string& fragment : std::vector<std::string>{__VA_ARGS__}) \
        EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)      \
            << "message lacks '" << fragment << "': " << e.what();              \
    }                                                                           \
  } while (0)

inline void expect_near(const std::vector<double>& got, const std::vector<double>& want, double tol = 1e-6) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] == want[i]) continue;  // equal infinities pass
    EXPECT_NEAR(got[i], want[i], tol) << "at element " << i;
  }
}

inline void expect_values(const graft::Tensor& t, const std::vector<double>& want, double tol = 1e-6) {
  expect_near(t.to_vector<double>(), want, tol);
}

inline std::vector<int64_t> shape(const graft::Tensor& t) { return t.shape(); }

// The gradients of (y * gy).sum() with respect to each tensor of wrt, one
// after another, as doubles.
inline std::vector<double> weighted_grads(const graft::Tensor& y, const graft::Tensor& gy,
                                          const std::vector<graft::Tensor>& wrt) {
  std::vector<double> values;
  for (const graft::Tensor& g : graft::autograd::grad({(y * gy).sum()}, wrt))
    for (double v : g.to_vector<double>()) values.push_back(v);
  return values;
}

// Kernel calls of op by backend since the last reset_dispatch_stats().
inline uint64_t calls(const std::string& op, const std::string& backend) {
  for (const graft::OpStats& s : graft::dispatch_stats())
    if (s.op == op)
      for (const auto& [b, n] : s.calls)
        if (b == backend) return n;
  return 0;
}

// The fusion layer's counter of this name (graft::fusion_stats()).
inline double fusion_stat(const std::string& name) {
  for (const auto& [n, v] : graft::fusion_stats())
    if (n == name) return v;
  ADD_FAILURE() << "no fusion counter '" << name << "'";
  return -1;
}

// Optimizers over every branch of the fused updates (Note [Fused updates]):
// momentum, Nesterov, dampening, weight decay, none; Adam, AMSGrad, AdamW.
using OptimizerMaker = std::function<std::unique_ptr<graft::optim::Optimizer>(std::vector<graft::Tensor>)>;
inline std::vector<OptimizerMaker> update_configurations() {
  using namespace graft::optim;
  return {
      [](auto p) { return std::make_unique<SGD>(p, SGDOptions{.lr = 0.1, .momentum = 0.9}); },
      [](auto p) {
        return std::make_unique<SGD>(p, SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
      },
      [](auto p) { return std::make_unique<SGD>(p, SGDOptions{.lr = 0.1, .momentum = 0.5, .dampening = 0.3}); },
      [](auto p) { return std::make_unique<SGD>(p, SGDOptions{.lr = 0.1}); },
      [](auto p) { return std::make_unique<SGD>(p, SGDOptions{.lr = 0.1, .weight_decay = 0.1}); },
      [](auto p) { return std::make_unique<Adam>(p, AdamOptions{.lr = 0.01}); },
      [](auto p) { return std::make_unique<Adam>(p, AdamOptions{.lr = 0.01, .weight_decay = 0.1, .amsgrad = true}); },
      [](auto p) { return std::make_unique<AdamW>(p, AdamWOptions{.lr = 0.01, .weight_decay = 0.1}); },
  };
}
