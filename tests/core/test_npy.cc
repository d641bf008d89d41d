// Tests of the .npy reader and writer (src/core/npy.cc).
#include "dynaprec/npy.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "dynaprec/error.h"
#include "dynaprec/tensor.h"

namespace dynaprec {
namespace {

using Bytes = std::vector<uint8_t>;
using namespace std::literals;

Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

std::string string_of(const Bytes& b) { return std::string(b.begin(), b.end()); }

// A .npy file built by hand: magic, version, header length (u16 for major 1, else u32), the
// header text exactly as given (the caller supplies padding and '\n'), then the data.
Bytes make_npy(int major, std::string_view header, std::string_view data = {}, int minor = 0) {
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += static_cast<char>(minor);
  const size_t n = header.size();
  for (int i = 0; i < (major == 1 ? 2 : 4); ++i) out += static_cast<char>(n >> (8 * i) & 0xff);
  out += header;
  out += data;
  return bytes_of(out);
}

// Pads a header dict the way numpy does: spaces and a final '\n' up to a multiple of 64.
std::string padded(std::string dict, int major = 1) {
  const size_t prefix = major == 1 ? 10 : 12;
  const size_t pad = 64 - (prefix + dict.size() + 1) % 64;
  return dict + std::string(pad, ' ') + "\n";
}

std::string f32_bytes(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), std::data(v), s.size());
  return s;
}

// Expects npy_parse to refuse `file` with kInvalidInput, naming the file and the problem.
void expect_refused(const Bytes& file, std::string_view word) {
  SCOPED_TRACE(std::string("expected a refusal mentioning '") + std::string(word) + "'");
  try {
    npy_parse(file, "bad.npy");
    ADD_FAILURE() << "npy_parse accepted the file";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput) << msg;
    EXPECT_EQ(msg.rfind("bad.npy: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(word), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message spans lines: " << msg;
  }
}

void expect_same(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.shape(), b.shape());
  ASSERT_EQ(a.dtype(), b.dtype());
  ASSERT_EQ(a.nbytes(), b.nbytes());
  if (a.nbytes() > 0) {
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0);
  }
}

// Fills a tensor with a byte pattern that is valid for its dtype (0/1 for bool).
Tensor patterned(const Shape& shape, DType dtype) {
  Tensor t = Tensor::zeros(shape, dtype);
  auto* p = t.data_as<uint8_t>();
  for (size_t i = 0; i < t.nbytes(); ++i)
    p[i] = dtype == DType::kBool ? (i * 7 + 3) % 5 % 2 : static_cast<uint8_t>(i * 37 + 11);
  return t;
}

// A scratch directory, removed at the end of the test.
class NpyFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("dynaprec_npy_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::filesystem::path dir_;
};

const DType kNpyDTypes[] = {DType::kF32, DType::kF16, DType::kF64, DType::kI8,  DType::kI16,
                            DType::kI32, DType::kI64, DType::kU8,  DType::kBool};

TEST(NpyRoundTrip, EveryDTypeAndShape) {
  const Shape shapes[] = {{}, {0}, {1}, {3, 4}, {2, 0, 5}, {2, 1, 3, 2, 1, 2}};
  for (DType dtype : kNpyDTypes) {
    for (const Shape& shape : shapes) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " " + shape_str(shape));
      const Tensor t = patterned(shape, dtype);
      const Bytes file = npy_serialize(t);
      // Data starts at a multiple of 64, right after a header ending in '\n'.
      ASSERT_EQ(file[6], 1);
      const size_t data_start = 10 + (file[8] | file[9] << 8);
      EXPECT_EQ(data_start % 64, 0u);
      EXPECT_EQ(file[data_start - 1], '\n');
      EXPECT_EQ(file.size(), data_start + t.nbytes());
      expect_same(npy_parse(file, "rt.npy"), t);
    }
  }
}

