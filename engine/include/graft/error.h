#pragma once
/// @file
/// graft::Error: the one exception type graft throws. Its text names what went
/// wrong, with which shapes, dtypes or devices, and what to do about it.
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace graft {

/// The exception graft throws for every error it reports.
///
/// what() names what went wrong, with the shapes, dtypes or devices involved,
/// and what to do about it.
/// @code
/// try {
///   graft::matmul(graft::zeros({2, 3}), graft::zeros({2, 3}));
/// } catch (const graft::Error& e) {
///   std::cerr << e.what() << "\n";  // graft: matmul: shapes [2, 3] and [2, 3] cannot be multiplied: ...
/// }
/// @endcode
class Error : public std::runtime_error {
 public:
  /// An error whose what() is @p what.
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

/// Throws graft::Error built from the streamed parts when cond is false.
/// Each part is written with `operator<<`, so strings, numbers, shapes, dtypes
/// and devices mix freely; nothing is formatted while @p cond holds.
/// @code
/// graft::check(x.dim() == 2, "graft: expected a 2-D input, got shape ", x.sizes());
/// @endcode
template <class... Parts>
inline void check(bool cond, Parts&&... parts) {
  if (!cond) [[unlikely]]
    detail::fail(std::forward<Parts>(parts)...);
}

}  // namespace graft
