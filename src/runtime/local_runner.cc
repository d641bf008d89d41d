// The local ModelRunner: the graph executor on a device of this process (runner.h).
#include <mutex>

#include "dynaprec/cpu_features.h"
#include "dynaprec/device.h"
#include "dynaprec/error.h"
#include "dynaprec/protocol.h"
#include "dynaprec/runner.h"
#include "dynaprec/thread_pool.h"

namespace dynaprec {
namespace {

uint64_t tensor_bytes(const Tensor& t) { return t.nbytes() + t.scale_bytes(); }

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    o += c;
  }
  return o;
}

class LocalRunner final : public ModelRunner {
 public:
  LocalRunner(const Model& m, const std::string& spec, const ExecutorOptions& eo)
      : device_(Registry::instance().open(spec, eo.threads)), exec_(m, eo) {}

  const std::vector<ValueInfo>& inputs() const override { return exec_.inputs(); }
  const std::vector<ValueInfo>& outputs() const override { return exec_.outputs(); }
  const std::vector<LayerInfo>& layers() const override { return exec_.layers(); }

  std::string device_json() const override {
    const DeviceCaps& c = device_->caps();
    return "{\"name\": \"" + json_escape(c.name) + "\", \"spec\": \"" + json_escape(c.spec) +
           "\", \"description\": \"" + json_escape(c.description) +
           "\", \"threads\": " + std::to_string(ThreadPool::default_pool().threads()) + "}";
  }

  PlanReply negotiate(const PlanProposal& p) override { return answer_proposal(*device_, p); }

  // On this CPU (docs/benchmarks.md): fp16 convolutions run slower than fp32, fp8 no faster than
  // bf16 and below int8 in quality, int4 convolutions slower than int8: they are not steps down.
  // For matmuls int4 halves int8's weight bytes, which is what bounds small-batch matmuls.
  std::vector<Format> ladder(size_t layer) const override {
    const LayerInfo& li = exec_.layers().at(layer);
    const bool conv = li.op == "Conv" || li.op == "ConvTranspose";
    const OpKind op = conv ? OpKind::kConv2d : OpKind::kMatmul;
    const std::vector<Format> want =
        conv ? std::vector<Format>{Format::kFp32, Format::kBf16, Format::kInt8}
             : std::vector<Format>{Format::kFp32, Format::kBf16, Format::kInt8, Format::kInt4};
    std::vector<Format> out;
    for (Format f : want) {
      const Format one[] = {f};
      if (!device_->supports(op, one)) out.push_back(f);
    }
    return out;
  }

  TensorMap run(const TensorMap& in, const Plan& plan, RunStats* stats, uint64_t /*seq*/,
                Traffic* traffic) override {
    // The in-process transfer: tensors named in plan.io cross narrowed, as over the wire
    // (protocol.h), so that this device and a remote one give the same bits at the same plan.
    Traffic t;
    auto cross = [&plan](const TensorMap& m, uint64_t* bytes) {
      TensorMap r;
      for (const auto& [name, x] : m) {
        auto f = plan.io.find(name);
        const Tensor e = f == plan.io.end() ? x : encode_transfer(x, f->second);
        *bytes += tensor_bytes(e);
        r[name] = f == plan.io.end() ? e : decode_transfer(e);
      }
      return r;
    };
    TensorMap out = cross(exec_.run(cross(in, &t.to_device), plan, stats), &t.from_device);
    if (traffic) *traffic = t;
    return out;
  }

 private:
  std::shared_ptr<Device> device_;
  Executor exec_;
};

RemoteRunnerFactory& factory_slot() {
  static RemoteRunnerFactory f;
  return f;
}

}  // namespace

std::unique_ptr<ModelRunner> open_local_runner(const Model& m, const std::string& spec,
                                               const ExecutorOptions& eo) {
  return std::make_unique<LocalRunner>(m, spec, eo);
}

void set_remote_runner_factory(RemoteRunnerFactory f) { factory_slot() = std::move(f); }
const RemoteRunnerFactory& remote_runner_factory() { return factory_slot(); }

}  // namespace dynaprec
