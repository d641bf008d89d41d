// The CPU as a dynaprec device: oneDNN and Highway kernels, the default thread pool.
#pragma once

#include <memory>

#include "dynaprec/device.h"

namespace dynaprec {

/// Opens the CPU device; threads <= 0: all cores.
std::shared_ptr<Device> open_cpu_device(int threads);

/// Opens the CPU device from a spec (Registry::open). Options:
///   formats=F[,F...]  matmul and conv2d run only in these formats (fp32 is required); the
///                     others are refused as disabled by the device spec. Conversions (uploads)
///                     keep every format. For testing counter-offers and for hosts that want
///                     to keep a device off some formats.
/// Throws Error(kUsage) naming the valid keys or formats for anything else.
std::shared_ptr<Device> open_cpu_device(const DeviceSpec& spec, int threads);

}  // namespace dynaprec
