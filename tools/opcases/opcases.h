#pragma once
// The op cases shared by the cross-backend test suite and graft-info's
// coverage table: every op of the registry over a grid of shapes (with
// broadcasting, non-contiguous views and sizes that are no multiple of a
// vector width), run on one backend and device and compared with the
// reference backend on the host, forward and backward.
#include <graft/graft.h>

#include <functional>
#include <string>
#include <vector>

namespace graft::opcases {

struct OpCase {
  std::string name;  // e.g. "add [3, 7] + [7]"
  std::string op;    // the registry op it exercises
  std::vector<std::vector<int64_t>> shapes;
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  bool differentiable = true;
  double low = -1, high = 1;   // inputs are uniform in [low, high)
  bool transposed = false;     // input 0 is a transposed (non-contiguous) view
};

std::vector<OpCase> all_cases();

// Where a case runs: a backend, on one of the devices it has kernels for.
struct Target {
  std::string backend;
  std::string device;
};
// Every (backend, device) pair with at least one kernel in the registry.
std::vector<Target> targets();

struct Result {
  bool ran = false;
  std::string error;                   // what went wrong, when not ran
  double forward_nmse = 0, backward_nmse = 0;
  bool forward_by_backend = false;     // the case's op ran on the target backend
  uint64_t forward_fallbacks = 0, backward_fallbacks = 0;
  uint64_t backward_calls = 0, backward_calls_by_backend = 0;
};

// Applied to each input on the target's device before it becomes a leaf
// (the cross-backend suite hands inputs over in oneDNN's blocked layouts so).
using Prepare = std::function<Tensor(const Tensor&)>;
// Runs c on target in dtype, and on the reference backend on the host.
Result run(const OpCase& c, const Target& target, DType dtype, const Prepare& prepare = {});

// The normalized mean squared error of got against want (0 when equal).
double nmse(const Tensor& got, const Tensor& want);

}  // namespace graft::opcases
