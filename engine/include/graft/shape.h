#pragma once
// Shapes: Dims (sizes or strides, stored inline up to 6 dims) and IntList (a
// non-owning view that accepts {2, 3}, a std::vector or Dims as an argument).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <ostream>
#include <vector>

namespace graft {

class IntList {
 public:
  IntList() = default;
  // Views the list's array, which lives until the end of the full expression:
  // fine for arguments (zeros({2, 3})), wrong for a stored IntList.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winit-list-lifetime"
#endif
  IntList(std::initializer_list<int64_t> l) : data_(l.begin()), size_(l.size()) {}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
  IntList(const std::vector<int64_t>& v) : data_(v.data()), size_(v.size()) {}
  IntList(const int64_t* data, size_t size) : data_(data), size_(size) {}

  const int64_t* begin() const { return data_; }
  const int64_t* end() const { return data_ + size_; }
  const int64_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  int64_t operator[](size_t i) const { return data_[i]; }
  std::vector<int64_t> vec() const { return {begin(), end()}; }

 private:
  const int64_t* data_ = nullptr;
  size_t size_ = 0;
};

class Dims {
 public:
  static constexpr size_t kInline = 6;

  Dims() = default;
  explicit Dims(size_t n, int64_t value = 0) { resize(n, value); }
  Dims(IntList l) { assign(l.begin(), l.size()); }
  Dims(std::initializer_list<int64_t> l) { assign(l.begin(), l.size()); }
  Dims(const std::vector<int64_t>& v) { assign(v.data(), v.size()); }
  Dims(const Dims& o) { assign(o.data(), o.size_); }
  Dims(Dims&& o) noexcept { steal(o); }
  Dims& operator=(const Dims& o) {
    if (this != &o) assign(o.data(), o.size_);
    return *this;
  }
  Dims& operator=(Dims&& o) noexcept {
    if (this != &o) {
      release();
      steal(o);
    }
    return *this;
  }
  ~Dims() { release(); }

  int64_t* data() { return heap_ ? heap_ : inline_; }
  const int64_t* data() const { return heap_ ? heap_ : inline_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  int64_t& operator[](size_t i) { return data()[i]; }
  int64_t operator[](size_t i) const { return data()[i]; }
  int64_t* begin() { return data(); }
  int64_t* end() { return data() + size_; }
  const int64_t* begin() const { return data(); }
  const int64_t* end() const { return data() + size_; }
  int64_t back() const { return data()[size_ - 1]; }
  int64_t& back() { return data()[size_ - 1]; }
  operator IntList() const { return {data(), size_}; }
  std::vector<int64_t> vec() const { return {begin(), end()}; }

  void resize(size_t n, int64_t value = 0) {
    reserve(n);
    for (size_t i = size_; i < n; ++i) data()[i] = value;
    size_ = n;
  }
  void push_back(int64_t v) {
    reserve(size_ + 1);
    data()[size_++] = v;
  }
  void insert(size_t pos, int64_t v) {
    reserve(size_ + 1);
    int64_t* d = data();
    std::memmove(d + pos + 1, d + pos, (size_ - pos) * sizeof(int64_t));
    d[pos] = v;
    ++size_;
  }
  void erase(size_t pos) {
    int64_t* d = data();
    std::memmove(d + pos, d + pos + 1, (size_ - pos - 1) * sizeof(int64_t));
    --size_;
  }

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

inline bool operator==(IntList a, IntList b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// Prints [2, 3].
std::ostream& operator<<(std::ostream& os, IntList l);
inline std::ostream& operator<<(std::ostream& os, const Dims& d) { return os << IntList(d); }

int64_t numel_of(IntList shape);
// Row-major strides of a contiguous tensor of this shape.
Dims contiguous_strides(IntList shape);
// NumPy broadcasting of two shapes; throws graft::Error naming op when they do not broadcast.
Dims broadcast_shapes(IntList a, IntList b, const char* op);
// Wraps a possibly negative dim into [0, ndim); throws naming op when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

}  // namespace graft
