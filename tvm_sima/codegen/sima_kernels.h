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

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
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
#define SIMA_AVX512 __attribute__((target("avx2,fma,bmi2,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

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
  if (asked != nullptr) {
    if (!std::strcmp(asked, "generic")) want = kGeneric;
    else if (!std::strcmp(asked, "avx2")) want = kAvx2;
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

// ---- GEMM: C[M][N] = A[M][K] . B[K][N] ----
// A: int16 rows of 2 * k2 values (pairs), M padded to MR rows. B: panels of PANEL columns,
// [N / PANEL][k2][PANEL][2]: for column j of a panel, its K values as int16 pairs (k, k + 1).
constexpr int PANEL = 32;
constexpr int MR = 6;

SIMA_INLINE int32_t pair_at(const int16_t* a) {
  int32_t v;
  std::memcpy(&v, a, 4);
  return v;
}

// c[r][j] = sum_k a[r][k] b[k][j] for r < MR, j < PANEL.
SIMA_INLINE void tile_generic(const int16_t* a, int lda, const int16_t* b, int k2, int32_t* c) {
  for (int i = 0; i < MR * PANEL; ++i) c[i] = 0;
  for (int k = 0; k < k2; ++k) {
    const int16_t* bk = b + k * 2 * PANEL;
    for (int r = 0; r < MR; ++r) {
      const int32_t a0 = a[r * lda + 2 * k], a1 = a[r * lda + 2 * k + 1];
      for (int j = 0; j < PANEL; ++j) c[r * PANEL + j] += a0 * bk[2 * j] + a1 * bk[2 * j + 1];
    }
  }
}

SIMA_AVX2 static void tile_avx2(const int16_t* a, int lda, const int16_t* b, int k2, int32_t* c) {
  for (int half = 0; half < 2; ++half) {  // rows 0-2, then 3-5: 3 rows x 4 vectors = 12 accumulators
    const int16_t* ah = a + half * 3 * lda;
    __m256i acc[3][4];
    for (int r = 0; r < 3; ++r)
      for (int v = 0; v < 4; ++v) acc[r][v] = _mm256_setzero_si256();
    for (int k = 0; k < k2; ++k) {
      const int16_t* bk = b + k * 2 * PANEL;
      __m256i bv[4];
      for (int v = 0; v < 4; ++v) bv[v] = _mm256_loadu_si256((const __m256i*)(bk + 16 * v));
      for (int r = 0; r < 3; ++r) {
        const __m256i av = _mm256_set1_epi32(pair_at(ah + r * lda + 2 * k));
        for (int v = 0; v < 4; ++v) acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(av, bv[v]));
      }
    }
    for (int r = 0; r < 3; ++r)
      for (int v = 0; v < 4; ++v) _mm256_storeu_si256((__m256i*)(c + (half * 3 + r) * PANEL + 8 * v), acc[r][v]);
  }
}

SIMA_AVX512 static void tile_avx512(const int16_t* a, int lda, const int16_t* b, int k2, int32_t* c) {
  __m512i acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
  for (int k = 0; k < k2; ++k) {
    const int16_t* bk = b + k * 2 * PANEL;
    const __m512i b0 = _mm512_loadu_si512(bk), b1 = _mm512_loadu_si512(bk + 32);
    for (int r = 0; r < MR; ++r) {
      const __m512i av = _mm512_set1_epi32(pair_at(a + r * lda + 2 * k));
      acc[r][0] = _mm512_dpwssd_epi32(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpwssd_epi32(acc[r][1], av, b1);
    }
  }
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_si512(c + r * PANEL, acc[r][0]);
    _mm512_storeu_si512(c + r * PANEL + 16, acc[r][1]);
  }
}

SIMA_INLINE int round_up(int v, int m) { return (v + m - 1) / m * m; }

// The output of a GEMM: y[m * ym + n]; the channel is m (ON_M) or n.
template <typename Y>
struct GemmOut {
  Y* y;
  int64_t ym;
  Epilogue e;
};

