// Integer kernels of the sima C++ codegen, included (as text) at the top of every region's source.
//
// The arithmetic is tvm_sima.math's: int8 / uint8 x int8 products summed exactly in int32, bias and
// requantization in int64 (sima_kernels::requant). What is fast here does not change a bit of it:
//  * convolutions and dense layers are one GEMM, C[M][N] = A[M][K] . B[K][N], on int16 copies of the
//    int8 operands: AVX-512 VNNI vpdpwssd or AVX2 vpmaddwd multiply int16 pairs and add both products
//    to an int32 lane, exact for 8-bit operands (|2 * 255 * 128| < 2^31; no int16 saturation, unlike
//    vpmaddubsw), so every instruction set gives the integers the plain C++ loop gives;
//  * B is packed in panels of PANEL columns, each column's K values as int16 pairs (k, k + 1);
//  * the instruction set is chosen when the kernel runs (CPUID), never at compile time: the same
//    library runs on a CPU without AVX-512. TVM_SIMA_KERNEL_ISA=generic|avx2|avx512 asks for a lower
//    one (tests run every path on one machine);
//  * work is split over TVM's thread pool (TVMBackendParallelLaunch, TVM_NUM_THREADS threads).
#pragma GCC optimize("O3")
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

extern "C" {
typedef struct {
  void* sync_handle;
  int32_t num_task;
} TVMParallelGroupEnv;
typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv* penv, void* cdata);
int TVMBackendParallelLaunch(FTVMParallelLambda flambda, void* cdata, int num_task);
}

// TVM compiles this source without optimisation flags (-O0): the pragma above asks for -O3, and
// at -O0 GCC inlines only always_inline functions, so every helper of an inner loop is one.
#define SIMA_INLINE static inline __attribute__((always_inline))
#define SIMA_LAMBDA_INLINE __attribute__((always_inline))
#define SIMA_AVX2 __attribute__((target("avx2,fma,bmi2")))
#define SIMA_AVX512_TARGET "avx2,fma,bmi2,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"
#define SIMA_AVX512 __attribute__((target(SIMA_AVX512_TARGET)))
#define SIMA_AVX512_INLINE static inline __attribute__((always_inline, target(SIMA_AVX512_TARGET)))

