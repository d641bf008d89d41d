// The CPU LSTM: the input projection of all steps in one dynaprec::matmul call per direction,
// the recurrent projection in one call per step (the running entries' h rows), the gates with
// detail::lstm_cell in fp32 (lstm.h). Bidirectional runs its directions one after the other,
// each matmul on all threads: a step's GEMM is the critical path, and splitting the threads
// between the directions would halve each one's.
#include <algorithm>
#include <string>
#include <vector>

#include "dynaprec/error.h"
#include "dynaprec/lstm.h"

namespace dynaprec {

LstmOutputs lstm(const Tensor& x, const LstmWeights& w, const LstmParams& p, const Tensor* seq_lens,
                 const Tensor* init_h, const Tensor* init_c, int threads) {
  const detail::LstmProblem pb = detail::lstm_prepare(x, w, p, seq_lens, init_h, init_c);
  const int64_t S = pb.seq, D = pb.dirs, B = pb.batch, H = pb.hidden, G = 4 * H;
  std::vector<float> y(static_cast<size_t>(S * D * B * H), 0.0f);
  std::vector<float> h = pb.h0, c = pb.c0;
  if (S == 0 || B == 0) return detail::lstm_outputs(pb, p, y, h, c);
  // The running entries at step s are those with len > s; with every entry at full length
  // (the common case) the h rows are the recurrent matmul's X in place.
  const bool all_full =
      std::all_of(pb.lens.begin(), pb.lens.end(), [&](int64_t l) { return l == S; });
  std::vector<float> xw(static_cast<size_t>(S * B * G)), hin(static_cast<size_t>(B * H)),
      hr(static_cast<size_t>(B * G));
  std::vector<int64_t> run;
  run.reserve(static_cast<size_t>(B));
  try {
    for (int64_t d = 0; d < D; ++d) {
      const bool reverse = p.direction == LstmDirection::kReverse || d == 1;
      matmul(pb.x.data(), S * B, w.w[d], w.bias.data() + d * G, xw.data(), threads);
      const float* pe = w.peepholes.empty() ? nullptr : w.peepholes.data() + d * 3 * H;
      const RnnActivationFn* acts = pb.acts.data() + 3 * d;
      float* hd = h.data() + d * B * H;
      float* cd = c.data() + d * B * H;
      for (int64_t s = 0; s < S; ++s) {
        if (all_full) {
          const int64_t t = reverse ? S - 1 - s : s;
          matmul(hd, B, w.r[d], nullptr, hr.data(), threads);
          for (int64_t b = 0; b < B; ++b) {
            detail::lstm_cell(xw.data() + (t * B + b) * G, hr.data() + b * G, pe, H, p, acts,
                              cd + b * H, hd + b * H);
            std::copy_n(hd + b * H, H, y.data() + ((t * D + d) * B + b) * H);
          }
          continue;
        }
        run.clear();
        for (int64_t b = 0; b < B; ++b)
          if (pb.lens[static_cast<size_t>(b)] > s) run.push_back(b);
        if (run.empty()) break;
        const auto m = static_cast<int64_t>(run.size());
        const float* hsrc = hd;
        if (m != B) {  // gather the running rows
          for (int64_t a = 0; a < m; ++a) std::copy_n(hd + run[a] * H, H, hin.data() + a * H);
          hsrc = hin.data();
        }
        matmul(hsrc, m, w.r[d], nullptr, hr.data(), threads);
        for (int64_t a = 0; a < m; ++a) {
          const int64_t b = run[a];
          const int64_t t = reverse ? pb.lens[static_cast<size_t>(b)] - 1 - s : s;
          detail::lstm_cell(xw.data() + (t * B + b) * G, hr.data() + a * G, pe, H, p, acts,
                            cd + b * H, hd + b * H);
          std::copy_n(hd + b * H, H, y.data() + ((t * D + d) * B + b) * H);
        }
      }
    }
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kInvalidInput) throw;
    throw Error(ErrorKind::kInvalidInput, std::string("LSTM: ") + e.what());
  }
  return detail::lstm_outputs(pb, p, y, h, c);
}

}  // namespace dynaprec
