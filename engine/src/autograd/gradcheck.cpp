// gradcheck: autograd's Jacobian against central finite differences.
#include <cmath>
#include <sstream>

#include "autograd/function.h"
#include "graft/ops.h"

namespace graft::autograd {

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Flat f64 copy of fn's output at inputs.
std::vector<double> evaluate(const Fn& fn, const std::vector<Tensor>& inputs) {
  NoGradGuard no_grad;
  Tensor out = fn(inputs);
  return out.to_vector<double>();
}

bool report(bool raise, const std::string& what) {
  if (raise) throw Error(what);
  return false;
}

}  // namespace

bool gradcheck(const Fn& fn, const std::vector<Tensor>& inputs, GradcheckOptions options) {
  std::vector<size_t> checked;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined() || !inputs[i].requires_grad()) continue;
    check(inputs[i].dtype() == kFloat64, "graft: gradcheck: input ", i, " is ", inputs[i].dtype(),
          "; finite differences need float64 inputs (use .to(graft::kFloat64))");
    check(inputs[i].is_contiguous(), "graft: gradcheck: input ", i, " must be contiguous");
    checked.push_back(i);
  }
  check(!checked.empty(), "graft: gradcheck: no input requires grad");

  Tensor out = fn(inputs);
  check(out.defined(), "graft: gradcheck: the function returned an undefined tensor");
  int64_t n_out = out.numel();
  // An output that does not require grad does not depend on the inputs
  // (e.g. the gradient of a linear function): its Jacobian is zero.
  bool constant = !out.requires_grad();

  // Analytical Jacobian, one row per output element: grad of out[j].
  std::vector<std::vector<std::vector<double>>> analytical(checked.size());
  std::vector<Tensor> wrt;
  for (size_t i : checked) wrt.push_back(inputs[i]);
  for (int64_t j = 0; j < n_out; ++j) {
    Tensor seed = zeros_like(out);
    {
      NoGradGuard no_grad;
      seed.view({-1}).slice(0, j, j + 1).fill_(1.0);
    }
    std::vector<Tensor> grads(wrt.size());
    if (!constant) grads = grad({out}, wrt, {.retain_graph = true, .allow_unused = true}, {seed});
    for (size_t k = 0; k < checked.size(); ++k) {
      std::vector<double> row = grads[k].defined() ? grads[k].to_vector<double>()
                                                   : std::vector<double>(static_cast<size_t>(wrt[k].numel()), 0.0);
      analytical[k].push_back(row);
    }
  }

  // Numerical Jacobian by perturbing each input element in place.
  for (size_t k = 0; k < checked.size(); ++k) {
    const Tensor& x = inputs[checked[k]];
    double* data = static_cast<double*>(x.data_ptr());
    for (int64_t e = 0; e < x.numel(); ++e) {
      double saved = data[e];
      data[e] = saved + options.eps;
      std::vector<double> plus = evaluate(fn, inputs);
      data[e] = saved - options.eps;
      std::vector<double> minus = evaluate(fn, inputs);
      data[e] = saved;
      for (int64_t j = 0; j < n_out; ++j) {
        double numeric = (plus[j] - minus[j]) / (2 * options.eps);
        double exact = analytical[k][j][e];
        if (std::abs(numeric - exact) > options.atol + options.rtol * std::abs(numeric)) {
          std::ostringstream os;
          os << "graft: gradcheck failed for input " << checked[k] << " (shape " << x.sizes() << "), element " << e
             << ", output element " << j << ": autograd gives " << exact << ", finite differences give " << numeric
             << " (atol " << options.atol << ", rtol " << options.rtol << ")";
          return report(options.raise, os.str());
        }
      }
    }
  }
  return true;
}

bool gradgradcheck(const Fn& fn, const std::vector<Tensor>& inputs, GradcheckOptions options) {
  // The gradient of sum(fn * v) for a fixed random v, as a function of the inputs.
  Tensor out;
  {
    NoGradGuard no_grad;
    out = fn(inputs);
  }
  Tensor v = rand(out.sizes(), TensorOptions().dtype(kFloat64)) + 0.5;
  std::vector<size_t> idx;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined() && inputs[i].requires_grad()) idx.push_back(i);
  Fn first_grad = [&](const std::vector<Tensor>& in) {
    EnableGradGuard grad_mode;  // gradcheck evaluates under NoGradGuard; this function needs a graph
    std::vector<Tensor> wrt;
    for (size_t i : idx) wrt.push_back(in[i]);
    Tensor y = fn(in);
    if (!y.requires_grad()) return zeros({1}, TensorOptions().dtype(kFloat64));
    auto grads = grad({(y * v).sum()}, wrt, {.create_graph = true, .allow_unused = true});
    std::vector<Tensor> flat;
    for (size_t k = 0; k < grads.size(); ++k)
      flat.push_back(grads[k].defined() ? grads[k].reshape({-1})
                                        : zeros({wrt[k].numel()}, TensorOptions().dtype(kFloat64)));
    return cat(flat);
  };
  return gradcheck(first_grad, inputs, options);
}

}  // namespace graft::autograd