namespace sima_kernels {

// ---- requantization (the scalar reference every path ends in) ----
SIMA_INLINE int64_t round_shift(int64_t x, int64_t n, int mode) {
  const int64_t half = (int64_t(1) << n) >> 1;
  const int64_t h1 = n > 0 ? 1 : 0;
  if (mode == 0) return (x + half) >> n;
  if (mode == 1) return (x + half - h1 + ((x >> n) & 1) * h1) >> n;
  return (x + half - (x < 0 ? 1 : 0) * h1) >> n;
}
SIMA_INLINE int64_t srdhm(int64_t a, int64_t b) {
  const int64_t ab = a * b;
  const int64_t nudged = ab + (ab >= 0 ? (int64_t(1) << 30) : (int64_t(1) - (int64_t(1) << 30)));
  const int64_t t = (nudged + ((nudged >> 63) & ((int64_t(1) << 31) - 1))) >> 31;
  return t < INT64_C(2147483647) ? t : INT64_C(2147483647);
}
SIMA_INLINE int64_t requant(int64_t acc, int64_t m, int64_t n, int mode) {
  if (mode != 3) return round_shift(acc * m, n, mode);
  const int64_t left = 31 - n > 0 ? 31 - n : 0;
  const int64_t shifted = (int64_t)((uint64_t)acc << left);
  const int64_t wrapped = ((shifted + (int64_t(1) << 31)) & INT64_C(0xFFFFFFFF)) - (int64_t(1) << 31);
  return round_shift(srdhm(wrapped, m), n - 31 > 0 ? n - 31 : 0, 3);
}
SIMA_INLINE int64_t clamp(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

// ---- instruction set ----
enum Isa { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

static int host_isa() {
  static const int best = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vnni"))
      return int(kAvx512);
    return __builtin_cpu_supports("avx2") ? int(kAvx2) : int(kGeneric);
  }();
  const char* asked = std::getenv("TVM_SIMA_KERNEL_ISA");
  int want = best;
  if (asked != nullptr && *asked) {
    if (!std::strcmp(asked, "generic")) want = kGeneric;
    else if (!std::strcmp(asked, "avx2")) want = kAvx2;
    else if (std::strcmp(asked, "avx512") != 0) {
      static std::once_flag said;  // read at every call (tests change it), named once a process
      std::call_once(said, [asked] {
        std::fprintf(stderr, "tvm-sima kernels: TVM_SIMA_KERNEL_ISA=%s is not one of generic, avx2, avx512: "
                     "the best instruction set of this CPU runs\n", asked);
      });
    }
  }
  return want < best ? want : best;
}

// ---- threads ----
template <typename F>
static int run_task(int task, TVMParallelGroupEnv* env, void* data) {
  (*static_cast<F*>(data))(task, env->num_task);
  return 0;
}
// f(task, tasks) for task in [0, tasks): on TVM's pool when there is enough work for two threads.
template <typename F>
static void parallel(F f, int64_t work) {
  if (work < (int64_t(1) << 18)) {
    f(0, 1);
    return;
  }
  TVMBackendParallelLaunch(run_task<F>, &f, 0);
}
SIMA_INLINE void split(int n, int task, int tasks, int* lo, int* hi) {
  *lo = int(int64_t(n) * task / tasks);
  *hi = int(int64_t(n) * (task + 1) / tasks);
}

// ---- the epilogue: bias, requantization, zero point, clamp ----
struct Epilogue {
  const int64_t* bias;  // per channel (one value per channel, always)
  const int64_t* mult;
  const int64_t* shift;
  int64_t zp, lo, hi;  // the rounding mode is a template parameter of the kernel (Kind, or requantize's MODE)
  // The same per channel in int32, when the generator proved (acc + bias) * mult + 2^shift < 2^31 for
  // every accumulator the op can produce (modes 0-2): the epilogue then runs in 32-bit lanes.
  const int32_t* bias32 = nullptr;
  const int32_t* mult32 = nullptr;
  const int32_t* shift32 = nullptr;
};

// round_shift in int32 (modes 0-2), exact where the generator's bound holds.
template <int MODE>
SIMA_INLINE int32_t round_shift32(int32_t x, int32_t n) {
  const int32_t half = (int32_t(1) << n) >> 1;
  const int32_t h1 = n > 0 ? 1 : 0;
  if (MODE == 0) return (x + half) >> n;
  if (MODE == 1) return (x + half - h1 + ((x >> n) & 1) * h1) >> n;
  return (x + half - (x < 0 ? 1 : 0) * h1) >> n;
}
// One output in T's arithmetic: int64 (every mode) or int32 (modes 0-2, where the bound holds).
template <typename T, int MODE>
SIMA_INLINE T requant_in(T v, T m, T n) {
  if constexpr (sizeof(T) == 8) return requant(v, m, n, MODE);
  else return round_shift32<MODE>(v * m, n);
}
// y[i * step] for i < n from acc[i]; channel c0 + i * DC (DC = 0: one channel for the whole row). The
// tables and bounds are locals: a store through Y* (a char type) may alias anything, so fields read in
// the loop would be reloaded; step 1 has its own loop (it vectorizes).
template <typename T, int MODE, int DC, typename Y>
SIMA_INLINE void epilogue_loop(const int32_t* __restrict acc, int n, Y* __restrict y, const T* __restrict bias,
                               const T* __restrict mult, const T* __restrict shift, T zp, T lo, T hi) {
  for (int i = 0; i < n; ++i) {
    T v = requant_in<T, MODE>((T)acc[i] + bias[i * DC], mult[i * DC], shift[i * DC]) + zp;
    v = v > lo ? v : lo;  // max, then min: vpmaxs / vpmins
    y[i] = (Y)(v < hi ? v : hi);
  }
}

// What the generator knows of an epilogue: its rounding mode, and whether the int32 bound holds.
// Template parameters, so that a program compiles only the loops it runs.
template <int MODE, bool NARROW>
struct Kind {
  static constexpr int mode = MODE;
  static constexpr bool narrow = NARROW;
};

// y[i] for i < n from acc[i]; channel c0 + i * DC (DC = 0: one channel for the whole row).
template <typename Q, int DC, typename Y>
SIMA_INLINE void epilogue_row(const int32_t* acc, int n, Y* y, const Epilogue& e, int c0) {
  if constexpr (Q::narrow) {
    static_assert(Q::mode != 3, "TFLite's rounding has no int32 epilogue");
    epilogue_loop<int32_t, Q::mode, DC>(acc, n, y, e.bias32 + c0, e.mult32 + c0, e.shift32 + c0, (int32_t)e.zp,
                                        (int32_t)e.lo, (int32_t)e.hi);
  } else {
    epilogue_loop<int64_t, Q::mode, DC>(acc, n, y, e.bias + c0, e.mult + c0, e.shift + c0, e.zp, e.lo, e.hi);
  }
}

// The int32 epilogue (modes 0-2) on 16 AVX-512 lanes: round_shift32's arithmetic lane by lane, then a
// saturating narrowing store (exact: the value is already clamped); b, m, s: bias, multiplier, shift.
template <int MODE>
SIMA_AVX512_INLINE __m512i requant16(__m512i acc, __m512i b, __m512i m, __m512i s, __m512i zp, __m512i lo,
                                     __m512i hi) {
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i half = _mm512_srli_epi32(_mm512_sllv_epi32(one, s), 1), h1 = _mm512_min_epi32(s, one);
  const __m512i v = _mm512_mullo_epi32(_mm512_add_epi32(acc, b), m);
  __m512i t = _mm512_add_epi32(v, half);
  if constexpr (MODE == 1) t = _mm512_add_epi32(_mm512_sub_epi32(t, h1), _mm512_and_si512(_mm512_srav_epi32(v, s), h1));
  if constexpr (MODE == 2) t = _mm512_sub_epi32(t, _mm512_and_si512(_mm512_srli_epi32(v, 31), h1));
  return _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(_mm512_srav_epi32(t, s), zp), lo), hi);
}
template <typename Y>
SIMA_AVX512_INLINE void store16(Y* y, __mmask16 k, __m512i v) {
  if constexpr (std::is_same<Y, int8_t>::value) _mm512_mask_cvtsepi32_storeu_epi8(y, k, v);
  else if constexpr (std::is_same<Y, uint8_t>::value) _mm512_mask_cvtusepi32_storeu_epi8(y, k, v);
  else if constexpr (std::is_same<Y, int16_t>::value) _mm512_mask_cvtsepi32_storeu_epi16(y, k, v);
  else if constexpr (std::is_same<Y, uint16_t>::value) _mm512_mask_cvtusepi32_storeu_epi16(y, k, v);
  else _mm512_mask_storeu_epi32(y, k, v);
}
SIMA_AVX512_INLINE __mmask16 first_lanes(int n) {
  return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
}

