#pragma once
// The progress of one epoch: a bar on a terminal, four lines otherwise.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>

namespace graft::train {

class Progress {
 public:
  Progress(int epoch, int64_t steps) : epoch_(epoch), steps_(steps), tty_(isatty(STDOUT_FILENO)) {}
  void update(int64_t step, double loss, double examples_per_s) {
    if (tty_) {
      int width = 30, filled = static_cast<int>(width * (step + 1) / steps_);
      std::printf("\repoch %d [%s%s] %3d%%  loss %.4f  %.0f examples/s ", epoch_, std::string(filled, '=').c_str(),
                  std::string(width - filled, ' ').c_str(), static_cast<int>(100 * (step + 1) / steps_), loss,
                  examples_per_s);
      std::fflush(stdout);
    } else if ((step + 1) % std::max<int64_t>(1, steps_ / 4) == 0 && step + 1 < steps_) {
      std::printf("epoch %d  step %lld/%lld  loss %.4f  %.0f examples/s\n", epoch_, static_cast<long long>(step + 1),
                  static_cast<long long>(steps_), loss, examples_per_s);
    }
  }
  void done() {
    if (tty_) std::printf("\r%80s\r", "");
  }

 private:
  int epoch_;
  int64_t steps_;
  bool tty_;
};

}  // namespace graft::train
