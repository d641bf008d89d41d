// NumPy .npy reader and writer. Format: numpy/lib/format.py ("NEP 1"). A file is
//   "\x93NUMPY" major minor  header-length (u16 LE for 1.0, u32 LE for 2.0/3.0)
//   header: a Python dict literal, space-padded, ending in '\n'
//   data:   the elements in C order, nothing after them
// The header is parsed by a small hand-written parser, never evaluated. Everything read from
// the file is checked against the file's real size before anything is allocated from it.
#include "dynaprec/npy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>

#include "dynaprec/error.h"

namespace dynaprec {
namespace {

// Data is copied byte for byte between files ('<' little-endian) and tensors (native).
static_assert(std::endian::native == std::endian::little, "npy.cc assumes a little-endian host");

constexpr uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
constexpr size_t kAlign = 64;  // numpy's ARRAY_ALIGN: data starts at a multiple of 64
// numpy 2's NPY_MAXDIMS. Also keeps the shape vector tiny whatever the header claims.
constexpr size_t kMaxRank = 64;
// Every int64 fits in 19 digits; a longer run of digits is not a dimension.
constexpr size_t kMaxDigits = 19;
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

[[noreturn]] void fail(std::string_view name, const std::string& problem) {
  throw Error(ErrorKind::kInvalidInput, std::string(name) + ": " + problem);
}

// Quotes bytes taken from the file for a message: printable ASCII as is, anything else as
// \xNN, cut after 40 bytes, so that the message stays one short line whatever the file holds.
std::string quote(std::string_view s) {
  std::string out = "'";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 40) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out + "'";
}

struct NpyType {
  std::string_view code;  // descr without its byte-order character
  DType dtype;
  std::string_view write_descr;  // what npy_serialize writes (numpy's own spelling)
};

constexpr NpyType kTypes[] = {
    {"f2", DType::kF16, "<f2"}, {"f4", DType::kF32, "<f4"}, {"f8", DType::kF64, "<f8"},
    {"i1", DType::kI8, "|i1"},  {"i2", DType::kI16, "<i2"}, {"i4", DType::kI32, "<i4"},
    {"i8", DType::kI64, "<i8"}, {"u1", DType::kU8, "|u1"},  {"b1", DType::kBool, "|b1"},
};

size_t itemsize(DType t) { return static_cast<size_t>(dtype_bits(t) / 8); }

DType parse_descr(std::string_view descr, std::string_view name) {
  const char order = descr.empty() ? '\0' : descr[0];
  const std::string_view code = descr.empty() ? descr : descr.substr(1);
  for (const NpyType& row : kTypes) {
    if (row.code != code) continue;
    // Byte order means nothing for one-byte types: numpy writes '|' but accepts any.
    if (itemsize(row.dtype) == 1 && std::string_view("<>|=").find(order) != std::string_view::npos)
      return row.dtype;
    // '=' is native order, little-endian here (see the static_assert above).
    if (order == '<' || order == '=') return row.dtype;
    if (order == '>')
      fail(name, "big-endian data is not supported (dtype " + quote(descr) +
                     "); convert it with arr.astype('<" + std::string(code) + "')");
    break;  // '|' on a multi-byte type, or no byte order at all: numpy never writes these
  }
  fail(name, "unsupported dtype descr " + quote(descr) +
                 " (supported: <f2 <f4 <f8 |i1 <i2 <i4 <i8 |u1 |b1)");
}

struct Header {
  std::optional<std::string> descr;
  std::optional<bool> fortran_order;
  std::optional<Shape> shape;
};

// Parses the header dict, a Python literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// with the keys in any order, either quote style, any whitespace, optional trailing commas.
// It accepts exactly the three keys and the value forms numpy's reader accepts for them.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, std::string_view name, bool allow_long_suffix)
      : text_(text), name_(name), allow_long_suffix_(allow_long_suffix) {}

  Header parse() {
    Header h;
    expect('{', "the header dictionary's '{'");
    for (;;) {
      skip_ws();
      if (eat('}')) break;
      const size_t key_pos = pos_;
      const std::string key = parse_string("a quoted key");
      expect(':', "':' after key " + quote(key));
      if (key == "descr") {
        if (h.descr) error_at(key_pos, "duplicate key 'descr'");
        skip_ws();
        if (peek() == '[') error("structured dtypes (a list as 'descr') are not supported");
        h.descr = parse_string("a quoted dtype string as 'descr'");
      } else if (key == "fortran_order") {
        if (h.fortran_order) error_at(key_pos, "duplicate key 'fortran_order'");
        h.fortran_order = parse_bool();
      } else if (key == "shape") {
        if (h.shape) error_at(key_pos, "duplicate key 'shape'");
        h.shape = parse_shape();
      } else {
        error_at(key_pos, "unknown key " + quote(key) +
                              " (expected only 'descr', 'fortran_order' and 'shape')");
      }
      skip_ws();
      if (eat('}')) break;
      expect(',', "',' or '}' after the value of " + quote(key));
    }
    skip_ws();
    if (pos_ != text_.size()) error("unexpected " + next() + " after the header dictionary");
    const char* missing = !h.descr           ? "descr"
                          : !h.fortran_order ? "fortran_order"
                          : !h.shape         ? "shape"
                                             : nullptr;
    if (missing) fail(name_, std::string("bad header: missing key '") + missing + "'");
    return h;
  }