// rows x n outputs y[r * n + i] from acc[r * stride + i] (DC = 1: rows is 1), 16 lanes at a time.
template <int MODE, int DC, typename Y>
SIMA_AVX512_INLINE void epilogue_avx512(const int32_t* acc, int rows, int n, int stride, Y* y, const int32_t* bias,
                                        const int32_t* mult, const int32_t* shift, int32_t zp, int32_t lo, int32_t hi) {
  const __m512i vzp = _mm512_set1_epi32(zp), vlo = _mm512_set1_epi32(lo), vhi = _mm512_set1_epi32(hi);
  __m512i b = _mm512_set1_epi32(bias[0]), m = _mm512_set1_epi32(mult[0]), s = _mm512_set1_epi32(shift[0]);
  for (int r = 0; r < rows; ++r, acc += stride, y += n) {
    for (int i = 0; i < n; i += 16) {
      const __mmask16 k = first_lanes(n - i);
      if constexpr (DC == 1) {
        b = _mm512_maskz_loadu_epi32(k, bias + i);
        m = _mm512_maskz_loadu_epi32(k, mult + i);
        s = _mm512_maskz_loadu_epi32(k, shift + i);
      }
      store16(y + i, k, requant16<MODE>(_mm512_maskz_loadu_epi32(k, acc + i), b, m, s, vzp, vlo, vhi));
    }
  }
}