// C = A . B over rows [m0, m1) and panels [p0, p1), each tile requantized into out.
template <int ISA, typename Q, bool ON_M, typename Y>
SIMA_INLINE void gemm_body(const int16_t* a, int lda, const int16_t* b, int k2, int M, int N, const GemmOut<Y>& out_ref,
                           int m0, int m1, int p0, int p1) {
  const GemmOut<Y> out = out_ref;
  alignas(64) int32_t c[MR * PANEL];
  for (int p = p0; p < p1; ++p) {
    const int n0 = p * PANEL, nn = N - n0 < PANEL ? N - n0 : PANEL;
    const int16_t* bp = b + (int64_t)p * k2 * 2 * PANEL;
    for (int m = m0; m < m1; m += MR) {
      const int16_t* am = a + (int64_t)m * lda;
      if constexpr (ISA == kAvx512) tile_avx512(am, lda, bp, k2, c);
      else if constexpr (ISA == kAvx2) tile_avx2(am, lda, bp, k2, c);
      else tile_generic(am, lda, bp, k2, c);
      for (int r = 0; r < MR && m + r < M; ++r) {
        Y* y = out.y + (m + r) * out.ym + n0;
        if constexpr (ON_M) epilogue_row<Q, 0>(c + r * PANEL, nn, y, out.e, m + r);
        else epilogue_row<Q, 1>(c + r * PANEL, nn, y, out.e, n0);
      }
    }
  }
}
template <typename Q, bool ON_M, typename Y>
SIMA_AVX512 void gemm_avx512(const int16_t* a, int lda, const int16_t* b, int k2, int M, int N,
                             const GemmOut<Y>& out, int m0, int m1, int p0, int p1) {
  gemm_body<kAvx512, Q, ON_M>(a, lda, b, k2, M, N, out, m0, m1, p0, p1);
}
template <typename Q, bool ON_M, typename Y>
SIMA_AVX2 void gemm_avx2(const int16_t* a, int lda, const int16_t* b, int k2, int M, int N, const GemmOut<Y>& out,
                         int m0, int m1, int p0, int p1) {
  gemm_body<kAvx2, Q, ON_M>(a, lda, b, k2, M, N, out, m0, m1, p0, p1);
}
template <typename Q, bool ON_M, typename Y>
void gemm_generic(const int16_t* a, int lda, const int16_t* b, int k2, int M, int N, const GemmOut<Y>& out,
                  int m0, int m1, int p0, int p1) {
  gemm_body<kGeneric, Q, ON_M>(a, lda, b, k2, M, N, out, m0, m1, p0, p1);
}

