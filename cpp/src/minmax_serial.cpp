#include "qshard/minmax.hpp"

namespace qshard {

void minmax_f32_serial(const float* x, size_t n, MinMaxKeys* out) noexcept {
    MinMaxKeys keys;
    for (size_t i = 0; i < n; ++i) {
        const int32_t key = float_key(x[i]);
        if (key < keys.lo) keys.lo = key;
        if (key > keys.hi) keys.hi = key;
    }
    *out = keys;
}

}  // namespace qshard
