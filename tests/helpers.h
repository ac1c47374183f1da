#pragma once
#include <graft/graft.h>
#include <gtest/gtest.h>

#include <cstdlib>
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