TEST(NpyRoundTrip, HeaderSpelling) {
  const auto header_of = [](const Tensor& t) {
    const Bytes f = npy_serialize(t);
    return string_of(f).substr(10, f[8] | f[9] << 8);
  };
  EXPECT_EQ(header_of(Tensor::zeros({5}, DType::kI8))
                .rfind("{'descr': '|i1', 'fortran_order': False, 'shape': (5,), }", 0),
            0u);
  EXPECT_EQ(header_of(Tensor::zeros({}, DType::kBool))
                .rfind("{'descr': '|b1', 'fortran_order': False, 'shape': (), }", 0),
            0u);
  EXPECT_EQ(header_of(Tensor::zeros({1, 2}, DType::kU8))
                .rfind("{'descr': '|u1', 'fortran_order': False, 'shape': (1, 2), }", 0),
            0u);
  EXPECT_EQ(header_of(Tensor::zeros({7}, DType::kI64)).rfind("{'descr': '<i8'", 0), 0u);
}

// Byte for byte what numpy writes for np.arange(6, dtype='<f4').reshape(2, 3).
TEST(NpyRoundTrip, MatchesNumpyBytes) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  ASSERT_EQ(dict.size(), 59u);
  const std::string data = f32_bytes({0, 1, 2, 3, 4, 5});
  const Bytes numpy_file = bytes_of(std::string("\x93NUMPY\x01\x00\x76\x00", 10) + dict +
                                    std::string(58, ' ') + "\n" + data);
  ASSERT_EQ(numpy_file.size(), 128u + 24u);

  const Tensor t = npy_parse(numpy_file, "numpy.npy");
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.dtype(), DType::kF32);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(t.data_as<float>()[i], static_cast<float>(i));
  EXPECT_EQ(npy_serialize(t), numpy_file);
}

TEST(NpyRoundTrip, NonContiguousWrittenInCOrder) {
  // A (2, 3) buffer viewed transposed as (3, 2).
  int32_t buf[6] = {0, 1, 2, 3, 4, 5};
  const Tensor view = Tensor::borrow(buf, {3, 2}, DType::kI32, {1, 3});
  ASSERT_FALSE(view.is_contiguous());
  const Tensor back = npy_parse(npy_serialize(view), "t.npy");
  EXPECT_EQ(back.shape(), (Shape{3, 2}));
  const int32_t want[6] = {0, 3, 1, 4, 2, 5};
  EXPECT_EQ(std::memcmp(back.data(), want, sizeof want), 0);
}

TEST(NpyRoundTrip, BoolWrittenAsZeroOrOne) {
  uint8_t raw[3] = {0, 2, 255};
  const Tensor t = Tensor::borrow(raw, {3}, DType::kBool);
  const Tensor back = npy_parse(npy_serialize(t), "b.npy");
  EXPECT_EQ(back.data_as<uint8_t>()[0], 0);
  EXPECT_EQ(back.data_as<uint8_t>()[1], 1);
  EXPECT_EQ(back.data_as<uint8_t>()[2], 1);
}

TEST(NpyRoundTrip, UnsupportedDTypes) {
  for (DType dtype : {DType::kBF16, DType::kF8E4M3, DType::kF8E5M2, DType::kI4}) {
    SCOPED_TRACE(std::string(dtype_name(dtype)));
    try {
      npy_serialize(Tensor::zeros({4}, dtype));
      ADD_FAILURE() << "serialized";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
      EXPECT_NE(std::string(e.what()).find("cannot be stored in .npy"), std::string::npos);
    }
  }
}

TEST(NpyRead, Versions) {
  const std::string data = f32_bytes({1.5f, -2});
  for (int major : {1, 2, 3}) {
    SCOPED_TRACE(major);
    const Tensor t = npy_parse(
        make_npy(major, padded("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", major),
                 data),
        "v.npy");
    EXPECT_EQ(t.shape(), (Shape{2}));
    EXPECT_EQ(t.data_as<float>()[0], 1.5f);
    EXPECT_EQ(t.data_as<float>()[1], -2.0f);
  }
}