// The whole GEMM on the thread pool: panels split between threads, or rows when there is one panel.
template <typename Q, bool ON_M, typename Y>
static void gemm(const int16_t* a, int lda, const int16_t* b, int k2, int M, int N, const GemmOut<Y>& out) {
  const int isa = host_isa();
  auto block = isa == kAvx512 ? gemm_avx512<Q, ON_M, Y>
                              : (isa == kAvx2 ? gemm_avx2<Q, ON_M, Y> : gemm_generic<Q, ON_M, Y>);
  const int panels = (N + PANEL - 1) / PANEL, mtiles = (M + MR - 1) / MR;
  parallel([&](int task, int tasks) {
    int lo, hi;
    if (panels >= tasks) {
      split(panels, task, tasks, &lo, &hi);
      block(a, lda, b, k2, M, N, out, 0, M, lo, hi);
    } else {
      split(mtiles, task, tasks, &lo, &hi);
      block(a, lda, b, k2, M, N, out, lo * MR, hi * MR < M ? hi * MR : M, 0, panels);
    }
  }, (int64_t)M * N * k2 * 2);
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

// ---- packing ----
// B panels of a K x N matrix whose column n is the K values src[n][k * ks] (ks: stride along k).
SIMA_INLINE size_t b_size(int K, int N) { return (size_t)((N + PANEL - 1) / PANEL) * ((K + 1) / 2) * 2 * PANEL; }
SIMA_INLINE int16_t* b_at(int16_t* b, int k2, int k, int n) {
  return b + ((size_t)(n / PANEL) * k2 + k / 2) * 2 * PANEL + (n % PANEL) * 2 + (k & 1);
}

// B panels from int8 weights w[k * ks + n * ns] (made once per kernel).
static void pack_weights_b(const int8_t* w, int K, int N, int64_t ks, int64_t ns, std::vector<int16_t>* out) {
  out->assign(b_size(K, N), 0);
  const int k2 = (K + 1) / 2;
  for (int k = 0; k < K; ++k)
    for (int n = 0; n < N; ++n) *b_at(out->data(), k2, k, n) = w[k * ks + n * ns];
}

// A rows [round_up(M, MR)][round_up(K, 2)] from int8 weights w[m * K + k] (made once per kernel).
static void pack_weights_a(const int8_t* w, int M, int K, std::vector<int16_t>* out) {
  const int lda = round_up(K, 2);
  out->assign((size_t)round_up(M, MR) * lda, 0);
  int16_t* a = out->data();
  for (int m = 0; m < M; ++m)
    for (int k = 0; k < K; ++k) a[(size_t)m * lda + k] = w[(int64_t)m * K + k];
}

// A constant operand packed once (at the first call) from the kernel's int8 blob.
struct Packed {
  std::once_flag once;
  std::vector<int16_t> data;
};

// ---- convolution geometry ----
struct Conv {
  int n, c, h, w;  // input (NCHW or NHWC, as the kernel's name says)
  int oc, oh, ow;  // output
  int kh, kw, sh, sw, dh, dw, pt, pl;
  int zp;  // input zero point: the value of padded pixels
};

// im2col of one NCHW image into B panels: k = (ic, ky, kx), n = (oy, ox).
template <typename X>
static void pack_im2col_nchw(const X* x, const Conv& g, int16_t* b) {
  const int K = g.c * g.kh * g.kw, P = g.oh * g.ow, k2 = (K + 1) / 2;
  for (int k = 0; k < K; ++k) {
    const int ic = k / (g.kh * g.kw), ky = (k / g.kw) % g.kh, kx = k % g.kw;
    const X* xc = x + (int64_t)ic * g.h * g.w;
    for (int oy = 0; oy < g.oh; ++oy) {
      const int iy = oy * g.sh + ky * g.dh - g.pt;
      const bool row = iy >= 0 && iy < g.h;
      for (int ox = 0; ox < g.ow; ++ox) {
        const int ix = ox * g.sw + kx * g.dw - g.pl;
        *b_at(b, k2, k, oy * g.ow + ox) = (row && ix >= 0 && ix < g.w) ? (int16_t)xc[iy * g.w + ix] : (int16_t)g.zp;
      }
    }
  }
}

// 1x1, stride 1, no padding: column n of B is pixel n of every channel; two channel rows interleave.
template <typename X>
static void pack_pointwise_nchw(const X* x, int C, int P, int16_t* b) {
  const int k2 = (C + 1) / 2;
  for (int p = 0; p * PANEL < P; ++p) {
    const int n0 = p * PANEL, nn = P - n0 < PANEL ? P - n0 : PANEL;
    for (int k = 0; k < k2; ++k) {
      int16_t* dst = b + ((size_t)p * k2 + k) * 2 * PANEL;
      const X* r0 = x + (int64_t)(2 * k) * P + n0;
      const X* r1 = r0 + P;
      const bool second = 2 * k + 1 < C;
      for (int j = 0; j < nn; ++j) {
        dst[2 * j] = r0[j];
        dst[2 * j + 1] = second ? (int16_t)r1[j] : (int16_t)0;
      }
    }
  }
}

// NCHW, groups == 1: A = OIHW weights [oc][c * kh * kw], B = the input's columns.
template <typename Q, typename X, typename Y>
static void conv_nchw(const X* x, Y* y, const int8_t* w, Packed* wa, const Conv& g, const Epilogue& e) {
  const int K = g.c * g.kh * g.kw, P = g.oh * g.ow;
  std::call_once(wa->once, [&] { pack_weights_a(w, g.oc, K, &wa->data); });
  const bool pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 &&
                         g.oh == g.h && g.ow == g.w;
  int16_t* b = scratch<int16_t>(0, b_size(K, P));
  for (int bn = 0; bn < g.n; ++bn) {
    const X* xb = x + (int64_t)bn * g.c * g.h * g.w;
    if (pointwise) pack_pointwise_nchw(xb, g.c, P, b);
    else pack_im2col_nchw(xb, g, b);
    const GemmOut<Y> out{y + (int64_t)bn * g.oc * P, P, e};
    gemm<Q, true>(wa->data.data(), round_up(K, 2), b, (K + 1) / 2, g.oc, P, out);
  }
}

// NHWC, groups == 1: A = im2col rows of the input (k = ky, kx, ic), B = HWIO weights [k][oc].
template <typename Q, typename X, typename Y>
static void conv_nhwc(const X* x, Y* y, const int8_t* w, Packed* wb, const Conv& g, const Epilogue& e) {
  const int K = g.kh * g.kw * g.c, P = g.n * g.oh * g.ow, lda = round_up(K, 2);
  std::call_once(wb->once, [&] { pack_weights_b(w, K, g.oc, g.oc, 1, &wb->data); });
  int16_t* a = scratch<int16_t>(0, (size_t)round_up(P, MR) * lda);
  for (int p = 0; p < P; ++p) {
    const int bn = p / (g.oh * g.ow), oy = (p / g.ow) % g.oh, ox = p % g.ow;
    int16_t* row = a + (size_t)p * lda;
    for (int ky = 0; ky < g.kh; ++ky)
      for (int kx = 0; kx < g.kw; ++kx) {
        const int iy = oy * g.sh + ky * g.dh - g.pt, ix = ox * g.sw + kx * g.dw - g.pl;
        int16_t* dst = row + (ky * g.kw + kx) * g.c;
        if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) {
          const X* src = x + (((int64_t)bn * g.h + iy) * g.w + ix) * g.c;
          for (int ic = 0; ic < g.c; ++ic) dst[ic] = src[ic];
        } else {
          for (int ic = 0; ic < g.c; ++ic) dst[ic] = (int16_t)g.zp;
        }
      }
  }
  const GemmOut<Y> out{y, g.oc, e};
  gemm<Q, false>(a, lda, wb->data.data(), (K + 1) / 2, P, g.oc, out);
}