// round_shift on 8 int64 lanes (MODE 3 rounds as 2 does, as the scalar one).
template <int MODE>
SIMA_AVX512_INLINE __m512i round_shift8(__m512i v, __m512i s) {
  const __m512i one = _mm512_set1_epi64(1);
  const __m512i half = _mm512_srli_epi64(_mm512_sllv_epi64(one, s), 1), h1 = _mm512_min_epi64(s, one);
  __m512i t = _mm512_add_epi64(v, half);
  if constexpr (MODE == 1) t = _mm512_add_epi64(_mm512_sub_epi64(t, h1), _mm512_and_si512(_mm512_srav_epi64(v, s), h1));
  if constexpr (MODE >= 2) t = _mm512_sub_epi64(t, _mm512_and_si512(_mm512_srli_epi64(v, 63), h1));
  return _mm512_srav_epi64(t, s);
}
// The int64 epilogue on 8 AVX-512 lanes, requant's arithmetic lane by lane: modes 0-2 round_shift((acc + b)
// * m, s) (vpmullq keeps the low 64 bits, as the scalar product does); mode 3 TFLite's: the sum shifted
// left by 31 - s and wrapped to int32, srdhm by m (both factors int32: vpmuldq), then round_shift by
// s - 31. Then zero point, clamp and a narrowing store.
template <int MODE>
SIMA_AVX512_INLINE __m512i requant8(__m512i acc, __m512i b, __m512i m, __m512i s, __m512i zp, __m512i lo,
                                    __m512i hi) {
  const __m512i v = _mm512_add_epi64(acc, b);
  __m512i r;
  if constexpr (MODE != 3) {
    r = round_shift8<MODE>(_mm512_mullo_epi64(v, m), s);
  } else {
    const __m512i zero = _mm512_setzero_si512(), k31 = _mm512_set1_epi64(31);
    const __m512i left = _mm512_max_epi64(_mm512_sub_epi64(k31, s), zero);
    const __m512i ab = _mm512_mul_epi32(_mm512_sllv_epi64(v, left), m);  // the low 32 bits, signed: the wrap
    const __m512i up = _mm512_set1_epi64(INT64_C(1) << 30), down = _mm512_set1_epi64(1 - (INT64_C(1) << 30));
    const __m512i nudged = _mm512_add_epi64(ab, _mm512_mask_blend_epi64(_mm512_cmpge_epi64_mask(ab, zero), down, up));
    const __m512i floor = _mm512_and_si512(_mm512_srai_epi64(nudged, 63), _mm512_set1_epi64((INT64_C(1) << 31) - 1));
    const __m512i t = _mm512_min_epi64(_mm512_srai_epi64(_mm512_add_epi64(nudged, floor), 31),
                                       _mm512_set1_epi64(INT64_C(2147483647)));
    r = round_shift8<3>(t, _mm512_max_epi64(_mm512_sub_epi64(s, k31), zero));
  }
  return _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(r, zp), lo), hi);
}
template <typename Y>
SIMA_AVX512_INLINE void store8(Y* y, __mmask8 k, __m512i v) {
  if constexpr (std::is_same<Y, int8_t>::value) _mm512_mask_cvtsepi64_storeu_epi8(y, k, v);
  else if constexpr (std::is_same<Y, uint8_t>::value) _mm512_mask_cvtusepi64_storeu_epi8(y, k, v);
  else if constexpr (std::is_same<Y, int16_t>::value) _mm512_mask_cvtsepi64_storeu_epi16(y, k, v);
  else if constexpr (std::is_same<Y, uint16_t>::value) _mm512_mask_cvtusepi64_storeu_epi16(y, k, v);
  else _mm512_mask_cvtsepi64_storeu_epi32(y, k, v);
}

