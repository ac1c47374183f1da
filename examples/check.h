#pragma once
// The examples' own checks: each program counts what came out wrong and
// exits nonzero when anything did, so the tests that run them can fail.
#include <cmath>
#include <iostream>

namespace check {

inline int failures = 0;

// Reports (and counts) a value further than 1e-6 from the one wanted.
inline void near(double got, double want, const char* what) {
  if (!(std::abs(got - want) <= 1e-6)) {
    std::cerr << "FAILED: " << what << ": got " << got << ", want " << want << "\n";
    ++failures;
  }
}

// Reports (and counts) a condition that does not hold.
inline void that(bool ok, const char* what) {
  if (!ok) {
    std::cerr << "FAILED: " << what << "\n";
    ++failures;
  }
}

inline int exit_code() { return failures == 0 ? 0 : 1; }

}  // namespace check
