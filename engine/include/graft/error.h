#pragma once
// graft::Error: the one exception type graft throws. Its text names what went
// wrong, with which shapes, dtypes or devices, and what to do about it.
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace graft {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  throw Error(os.str());
}
}  // namespace detail

// Throws graft::Error built from the streamed parts when cond is false.
template <class... Parts>
inline void check(bool cond, Parts&&... parts) {
  if (!cond) [[unlikely]]
    detail::fail(std::forward<Parts>(parts)...);
}

}  // namespace graft
