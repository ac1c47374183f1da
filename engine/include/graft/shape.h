#pragma once
/// @file
/// Shapes: Dims (sizes or strides, stored inline up to 6 dims) and IntList (a
/// non-owning view that accepts {2, 3}, a std::vector or Dims as an argument).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <ostream>
#include <vector>

namespace graft {

/// A non-owning view of int64 values: how graft's functions take shapes and lists of dims.
///
/// It accepts `{2, 3}`, a `std::vector<int64_t>` or a Dims, so calls read
/// `zeros({2, 3})` or `x.permute(order)`. It does not own the values: use it
/// for arguments, not to store a shape (keep a Dims or a vector for that).
class IntList {
 public:
  /// An empty list.
  IntList() = default;
  /// Views the list's array, which lives until the end of the full expression:
  /// fine for arguments (zeros({2, 3})), wrong for a stored IntList.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winit-list-lifetime"
#endif
  IntList(std::initializer_list<int64_t> l) : data_(l.begin()), size_(l.size()) {}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
  /// Views the elements of @p v, which must outlive the IntList.
  IntList(const std::vector<int64_t>& v) : data_(v.data()), size_(v.size()) {}
  /// Views @p size values at @p data.
  IntList(const int64_t* data, size_t size) : data_(data), size_(size) {}

  /// The first value.
  const int64_t* begin() const { return data_; }
  /// Past the last value.
  const int64_t* end() const { return data_ + size_; }
  /// The address of the values.
  const int64_t* data() const { return data_; }
  /// The number of values.
  size_t size() const { return size_; }
  /// True when there are no values.
  bool empty() const { return size_ == 0; }
  /// Value @p i (not checked against size()).
  int64_t operator[](size_t i) const { return data_[i]; }
  /// The values, copied into a vector.
  std::vector<int64_t> vec() const { return {begin(), end()}; }

 private:
  const int64_t* data_ = nullptr;
  size_t size_ = 0;
};

/// Sizes or strides, owned: up to kInline values are stored in place, more on the heap.
///
/// A Dims converts to IntList, so it can be passed wherever a shape is taken.
class Dims {
 public:
  /// How many values fit without a heap allocation.
  static constexpr size_t kInline = 6;

  /// No values: the shape of a 0-dim tensor.
  Dims() = default;
  /// @p n copies of @p value.
  explicit Dims(size_t n, int64_t value = 0) { resize(n, value); }
  /// A copy of the values @p l views.
  Dims(IntList l) { assign(l.begin(), l.size()); }
  /// A copy of a braced list, such as `Dims{2, 3}`.
  Dims(std::initializer_list<int64_t> l) { assign(l.begin(), l.size()); }
  /// A copy of @p v's values.
  Dims(const std::vector<int64_t>& v) { assign(v.data(), v.size()); }
  /// A copy of @p o.
  Dims(const Dims& o) { assign(o.data(), o.size_); }
  /// Takes @p o's values, leaving it empty.
  Dims(Dims&& o) noexcept { steal(o); }
  /// Copies @p o's values.
  Dims& operator=(const Dims& o) {
    if (this != &o) assign(o.data(), o.size_);
    return *this;
  }
  /// Takes @p o's values, leaving it empty.
  Dims& operator=(Dims&& o) noexcept {
    if (this != &o) {
      release();
      steal(o);
    }
    return *this;
  }
  /// Frees the heap storage, if any.
  ~Dims() { release(); }

