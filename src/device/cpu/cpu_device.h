// The CPU as a dynaprec device: oneDNN and Highway kernels, the default thread pool.
#pragma once

#include <memory>

#include "dynaprec/device.h"

namespace dynaprec {

/// Opens the CPU device; threads <= 0: all cores.
std::shared_ptr<Device> open_cpu_device(int threads);

}  // namespace dynaprec