// Dense: A = input rows [rows][k], B = OI weights transposed [k][oc].
template <typename Q, typename X, typename Y>
static void dense(const X* x, Y* y, const int8_t* w, Packed* wb, int rows, int K, int oc, const Epilogue& e) {
  const int lda = round_up(K, 2);
  std::call_once(wb->once, [&] { pack_weights_b(w, K, oc, 1, K, &wb->data); });
  int16_t* pa = scratch<int16_t>(0, (size_t)round_up(rows, MR) * lda);
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < K; ++k) pa[(size_t)r * lda + k] = x[(int64_t)r * K + k];
  const GemmOut<Y> out{y, oc, e};
  gemm<Q, false>(pa, lda, wb->data.data(), (K + 1) / 2, rows, oc, out);
}

// acc[i] = sum over taps t of w[t] * src[t][i], i < n (n a multiple of 64; src readable that far).
// The vector paths multiply-add int16 pairs (x[2i], x[2i + 1]) with (w, 0) and (0, w): the even
// and the odd outputs in separate int32 lanes, exact, re-interleaved once per block at the end.
static void taps_generic(const int16_t* const* src, const int8_t* w, int taps, int64_t n, int32_t* acc) {
  for (int64_t i = 0; i < n; ++i) acc[i] = 0;
  for (int t = 0; t < taps; ++t) {
    const int32_t wv = w[t];
    const int16_t* s = src[t];
    for (int64_t i = 0; i < n; ++i) acc[i] += wv * s[i];
  }
}

SIMA_AVX512 static void taps_avx512(const int16_t* const* src, const int8_t* w, int taps, int64_t n, int32_t* acc) {
  for (int64_t i0 = 0; i0 < n; i0 += 64) {
    __m512i even[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()}, odd[2] = {even[0], even[1]};
    for (int t = 0; t < taps; ++t) {
      const __m512i we = _mm512_set1_epi32((int32_t)(uint16_t)w[t]), wo = _mm512_set1_epi32((int32_t)((uint32_t)(uint16_t)w[t] << 16));
      for (int v = 0; v < 2; ++v) {
        const __m512i x = _mm512_loadu_si512(src[t] + i0 + 32 * v);
        even[v] = _mm512_dpwssd_epi32(even[v], x, we);
        odd[v] = _mm512_dpwssd_epi32(odd[v], x, wo);
      }
    }
    alignas(64) int32_t e[32], o[32];
    for (int v = 0; v < 2; ++v) {
      _mm512_store_si512(e + 16 * v, even[v]);
      _mm512_store_si512(o + 16 * v, odd[v]);
    }
    for (int i = 0; i < 32; ++i) {
      acc[i0 + 2 * i] = e[i];
      acc[i0 + 2 * i + 1] = o[i];
    }
  }
}