  /// The address of the values, to change them.
  int64_t* data() { return heap_ ? heap_ : inline_; }
  /// The address of the values.
  const int64_t* data() const { return heap_ ? heap_ : inline_; }
  /// The number of values.
  size_t size() const { return size_; }
  /// True when there are no values.
  bool empty() const { return size_ == 0; }
  /// Value @p i, to change (not checked against size()).
  int64_t& operator[](size_t i) { return data()[i]; }
  /// Value @p i (not checked against size()).
  int64_t operator[](size_t i) const { return data()[i]; }
  /// The first value, to change.
  int64_t* begin() { return data(); }
  /// Past the last value.
  int64_t* end() { return data() + size_; }
  /// The first value.
  const int64_t* begin() const { return data(); }
  /// Past the last value.
  const int64_t* end() const { return data() + size_; }
  /// The last value; the Dims must not be empty.
  int64_t back() const { return data()[size_ - 1]; }
  /// The last value, to change; the Dims must not be empty.
  int64_t& back() { return data()[size_ - 1]; }
  /// A view of the values, valid while this Dims lives unchanged.
  operator IntList() const { return {data(), size_}; }
  /// The values, copied into a vector.
  std::vector<int64_t> vec() const { return {begin(), end()}; }

  /// Makes the size @p n, filling new places with @p value.
  void resize(size_t n, int64_t value = 0) {
    reserve(n);
    for (size_t i = size_; i < n; ++i) data()[i] = value;
    size_ = n;
  }
  /// Appends @p v.
  void push_back(int64_t v) {
    reserve(size_ + 1);
    data()[size_++] = v;
  }
  /// Inserts @p v before position @p pos (at most size()).
  void insert(size_t pos, int64_t v) {
    reserve(size_ + 1);
    int64_t* d = data();
    std::memmove(d + pos + 1, d + pos, (size_ - pos) * sizeof(int64_t));
    d[pos] = v;
    ++size_;
  }
  /// Removes the value at position @p pos.
  void erase(size_t pos) {
    int64_t* d = data();
    std::memmove(d + pos, d + pos + 1, (size_ - pos - 1) * sizeof(int64_t));
    --size_;
  }

  /// The same values in the same order.
  friend bool operator==(const Dims& a, const Dims& b) {
    return a.size_ == b.size_ && std::equal(a.begin(), a.end(), b.begin());
  }

 private:
  void reserve(size_t n) {
    if (n <= capacity_) return;
    size_t cap = std::max(n, capacity_ * 2);
    auto* fresh = new int64_t[cap];
    std::memcpy(fresh, data(), size_ * sizeof(int64_t));
    release();
    heap_ = fresh;
    capacity_ = cap;
  }
  void assign(const int64_t* src, size_t n) {
    reserve(n);
    if (n > 0) std::memmove(data(), src, n * sizeof(int64_t));  // src may be null when n is 0
    size_ = n;
  }
  void release() {
    delete[] heap_;
    heap_ = nullptr;
    capacity_ = kInline;
  }
  void steal(Dims& o) {
    size_ = o.size_;
    if (o.heap_) {
      heap_ = o.heap_;
      capacity_ = o.capacity_;
      o.heap_ = nullptr;
      o.capacity_ = kInline;
    } else {
      std::memcpy(inline_, o.inline_, size_ * sizeof(int64_t));
    }
    o.size_ = 0;
  }

  int64_t inline_[kInline];
  int64_t* heap_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = kInline;
};

/// The same values in the same order, as in `a.sizes() == b.sizes()`.
inline bool operator==(IntList a, IntList b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

/// Prints [2, 3].
std::ostream& operator<<(std::ostream& os, IntList l);
/// Prints [2, 3], as for an IntList.
inline std::ostream& operator<<(std::ostream& os, const Dims& d) { return os << IntList(d); }

/// The number of elements of a tensor of this shape: the product of the sizes (1 for no dims).
int64_t numel_of(IntList shape);
/// Row-major strides of a contiguous tensor of this shape.
Dims contiguous_strides(IntList shape);
/// NumPy broadcasting of two shapes; throws graft::Error naming op when they do not broadcast.
/// Shapes align from the last dim; each pair of sizes must be equal or include a 1.
/// @code
/// graft::broadcast_shapes({3, 1}, {4}, "add");  // [3, 4]
/// @endcode
Dims broadcast_shapes(IntList a, IntList b, const char* op);
/// Wraps a possibly negative dim into [0, ndim); throws naming op when out of range.
/// As in PyTorch, a 0-dim tensor takes the dims 0 and -1.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

}  // namespace graft