 private:
  [[noreturn]] void error_at(size_t pos, const std::string& problem) const {
    fail(name_, "bad header: " + problem + " (at header offset " + std::to_string(pos) + ")");
  }
  [[noreturn]] void error(const std::string& problem) const { error_at(pos_, problem); }

  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool at_end() const { return pos_ >= text_.size(); }
  // What comes next, for "expected X, found Y" messages.
  std::string next() const {
    return at_end() ? std::string("end of header") : quote(text_.substr(pos_, 12));
  }
  void skip_ws() {
    while (!at_end() && std::string_view(" \t\r\n\f\v").find(text_[pos_]) != std::string_view::npos)
      ++pos_;
  }
  bool eat(char c) {
    if (at_end() || text_[pos_] != c) return false;
    ++pos_;
    return true;
  }
  void expect(char c, const std::string& what) {
    skip_ws();
    if (!eat(c)) error("expected " + what + ", found " + next());
  }

  std::string parse_string(const std::string& what) {
    skip_ws();
    const char q = peek();
    if (q != '\'' && q != '"') error("expected " + what + ", found " + next());
    const size_t start = pos_++;
    for (;;) {
      // A Python one-line string cannot hold a raw newline: treat it as the missing quote.
      if (at_end() || text_[pos_] == '\n') error_at(start, "unterminated string");
      const char c = text_[pos_++];
      if (c == q) break;
      // numpy writes none; supporting escapes would only widen what a malicious file can say.
      if (c == '\\') error_at(pos_ - 1, "backslash escapes in strings are not supported");
    }
    return std::string(text_.substr(start + 1, pos_ - start - 2));
  }

  bool parse_bool() {
    skip_ws();
    const size_t start = pos_;
    while (!at_end() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) || peek() == '_'))
      ++pos_;
    const std::string_view word = text_.substr(start, pos_ - start);
    if (word == "True") return true;
    if (word == "False") return false;
    pos_ = start;
    error("'fortran_order' must be True or False, found " + next());
  }

  Shape parse_shape() {
    skip_ws();
    if (peek() == '[') error("'shape' must be a tuple such as (3, 4), not a list");
    expect('(', "a tuple as 'shape'");
    Shape dims;
    bool comma_after_last = false;
    for (;;) {
      skip_ws();
      if (eat(')')) break;
      if (dims.size() == kMaxRank)
        error("shape has more than " + std::to_string(kMaxRank) + " dimensions");
      dims.push_back(parse_dim());
      skip_ws();
      comma_after_last = eat(',');
      if (!comma_after_last) {
        expect(')', "',' or ')' in the shape");
        break;
      }
    }
    // In Python "(5)" is the integer 5, not a tuple; numpy writes a 1-D shape as "(5,)".
    if (dims.size() == 1 && !comma_after_last)
      error("'shape' must be a tuple, but (" + std::to_string(dims[0]) + ") is an integer");
    return dims;
  }

  int64_t parse_dim() {
    const size_t start = pos_;
    const bool negative = eat('-');
    if (!negative) eat('+');
    const size_t digits_start = pos_;
    int64_t value = 0;
    bool overflow = false;
    while (!at_end() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      const int d = text_[pos_++] - '0';
      if (value > (kInt64Max - d) / 10) overflow = true;
      if (!overflow) value = value * 10 + d;
    }
    const size_t ndigits = pos_ - digits_start;
    if (ndigits == 0) error_at(start, "expected a dimension (an integer), found " + next());
    if (ndigits > kMaxDigits)
      error_at(start, "dimension with " + std::to_string(ndigits) + " digits");
    if (overflow)
      error_at(start, "dimension " + std::string(text_.substr(start, pos_ - start)) +
                          " does not fit in 64 bits");
    // Python 2 wrote longs as "3L"; numpy's reader still accepts them in 1.0 and 2.0 headers.
    if (allow_long_suffix_ && (peek() == 'L' || peek() == 'l')) ++pos_;
    if (std::isalnum(static_cast<unsigned char>(peek())) || peek() == '.' || peek() == '_')
      error_at(start, "dimensions must be integers, found " + quote(text_.substr(start, 12)));
    if (negative && value != 0) error_at(start, "negative dimension -" + std::to_string(value));
    return value;
  }

  std::string_view text_;
  std::string_view name_;
  bool allow_long_suffix_;
  size_t pos_ = 0;
};