SIMA_AVX2 static void taps_avx2(const int16_t* const* src, const int8_t* w, int taps, int64_t n, int32_t* acc) {
  for (int64_t i0 = 0; i0 < n; i0 += 32) {
    __m256i even[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()}, odd[2] = {even[0], even[1]};
    for (int t = 0; t < taps; ++t) {
      const __m256i we = _mm256_set1_epi32((int32_t)(uint16_t)w[t]), wo = _mm256_set1_epi32((int32_t)((uint32_t)(uint16_t)w[t] << 16));
      for (int v = 0; v < 2; ++v) {
        const __m256i x = _mm256_loadu_si256((const __m256i*)(src[t] + i0 + 16 * v));
        even[v] = _mm256_add_epi32(even[v], _mm256_madd_epi16(x, we));
        odd[v] = _mm256_add_epi32(odd[v], _mm256_madd_epi16(x, wo));
      }
    }
    alignas(32) int32_t e[16], o[16];
    for (int v = 0; v < 2; ++v) {
      _mm256_store_si256((__m256i*)(e + 8 * v), even[v]);
      _mm256_store_si256((__m256i*)(o + 8 * v), odd[v]);
    }
    for (int i = 0; i < 16; ++i) {
      acc[i0 + 2 * i] = e[i];
      acc[i0 + 2 * i + 1] = o[i];
    }
  }
}

template <typename X>
SIMA_INLINE void widen16(const X* __restrict src, int16_t* __restrict dst, int n) {
  for (int j = 0; j < n; ++j) dst[j] = src[j];
}
SIMA_INLINE void fill16(int16_t* __restrict dst, int n, int16_t v) {
  for (int j = 0; j < n; ++j) dst[j] = v;
}