// epilogue_avx512 in int64 lanes, 8 at a time (every mode): the tables are epilogue_row's int64 ones.
template <int MODE, int DC, typename Y>
SIMA_AVX512_INLINE void epilogue64_avx512(const int32_t* acc, int rows, int n, int stride, Y* y, const int64_t* bias,
                                          const int64_t* mult, const int64_t* shift, int64_t zp, int64_t lo,
                                          int64_t hi) {
  const __m512i vzp = _mm512_set1_epi64(zp), vlo = _mm512_set1_epi64(lo), vhi = _mm512_set1_epi64(hi);
  __m512i b = _mm512_set1_epi64(bias[0]), m = _mm512_set1_epi64(mult[0]), s = _mm512_set1_epi64(shift[0]);
  for (int r = 0; r < rows; ++r, acc += stride, y += n) {
    for (int i = 0; i < n; i += 8) {
      const __mmask8 k = n - i >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (n - i)) - 1);
      if constexpr (DC == 1) {
        b = _mm512_maskz_loadu_epi64(k, bias + i);
        m = _mm512_maskz_loadu_epi64(k, mult + i);
        s = _mm512_maskz_loadu_epi64(k, shift + i);
      }
      const __m512i a = _mm512_cvtepi32_epi64(_mm256_maskz_loadu_epi32(k, acc + i));
      store8(y + i, k, requant8<MODE>(a, b, m, s, vzp, vlo, vhi));
    }
  }
}

// epilogue_row in AVX-512 vectors: int32 lanes where the bound holds, else int64 ones. Called
// from AVX-512 paths only; a function of its own: GCC inlines nothing compiled for AVX-512 into a template
// body compiled without it.
template <typename Q, int DC, typename Y>
SIMA_AVX512 static void epilogue_row_avx512(const int32_t* acc, int n, Y* y, const Epilogue& e, int c0) {
  if constexpr (Q::narrow)
    epilogue_avx512<Q::mode, DC>(acc, 1, n, n, y, e.bias32 + c0, e.mult32 + c0, e.shift32 + c0, (int32_t)e.zp,
                                 (int32_t)e.lo, (int32_t)e.hi);
  else
    epilogue64_avx512<Q::mode, DC>(acc, 1, n, n, y, e.bias + c0, e.mult + c0, e.shift + c0, e.zp, e.lo, e.hi);
}
// rows x n outputs of channel c0, y[r * n + i] from acc[r * stride + i].
template <typename Q, typename Y>
SIMA_AVX512 static void epilogue_rows_avx512(const int32_t* acc, int rows, int n, int stride, Y* y, const Epilogue& e,
                                             int c0) {
  if constexpr (Q::narrow)
    epilogue_avx512<Q::mode, 0>(acc, rows, n, stride, y, e.bias32 + c0, e.mult32 + c0, e.shift32 + c0,
                                (int32_t)e.zp, (int32_t)e.lo, (int32_t)e.hi);
  else
    epilogue64_avx512<Q::mode, 0>(acc, rows, n, stride, y, e.bias + c0, e.mult + c0, e.shift + c0, e.zp, e.lo, e.hi);
}

// ---- scratch memory ----
// Per thread, per slot, grow-only (zero-filled when it grows): a kernel call allocates nothing, and
// the pages are not faulted in again at every call. Packing writes every value a product reads with a
// nonzero partner; what lies past that (the odd K's second half, columns past N, rows past M) meets a
// zero of the packed weights or is never stored.
template <typename T>
SIMA_INLINE T* scratch(int slot, size_t n) {
  static thread_local std::vector<T> buffers[4];
  std::vector<T>& buffer = buffers[slot];
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

SIMA_INLINE int round_up(int v, int m) { return (v + m - 1) / m * m; }

// ---- convolution geometry ----
struct Conv {
  int n, c, h, w;  // input (NCHW or NHWC, as the kernel's name says)
  int oc, oh, ow;  // output
  int kh, kw, sh, sw, dh, dw, pt, pl;
  int zp;  // input zero point: the value of padded pixels
};
// 1x1, stride 1, no padding: each output pixel reads its own input pixel.
SIMA_INLINE bool is_pointwise(const Conv& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 && g.oh == g.h && g.ow == g.w;
}

}  // namespace sima_kernels