TEST(NpyRead, LenientHeaderSpellings) {
  const std::string data = f32_bytes({1, 2, 3, 4, 5, 6});
  const char* headers[] = {
      "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 3)}\n",
      "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}\n",
      "  {  'fortran_order' :False ,'shape':(  2 ,3 , ) ,  'descr' : \"<f4\" , }     \n",
      "{'descr':'<f4','fortran_order':False,'shape':(2,3),}\n",
      "{\n 'descr': '=f4',\n 'fortran_order': False,\n 'shape': (2, 3)\n}\n",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }\n",  // Python 2
      "{'descr': '<f4', 'fortran_order': False, 'shape': (+2, 3), }\t\r\n",
  };
  for (const char* h : headers) {
    SCOPED_TRACE(h);
    const Tensor t = npy_parse(make_npy(1, h, data), "h.npy");
    EXPECT_EQ(t.shape(), (Shape{2, 3}));
    EXPECT_EQ(t.dtype(), DType::kF32);
    EXPECT_EQ(t.data_as<float>()[5], 6.0f);
  }
}

TEST(NpyRead, DescrSpellings) {
  const struct {
    const char* descr;
    DType dtype;
  } cases[] = {
      {"<f2", DType::kF16},  {"<f4", DType::kF32}, {"<f8", DType::kF64}, {"=f8", DType::kF64},
      {"|i1", DType::kI8},   {"<i1", DType::kI8},  {"<i2", DType::kI16}, {"<i4", DType::kI32},
      {"=i4", DType::kI32},  {"<i8", DType::kI64}, {"|u1", DType::kU8},  {"<u1", DType::kU8},
      {"|b1", DType::kBool},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.descr);
    const size_t isz = static_cast<size_t>(dtype_bits(c.dtype) / 8);
    const Tensor t = npy_parse(make_npy(1,
                                        padded(std::string("{'descr': '") + c.descr +
                                               "', 'fortran_order': False, 'shape': (3,), }"),
                                        std::string(3 * isz, '\0')),
                               "d.npy");
    EXPECT_EQ(t.dtype(), c.dtype);
    EXPECT_EQ(t.shape(), (Shape{3}));
  }
}

TEST(NpyRefuse, Preamble) {
  const std::string ok = padded("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }");
  const std::string data = f32_bytes({1, 2});
  Bytes bad_magic = make_npy(1, ok, data);
  bad_magic[1] = 'X';
  expect_refused(bad_magic, "magic");
  expect_refused(bytes_of("PK\x03\x04 this is a zip"), "magic");
  expect_refused(make_npy(4, ok, data), "version 4.0");
  expect_refused(make_npy(1, ok, data, 1), "version 1.1");
  expect_refused(bytes_of("\x93NUMPY\x01"), "truncated");
  expect_refused(bytes_of("\x93NUMPY\x02\x00\x10\x00"sv), "truncated");
  expect_refused(bytes_of(""), "truncated");

  Bytes too_long = make_npy(1, ok, data);
  too_long[8] = 0xff;
  too_long[9] = 0x7f;
  expect_refused(too_long, "past the end");
  Bytes too_long3 = make_npy(3, padded(ok, 3), data);
  too_long3[11] = 0xff;
  expect_refused(too_long3, "past the end");
}

TEST(NpyRefuse, Data) {
  const std::string h = padded("{'descr': '<f4', 'fortran_order': False, 'shape': (10, 15), }");
  expect_refused(make_npy(1, h, std::string(400, '\0')), "truncated");
  // The message of the brief's example: name, expected bytes, shape, dtype, actual bytes.
  try {
    npy_parse(make_npy(1, h, std::string(400, '\0')), "x.npy");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "x.npy: truncated data: header says 600 bytes of data for shape (10, 15) "
                  "float32 but the file has 400"),
              std::string::npos)
        << e.what();
  }
  expect_refused(make_npy(1, h, std::string(601, '\0')), "trailing");
  expect_refused(make_npy(1, padded("{'descr': '<f4', 'fortran_order': False, 'shape': (), }")),
                 "truncated");
  expect_refused(make_npy(1, padded("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }"),
                          std::string("\x01\x00\x02", 3)),
                 "byte value 2");
}