uint32_t read_le(const uint8_t* p, size_t n) {
  uint32_t v = 0;
  for (size_t i = n; i-- > 0;) v = v << 8 | p[i];
  return v;
}

std::string errno_str(int err) { return std::strerror(err); }

// Closes a file descriptor on every path out of npy_read/npy_write.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Tensor npy_parse(std::span<const uint8_t> bytes, std::string_view name) {
  const size_t size = bytes.size();
  const uint8_t* p = bytes.data();

  // --- preamble: magic, version, header length ---
  // A loop, not memcmp: an empty span may have a null data pointer.
  for (size_t i = 0; i < std::min(size, sizeof kMagic); ++i)
    if (p[i] != kMagic[i])
      fail(name, "not a .npy file (bad magic: expected \\x93NUMPY at the start)");
  if (size < 8) fail(name, "truncated: the file ends inside the .npy preamble");
  const int major = p[6], minor = p[7];
  if (!((major == 1 || major == 2 || major == 3) && minor == 0))
    fail(name, "unsupported .npy format version " + std::to_string(major) + "." +
                   std::to_string(minor) + " (supported: 1.0, 2.0, 3.0)");
  const size_t len_bytes = major == 1 ? 2 : 4;
  const size_t header_start = 8 + len_bytes;
  if (size < header_start) fail(name, "truncated: the file ends inside the .npy preamble");
  const size_t header_len = read_le(p + 8, len_bytes);
  if (header_len > size - header_start)
    fail(name, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                   std::to_string(size - header_start) + " bytes follow the preamble)");

  // --- header dict ---
  // 1.0/2.0 headers are latin-1 and 3.0 headers UTF-8; every valid header is plain ASCII, so
  // the parser works on bytes and any other byte is simply an unexpected character.
  const std::string_view text(reinterpret_cast<const char*>(p + header_start), header_len);
  if (text.empty() || text.back() != '\n')
    fail(name, "header is not terminated by a newline (truncated or corrupt header)");
  const Header h = HeaderParser(text.substr(0, text.size() - 1), name, major <= 2).parse();

  const DType dtype = parse_descr(*h.descr, name);
  if (*h.fortran_order)
    fail(name,
         "Fortran-order arrays are not supported; save a C-order copy "
         "(np.ascontiguousarray)");
  const Shape& shape = *h.shape;

  // --- sizes, each multiplication checked ---
  // Tensor::zeros derives C-order strides as running products of the dims with zero dims
  // counted as 1, so even an empty shape like (0, 2**40, 2**40) must keep that product in range.
  int64_t span = 1;
  for (int64_t d : shape) {
    if (d > 1 && span > kInt64Max / d)
      fail(name, "shape " + shape_str(shape) + " is too large: its size overflows 64 bits");
    span *= std::max<int64_t>(d, 1);
  }
  const int64_t numel = shape_numel(shape);  // cannot throw after the checks above
  const size_t isz = itemsize(dtype);
  if (numel > kInt64Max / static_cast<int64_t>(isz))
    fail(name, "shape " + shape_str(shape) + " of " + std::string(dtype_name(dtype)) +
                   " is too large: its byte size overflows 64 bits");
  const size_t nbytes = static_cast<size_t>(numel) * isz;

  // --- data: exactly nbytes must follow the header ---
  const size_t data_start = header_start + header_len;
  const size_t available = size - data_start;
  const std::string what =
      " bytes of data for shape " + shape_str(shape) + " " + std::string(dtype_name(dtype));
  if (available < nbytes)
    fail(name, "truncated data: header says " + std::to_string(nbytes) + what +
                   " but the file has " + std::to_string(available));
  if (available > nbytes)
    fail(name, "trailing data: header says " + std::to_string(nbytes) + what +
                   " but the file has " + std::to_string(available));
  const uint8_t* data = p + data_start;
  if (dtype == DType::kBool) {
    for (size_t i = 0; i < nbytes; ++i)
      if (data[i] > 1)
        fail(name, "bool element " + std::to_string(i) + " has byte value " +
                       std::to_string(data[i]) + " (must be 0 or 1)");
  }

  // Only now, with nbytes known to be present in the input, allocate.
  Tensor t = Tensor::zeros(shape, dtype);
  if (nbytes > 0) std::memcpy(t.data(), data, nbytes);
  return t;
}

