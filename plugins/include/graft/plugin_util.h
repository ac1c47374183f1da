#ifndef GRAFT_PLUGIN_UTIL_H
#define GRAFT_PLUGIN_UTIL_H
/**
 * @file
 * Helpers for plugin authors, beside the ABI of graft/plugin.h: the sizes
 * and layout of a DLTensor view, graft's dtype bits, and turning C++
 * exceptions into a status and a message so that none crosses the ABI.
 * Header-only C++17, installed with graft; every plugin in graft's own tree
 * uses it.
 *
 * @code
 * int32_t run_add(const graft_kernel_args* a, void* ctx, char* message, size_t size) {
 *   return graft::plugin_util::guarded(message, size, [&] {
 *     if (!graft::plugin_util::is_contiguous(*a->output))
 *       throw graft::plugin_util::Failure(GRAFT_INVALID, "my-plugin: add: the output is strided");
 *     // ...
 *   });
 * }
 * @endcode
 */
#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include "graft/plugin.h"

/** The namespace of the plugin helpers. */
namespace graft::plugin_util {

/** The number of elements of t (1 for a 0-d tensor). */
inline int64_t numel(const DLTensor& t) noexcept {
  int64_t n = 1;
  for (int i = 0; i < t.ndim; ++i) n *= t.shape[i];
  return n;
}

/** Whether t is row-major without gaps; dims of size 1 may have any stride,
 * and NULL strides mean compact, as in DLPack. */
inline bool is_contiguous(const DLTensor& t) noexcept {
  if (!t.strides) return true;
  int64_t expect = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    if (t.shape[d] != 1 && t.strides[d] != expect) return false;
    expect *= t.shape[d];
  }
  return true;
}

/** Whether t is an optional input the caller left out (data NULL, ndim 0; see graft_kernel_args). */
inline bool is_absent(const DLTensor& t) noexcept { return t.data == nullptr && t.ndim == 0; }

/** graft's GRAFT_DTYPE_* bit for a DLPack dtype, or 0 for one graft does not have. */
inline uint32_t dtype_bit(DLDataType d) noexcept {
  if (d.lanes != 1) return 0;
  if (d.code == kDLFloat && d.bits == 32) return GRAFT_DTYPE_FLOAT32;
  if (d.code == kDLFloat && d.bits == 64) return GRAFT_DTYPE_FLOAT64;
  if (d.code == kDLInt && d.bits == 32) return GRAFT_DTYPE_INT32;
  if (d.code == kDLInt && d.bits == 64) return GRAFT_DTYPE_INT64;
  if (d.code == GRAFT_DL_BOOL && d.bits == 8) return GRAFT_DTYPE_BOOL;
  if (d.code == kDLBfloat && d.bits == 16) return GRAFT_DTYPE_BFLOAT16;
  return 0;
}

/** Whether t holds elements of the dtype bit (a GRAFT_DTYPE_* value). */
inline bool has_dtype(const DLTensor& t, uint32_t bit) noexcept { return dtype_bit(t.dtype) == bit; }

/** Copies text into a message buffer that graft handed over, truncated to
 * size and NUL-terminated; does nothing when message is NULL or size 0. */
inline void write_message(char* message, size_t size, std::string_view text) noexcept {
  if (!message || size == 0) return;
  size_t n = text.size() < size - 1 ? text.size() : size - 1;
  std::memcpy(message, text.data(), n);
  message[n] = '\0';
}

/** An error with the status a plugin function should return for it
 * (GRAFT_INVALID for bad arguments, GRAFT_OUT_OF_MEMORY, GRAFT_ERROR). */
class Failure : public std::runtime_error {
 public:
  /** An error reported as status, with text as its message. */
  Failure(int32_t status, const std::string& text) : std::runtime_error(text), status_(status) {}
  /** The status guarded() returns for it. */
  int32_t status() const noexcept { return status_; }

 private:
  int32_t status_;
};

/** Runs body (returning void, or an int32_t status) and returns its status
 * (GRAFT_OK for void); what it throws becomes a status with its text in
 * message: a Failure's own status, GRAFT_OUT_OF_MEMORY for std::bad_alloc,
 * GRAFT_ERROR for anything else. So no exception crosses the ABI. */
template <class Body>
int32_t guarded(char* message, size_t size, Body&& body) noexcept {
  try {
    if constexpr (std::is_void_v<decltype(body())>) {
      body();
      return GRAFT_OK;
    } else {
      return body();
    }
  } catch (const Failure& e) {
    write_message(message, size, e.what());
    return e.status();
  } catch (const std::bad_alloc&) {
    write_message(message, size, "out of host memory");
    return GRAFT_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    write_message(message, size, e.what());
  } catch (...) {
    write_message(message, size, "unknown error");
  }
  return GRAFT_ERROR;
}

}  // namespace graft::plugin_util

#endif /* GRAFT_PLUGIN_UTIL_H */
