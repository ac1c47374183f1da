// Lists the plugins graft found, where from, and whether they loaded: a
// program built against an install finds the install's plugins by itself.
#include <graft/graft.h>

#include <iostream>

int main() {
  int loaded = 0;
  for (const auto& p : graft::plugins()) {
    if (p.loaded) {
      std::cout << p.name << " loaded from " << p.path << "\n";
      ++loaded;
    } else {
      std::cout << p.name << " not loaded from " << p.path << ": " << p.error << "\n";
    }
  }
  // Whatever loaded must compute: one op on every backend graft has.
  graft::Tensor x = graft::arange(0, 4).to(graft::kFloat32);
  float total = (x * 2).sum().item<float>();
  std::cout << loaded << " plugins loaded; sum " << total << "\n";
  return total == 12.f ? 0 : 1;
}