TEST(NpyRefuse, Header) {
  const auto file = [](const std::string& dict) {
    return make_npy(1, padded(dict), std::string(24, '\0'));
  };
  const std::string rest = "'fortran_order': False, 'shape': (2, 3), }";
  expect_refused(file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }"), "Fortran");
  expect_refused(file("{'descr': '<f4', 'fortran_order': True, 'shape': (), }"), "Fortran");
  expect_refused(file("{'descr': '>f4', " + rest), "big-endian");
  expect_refused(file("{'descr': '>i2', " + rest), "big-endian");
  expect_refused(file("{'descr': '<c8', " + rest), "'<c8'");
  expect_refused(file("{'descr': '<u4', " + rest), "unsupported dtype");
  expect_refused(file("{'descr': '|f4', " + rest), "unsupported dtype");
  expect_refused(file("{'descr': 'f4', " + rest), "unsupported dtype");
  expect_refused(file("{'descr': '', " + rest), "unsupported dtype");
  expect_refused(file("{'descr': [('a', '<f4')], " + rest), "structured");
  expect_refused(file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }"),
                 "negative dimension -3");
  expect_refused(file("{'descr': '<f4', 'fortran_order': False, 'shape': "
                      "(1099511627776, 1099511627776), }"),
                 "overflows");
  expect_refused(file("{'descr': '<f4', 'fortran_order': False, 'shape': "
                      "(0, 1099511627776, 1099511627776), }"),
                 "overflows");
  expect_refused(file("{'descr': '<f8', 'fortran_order': False, 'shape': "
                      "(2305843009213693952,), }"),
                 "overflows");
  expect_refused(file("{'descr': '<f4', 'fortran_order': False, 'shape': "
                      "(99999999999999999999999999,), }"),
                 "digits");
  expect_refused(file("{'descr': '<f4', 'fortran_order': False, 'shape': "
                      "(9999999999999999999,), }"),
                 "64 bits");
  expect_refused(file("{'descr': '<f4', 'fortran_order': False, 'shape': (2.0, 3), }"), "integers");
  expect_refused(file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }"), "dimension");
  expect_refused(file("{'descr': '<f4', 'fortran_order': False, 'shape': (6), }"), "tuple");
  expect_refused(file("{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3], }"), "tuple");
  expect_refused(file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,, 3), }"), "dimension");
  expect_refused(file("{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3), }"), "True or False");
  expect_refused(file("{'descr': '<f4', 'shape': (2, 3), }"), "missing key 'fortran_order'");
  expect_refused(file("{" + rest), "missing key 'descr'");
  expect_refused(file("{'descr': '<f4', 'fortran_order': False}"), "missing key 'shape'");
  expect_refused(file("{'descr': '<f4', 'descr': '<f4', " + rest), "duplicate key 'descr'");
  expect_refused(file("{'descr': '<f4', 'shape': (2, 3), " + rest), "duplicate key 'shape'");
  expect_refused(file("{'descr': '<f4', 'extra': 1, " + rest), "unknown key 'extra'");
  expect_refused(file("{'descr': '<f4, " + rest), "after the value of 'descr'");
  expect_refused(make_npy(1, "{'descr\n"), "unterminated string");
  expect_refused(file("{'descr': '<f4', " + rest + " junk"), "after the header dictionary");
  expect_refused(file("{'descr': '<f4', " + rest + "}"), "after the header dictionary");
  expect_refused(file("{'descr': '<f\\x34', " + rest), "backslash");
  expect_refused(file("{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3)}"), "','");
  expect_refused(file("'descr': '<f4', " + rest), "'{'");
  expect_refused(file("{,}"), "quoted key");
  expect_refused(file(""), "'{'");
  // Not ending in '\n': a header whose padding was cut or overwritten.
  expect_refused(make_npy(1, "{'descr': '<f4', " + rest + "    ", std::string(24, '\0')),
                 "newline");
  expect_refused(make_npy(1, ""), "newline");
  // Rank beyond numpy's 64.
  std::string big = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  for (int i = 0; i < 65; ++i) big += "1, ";
  expect_refused(make_npy(1, padded(big + "), }"), std::string(4, '\0')), "dimensions");
}