// ---- depthwise NCHW (groups == channels, one output channel each) ----
// Per channel, the zero-point padded input is split into sh x sw residue planes (row mod sh, column
// mod sw), each hq x wq. Tap (ky, kx) of output (oy, ox) reads plane (ky*dh % sh, kx*dw % sw) at
// (oy + ky*dh / sh, ox + kx*dw / sw): with rows of wq >= ow outputs (the last wq - ow thrown away),
// every tap is one contiguous multiply-add over all hq x wq outputs of the channel.
template <int ISA, typename Q, typename X, typename Y>
SIMA_INLINE void depthwise_body(const X* x, Y* y, const int8_t* w, const Conv& geometry, const Epilogue& e, int lo,
                                int hi) {
  const Conv g = geometry;  // a local copy: stores through int32_t* / Y* cannot change it, so loops vectorize
  const int hq = (g.oh - 1) + ((g.kh - 1) * g.dh) / g.sh + 1, wq = (g.ow - 1) + ((g.kw - 1) * g.dw) / g.sw + 1;
  // outputs rounded up to whole vectors (no scalar remainder on 7 x 7 maps); planes padded to match
  const int64_t plane = (int64_t)hq * wq, outputs = round_up(g.oh * wq, 64);
  int16_t* __restrict pl = scratch<int16_t>(1, (size_t)(g.sh * g.sw * plane + outputs));
  int32_t* __restrict pa = scratch<int32_t>(2, (size_t)outputs);
  const int taps = g.kh * g.kw, wide = wq * g.sw;
  const int16_t** tap_src = scratch<const int16_t*>(0, (size_t)taps);
  int16_t* __restrict row = scratch<int16_t>(3, (size_t)wide);
  for (int nc = lo; nc < hi; ++nc) {
    const int ch = nc % g.c;
    const X* xc = x + (int64_t)nc * g.h * g.w;
    // source columns j * sw + rx - pl of plane rx, j < wq: the zero-point padded row, then split by residue
    int x0 = g.pl < wide ? g.pl : wide, x1 = g.pl + g.w < wide ? g.pl + g.w : wide;
    for (int ry = 0; ry < g.sh; ++ry)
      for (int i = 0; i < hq; ++i) {
        const int sy = i * g.sh + ry - g.pt;
        if (sy >= 0 && sy < g.h) {
          fill16(row, x0, (int16_t)g.zp);
          widen16(xc + (int64_t)sy * g.w - g.pl + x0, row + x0, x1 - x0);
          fill16(row + x1, wide - x1, (int16_t)g.zp);
        } else {
          fill16(row, wide, (int16_t)g.zp);
        }
        int16_t* dst = pl + (int64_t)ry * g.sw * plane + (int64_t)i * wq;
        if (g.sw == 1) {
          std::memcpy(dst, row, sizeof(int16_t) * wq);
        } else if (g.sw == 2) {
          for (int j = 0; j < wq; ++j) {
            dst[j] = row[2 * j];
            dst[plane + j] = row[2 * j + 1];
          }
        } else {
          for (int rx = 0; rx < g.sw; ++rx)
            for (int j = 0; j < wq; ++j) dst[rx * plane + j] = row[j * g.sw + rx];
        }
      }
    const int8_t* wc = w + (int64_t)ch * g.kh * g.kw;
    for (int ky = 0; ky < g.kh; ++ky)
      for (int kx = 0; kx < g.kw; ++kx) {
        const int oy = ky * g.dh, ox = kx * g.dw;
        tap_src[ky * g.kw + kx] = pl + ((oy % g.sh) * g.sw + ox % g.sw) * plane + (oy / g.sh) * wq + ox / g.sw;
      }
    if constexpr (ISA == kAvx512) taps_avx512(tap_src, wc, taps, outputs, pa);
    else if constexpr (ISA == kAvx2) taps_avx2(tap_src, wc, taps, outputs, pa);
    else taps_generic(tap_src, wc, taps, outputs, pa);
    if (wq != g.ow)  // drop the extra columns: the channel's outputs contiguous, one long epilogue
      for (int oy = 1; oy < g.oh; ++oy)
        for (int ox = 0; ox < g.ow; ++ox) pa[(int64_t)oy * g.ow + ox] = pa[(int64_t)oy * wq + ox];
    epilogue_row<Q, 0>(pa, g.oh * g.ow, y + (int64_t)nc * g.oh * g.ow, e, ch);
  }
}
template <typename Q, typename X, typename Y>
SIMA_AVX512 void depthwise_avx512(const X* x, Y* y, const int8_t* w, const Conv& g, const Epilogue& e, int lo,
                                  int hi) {
  depthwise_body<kAvx512, Q>(x, y, w, g, e, lo, hi);
}
template <typename Q, typename X, typename Y>
SIMA_AVX2 void depthwise_avx2(const X* x, Y* y, const int8_t* w, const Conv& g, const Epilogue& e, int lo, int hi) {
  depthwise_body<kAvx2, Q>(x, y, w, g, e, lo, hi);
}
template <typename Q, typename X, typename Y>
void depthwise_generic(const X* x, Y* y, const int8_t* w, const Conv& g, const Epilogue& e, int lo, int hi) {
  depthwise_body<kGeneric, Q>(x, y, w, g, e, lo, hi);
}

template <typename Q, typename X, typename Y>
static void depthwise_nchw(const X* x, Y* y, const int8_t* w, const Conv& g, const Epilogue& e) {
  const int isa = host_isa();
  auto body = isa == kAvx512 ? depthwise_avx512<Q, X, Y>
                             : (isa == kAvx2 ? depthwise_avx2<Q, X, Y> : depthwise_generic<Q, X, Y>);
  parallel([&](int task, int tasks) {
    int lo, hi;
    split(g.n * g.c, task, tasks, &lo, &hi);
    body(x, y, w, g, e, lo, hi);
  }, (int64_t)g.n * g.c * g.oh * g.ow * g.kh * g.kw);
}

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