Tensor npy_read(const std::string& path) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) fail(path, "cannot open: " + errno_str(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail(path, "cannot open: " + errno_str(errno));
  // open(2) succeeds on a directory; the read would then fail with a less clear EISDIR.
  if (S_ISDIR(st.st_mode)) fail(path, "cannot open: " + errno_str(EISDIR));

  std::vector<uint8_t> buf;
  // Sized one byte past the expected end so that the read loop sees EOF without a resize.
  if (S_ISREG(st.st_mode) && st.st_size >= 0) buf.resize(static_cast<size_t>(st.st_size) + 1);
  size_t used = 0;
  for (;;) {
    if (used == buf.size()) buf.resize(std::max<size_t>(buf.size() * 2, 64 * 1024));
    const ssize_t n = ::read(f.fd, buf.data() + used, buf.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(path, "cannot read: " + errno_str(errno));
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  buf.resize(used);
  return npy_parse(buf, path);
}

std::vector<uint8_t> npy_serialize(const Tensor& t) {
  const NpyType* type = nullptr;
  for (const NpyType& row : kTypes)
    if (row.dtype == t.dtype()) type = &row;
  if (type == nullptr)
    throw Error(ErrorKind::kUnsupported,
                std::string(dtype_name(t.dtype())) + " tensors cannot be stored in .npy");
  if (t.shape().size() > kMaxRank)
    throw Error(ErrorKind::kUnsupported, "a tensor of rank " + std::to_string(t.rank()) +
                                             " cannot be stored in .npy (at most " +
                                             std::to_string(kMaxRank) + " dimensions)");
  // .npy has no place for scales: writing the codes alone would silently lose them.
  if (!t.quant().scales.empty() || !t.quant().scales_f16.empty())
    throw Error(ErrorKind::kUnsupported,
                "a quantized tensor's scales cannot be stored in .npy (dequantize it first)");
  // A default-constructed Tensor has rank 0 but no element: .npy cannot express that.
  if (t.data() == nullptr && shape_numel(t.shape()) != 0)
    throw Error(ErrorKind::kInvalidInput, "cannot store a tensor without storage in .npy");

  // Exactly numpy's header, including its padding rule (numpy/lib/format.py, _wrap_header):
  // spaces then '\n', 1 to 64 of them, so that the data starts at a multiple of 64 bytes.
  const std::string dict = "{'descr': '" + std::string(type->write_descr) +
                           "', 'fortran_order': False, 'shape': " + shape_str(t.shape()) + ", }";
  const size_t hlen = dict.size() + 1;
  size_t prefix = sizeof kMagic + 2 + 2;
  size_t pad = kAlign - (prefix + hlen) % kAlign;
  int major = 1;
  if (hlen + pad > 0xffff) {  // unreachable with kMaxRank dims, kept for the format's sake
    major = 2;
    prefix = sizeof kMagic + 2 + 4;
    pad = kAlign - (prefix + hlen) % kAlign;
  }
  const size_t header_len = hlen + pad;

  const Tensor contiguous = t.is_contiguous() ? Tensor() : t.clone();
  const Tensor& src = t.is_contiguous() ? t : contiguous;
  const size_t nbytes = src.nbytes();

  std::vector<uint8_t> out;
  out.reserve(prefix + header_len + nbytes);
  out.insert(out.end(), kMagic, kMagic + sizeof kMagic);
  out.push_back(static_cast<uint8_t>(major));
  out.push_back(0);
  for (size_t i = 0; i < prefix - 8; ++i) out.push_back(static_cast<uint8_t>(header_len >> 8 * i));
  out.insert(out.end(), dict.begin(), dict.end());
  out.insert(out.end(), pad, ' ');
  out.push_back('\n');
  const auto* data = static_cast<const uint8_t*>(src.data());
  if (nbytes > 0) out.insert(out.end(), data, data + nbytes);
  // numpy reads any nonzero byte as True; write canonical 0/1 so that npy_parse accepts it.
  if (t.dtype() == DType::kBool)
    for (size_t i = out.size() - nbytes; i < out.size(); ++i) out[i] = out[i] != 0;
  return out;
}

void npy_write(const std::string& path, const Tensor& t) {
  const std::vector<uint8_t> bytes = npy_serialize(t);  // fails before touching the disk
  // Unique per process and call, in the target's directory so that rename() is atomic.
  static std::atomic<unsigned> counter{0};
  const std::string tmp =
      path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  auto fail_io = [&](int err, bool created) {
    if (created) ::unlink(tmp.c_str());
    throw Error(ErrorKind::kIo, path + ": cannot write: " + errno_str(err));
  };

  Fd f;
  f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (f.fd < 0) fail_io(errno, false);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(f.fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_io(errno, true);
    }
    done += static_cast<size_t>(n);
  }
  // Flush before the rename so that a crash cannot leave an empty file under the final name.
  if (::fsync(f.fd) != 0) fail_io(errno, true);
  const int fd = f.fd;
  f.fd = -1;
  if (::close(fd) != 0) fail_io(errno, true);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail_io(errno, true);
}

}  // namespace dynaprec
