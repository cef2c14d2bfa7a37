// ---- sima_requantize.h ----
namespace sima_kernels {

// ---- requantize (sima.requantize): y = requant(x - zp_in) per channel ----
template <int MODE, typename X, typename Y>
SIMA_INLINE void requantize_loop(const X* __restrict x, Y* __restrict y, int64_t n, int64_t zp_in, int64_t m,
                                 int64_t sh, int64_t zp, int64_t lo, int64_t hi) {
  for (int64_t i = 0; i < n; ++i) y[i] = (Y)clamp(requant((int64_t)x[i] - zp_in, m, sh, MODE) + zp, lo, hi);
}
template <int MODE, typename X, typename Y>
SIMA_INLINE void requantize_body(const X* x, Y* y, int64_t outer, int channels, int64_t inner, int64_t zp_in,
                                 const Epilogue& e) {
  for (int64_t o = 0; o < outer; ++o)
    for (int c = 0; c < channels; ++c) {
      const int64_t at = (o * channels + c) * inner;
      requantize_loop<MODE>(x + at, y + at, inner, zp_in, e.mult[c], e.shift[c], e.zp, e.lo, e.hi);
    }
}
template <int MODE, typename X, typename Y>
SIMA_AVX512 void requantize_avx512(const X* x, Y* y, int64_t outer, int channels, int64_t inner, int64_t zp_in,
                                   const Epilogue& e) {
  requantize_body<MODE>(x, y, outer, channels, inner, zp_in, e);
}
template <int MODE, typename X, typename Y>
SIMA_AVX2 void requantize_avx2(const X* x, Y* y, int64_t outer, int channels, int64_t inner, int64_t zp_in,
                               const Epilogue& e) {
  requantize_body<MODE>(x, y, outer, channels, inner, zp_in, e);
}
template <int MODE, typename X, typename Y>
void requantize_generic(const X* x, Y* y, int64_t outer, int channels, int64_t inner, int64_t zp_in,
                        const Epilogue& e) {
  requantize_body<MODE>(x, y, outer, channels, inner, zp_in, e);
}
// x viewed as [outer][channels][inner]; e.mult / e.shift per channel (channels 1: per tensor).
template <int MODE, typename X, typename Y>
static void requantize(const X* x, Y* y, int64_t outer, int channels, int64_t inner, int64_t zp_in,
                       const Epilogue& e) {
  const int isa = host_isa();
  (isa == kAvx512 ? requantize_avx512<MODE, X, Y>
                  : (isa == kAvx2 ? requantize_avx2<MODE, X, Y> : requantize_generic<MODE, X, Y>))(
      x, y, outer, channels, inner, zp_in, e);
}

}  // namespace sima_kernels
