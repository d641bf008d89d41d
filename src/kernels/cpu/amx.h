// What every AMX kernel needs (pwconv_vnni.cc, gemm_amx.cc): Linux's permission to use the tile
// data, and one tile configuration, all eight tiles 16 rows of 64 bytes. Tiles 0-3 are a 2x2
// block of 16x16 accumulators (32 rows x 32 lanes of 4 bytes), 4-5 the A operand's two row
// halves, 6-7 the B operand's two column halves.
#pragma once

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

namespace dynaprec::cpu {

/// Whether Linux lets this process use the tile data (asked once; oneDNN may have asked first).
inline bool amx_permitted() {
  static const bool ok = [] {
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
}

struct alignas(64) AmxTileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

/// Loads the configuration (every tile 16 rows x 64 bytes) on this thread.
__attribute__((target("amx-tile"))) inline void amx_begin() {
  AmxTileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  // GCC 12 does not see that ldtilecfg reads the whole struct and drops these stores.
  asm volatile("" : : "m"(cfg) : "memory");
  _tile_loadconfig(&cfg);
}
__attribute__((target("amx-tile"))) inline void amx_end() { _tile_release(); }

/// The four accumulator tiles zeroed; stored to / loaded from a 32x32 block of 4-byte lanes
/// whose rows are `stride` bytes apart (tile 1: lanes 16-31, tile 2: rows 16-31).
__attribute__((target("amx-tile"), always_inline)) inline void amx_zero_acc() {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
}
__attribute__((target("amx-tile"), always_inline)) inline void amx_store_acc(void* acc,
                                                                             int64_t stride = 128) {
  auto* a = static_cast<std::byte*>(acc);
  _tile_stored(0, a, stride);
  _tile_stored(1, a + 64, stride);
  _tile_stored(2, a + 16 * stride, stride);
  _tile_stored(3, a + 16 * stride + 64, stride);
}
__attribute__((target("amx-tile"), always_inline)) inline void amx_load_acc(const void* acc,
                                                                            int64_t stride) {
  const auto* a = static_cast<const std::byte*>(acc);
  _tile_loadd(0, a, stride);
  _tile_loadd(1, a + 64, stride);
  _tile_loadd(2, a + 16 * stride, stride);
  _tile_loadd(3, a + 16 * stride + 64, stride);
}

}  // namespace dynaprec::cpu