// Error messages stay one line whatever bytes the header holds.
TEST(NpyRefuse, MessagesQuoteHostileBytes) {
  const std::string dict =
      std::string("{'descr': '<f\n\x01\xff', 'fortran_order': False, 'shape': (1,), }");
  expect_refused(make_npy(3, padded(dict, 3), "x"), "unterminated");
  expect_refused(make_npy(3,
                          padded("{'descr': '<\x01\xff', 'fortran_order': False, 'shape': "
                                 "(1,), }",
                                 3),
                          "x"),
                 "\\x01\\xff");
}

// Every prefix of a valid file and every one-byte change of its preamble and header either
// parses or throws dynaprec::Error: never another exception, never a crash (run under ASan).
TEST(NpyRobust, TruncationsAndCorruptions) {
  for (int major : {1, 2, 3}) {
    SCOPED_TRACE(major);
    const Bytes valid = make_npy(
        major, padded("{'descr': '<i2', 'fortran_order': False, 'shape': (2, 3), }", major),
        std::string(12, '\x05'));
    const size_t data_start = valid.size() - 12;
    const auto parse_or_error = [](const Bytes& b) {
      try {
        (void)npy_parse(b, "fuzz.npy");
        return true;
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput) << e.what();
        return false;
      }
    };
    for (size_t n = 0; n < valid.size(); ++n) {
      const Bytes prefix(valid.begin(), valid.begin() + static_cast<ptrdiff_t>(n));
      EXPECT_FALSE(parse_or_error(prefix)) << "a " << n << "-byte prefix parsed";
    }
    EXPECT_TRUE(parse_or_error(valid));
    size_t parsed = 0;
    for (size_t i = 0; i < data_start; ++i) {
      Bytes b = valid;
      for (int v = 0; v < 256; ++v) {
        b[i] = static_cast<uint8_t>(v);
        parsed += parse_or_error(b);
      }
    }
    // Harmless changes exist (the unchanged byte itself, padding spaces to tabs, ...).
    EXPECT_GE(parsed, data_start);
  }
}

TEST_F(NpyFile, WriteThenRead) {
  const Tensor t = patterned({4, 5}, DType::kF64);
  const std::string p = path("a.npy");
  npy_write(p, t);
  expect_same(npy_read(p), t);
  // Overwrite in place, and leave no temporary behind.
  const Tensor u = patterned({3}, DType::kI16);
  npy_write(p, u);
  expect_same(npy_read(p), u);
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1u);
}

TEST_F(NpyFile, ReadErrors) {
  for (const std::string& p : {path("missing.npy"), dir_.string()}) {
    SCOPED_TRACE(p);
    try {
      npy_read(p);
      ADD_FAILURE();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput);
      EXPECT_EQ(std::string(e.what()).rfind(p + ": cannot open: ", 0), 0u) << e.what();
    }
  }
  const std::string bad = path("bad.npy");
  std::ofstream(bad, std::ios::binary) << "\x93NUMPY\x01\x00\x05\x00{}"sv;
  try {
    npy_read(bad);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput);
    EXPECT_EQ(std::string(e.what()).rfind(bad + ": ", 0), 0u) << e.what();
  }
}

TEST_F(NpyFile, WriteErrors) {
  const std::string p = path("no/such/dir/a.npy");
  try {
    npy_write(p, patterned({2}, DType::kF32));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_EQ(std::string(e.what()).rfind(p + ": cannot write: ", 0), 0u) << e.what();
  }
  // Writing over a directory fails at the rename, and the temporary is cleaned up.
  std::filesystem::create_directory(path("d.npy"));
  EXPECT_THROW(npy_write(path("d.npy"), patterned({2}, DType::kF32)), Error);
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1u);
  // A dtype .npy cannot hold is refused before anything is created.
  EXPECT_THROW(npy_write(path("bf.npy"), Tensor::zeros({2}, DType::kBF16)), Error);
  EXPECT_FALSE(std::filesystem::exists(path("bf.npy")));
}

}  // namespace
}  // namespace dynaprec
