// ---- sima_gemm.h: convolutions (groups 1) and dense layers as one GEMM ----
namespace sima_kernels {

// C[M][N] = A[M][K] . B[K][N] on copies of the 8-bit operands in one of two formats (F below):
//  * pairs (AVX2 vpmaddwd, plain C++): int16 copies, K grouped by 2;
//  * quads (AVX-512 VNNI vpdpbusd): bytes, K grouped by 4. vpdpbusd multiplies an unsigned by a
//    signed byte, so the activations are stored unsigned: int8 ones shifted by 128 (x ^ 0x80), and the
//    shift's products, 128 * sum_k w[k][c], leave with the bias (Quads::e). Four products of at most
//    255 * 128 each are added to an int32 lane (vpdpbusd does not saturate): exact.
// A: rows of lda = round_up(K, G) values, M padded to MR rows. B: panels of PANEL columns,
// [N / PANEL][K / G][PANEL][G]: for column j of a panel, its K values in groups of G.
// Exact in int32 while 255 * 128 * K < 2^31 (the generator keeps larger K in plain loops).
constexpr int PANEL = 32;
constexpr int MR = 6;

template <typename T>
constexpr int group_of() { return 4 / (int)sizeof(T); }  // int16: pairs, bytes: quads

SIMA_INLINE int32_t word_at(const void* a) {
  int32_t v;
  std::memcpy(&v, a, 4);
  return v;
}

// An activation code as the format stores it (int8 shifted by 128 into a byte for the quads).
template <typename T, typename X>
SIMA_INLINE T code_of(X v) {
  if constexpr (sizeof(T) == 2 || !std::is_signed<X>::value) return (T)v;
  else return (T)((uint8_t)v ^ 0x80);
}
template <typename X>
constexpr int64_t quad_shift() { return std::is_signed<X>::value ? 128 : 0; }

// ---- tiles: c[r][j] = sum_k a[r][k] b[k][j] for r < MR, j < PANEL ----
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
        const __m256i av = _mm256_set1_epi32(word_at(ah + r * lda + 2 * k));
        for (int v = 0; v < 4; ++v) acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(av, bv[v]));
      }
    }
    for (int r = 0; r < 3; ++r)
      for (int v = 0; v < 4; ++v) _mm256_storeu_si256((__m256i*)(c + (half * 3 + r) * PANEL + 8 * v), acc[r][v]);
  }
}

// Quads into MR x 2 accumulators; A_UNSIGNED: A holds the (unsigned) activations, B the weights; else
// the other way round.
template <bool A_UNSIGNED>
SIMA_AVX512_INLINE void vnni_accumulate(const uint8_t* a, int lda, const uint8_t* b, int k4, __m512i (&acc)[MR][2]) {
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
  for (int k = 0; k < k4; ++k) {
    const uint8_t* bk = b + k * 4 * PANEL;
    const __m512i b0 = _mm512_loadu_si512(bk), b1 = _mm512_loadu_si512(bk + 64);
    for (int r = 0; r < MR; ++r) {
      const __m512i av = _mm512_set1_epi32(word_at(a + r * lda + 4 * k));
      if constexpr (A_UNSIGNED) {
        acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], av, b0);
        acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], av, b1);
      } else {
        acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], b0, av);
        acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], b1, av);
      }
    }
  }
}
template <bool A_UNSIGNED>
SIMA_AVX512 static void tile_vnni(const uint8_t* a, int lda, const uint8_t* b, int k4, int32_t* c) {
  __m512i acc[MR][2];
  vnni_accumulate<A_UNSIGNED>(a, lda, b, k4, acc);
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_si512(c + r * PANEL, acc[r][0]);
    _mm512_storeu_si512(c + r * PANEL + 16, acc[r][1]);
  }
}

// The output of a GEMM: y[m * ym + n]; the channel is m (ON_M) or n.
template <typename Y>
struct GemmOut {
  Y* y;
  int64_t ym;
  Epilogue e;
};

// tile_vnni, then the int32 epilogue on its accumulators where they are (registers): rows m.. of
// which `rows` exist, nn columns from n0.
template <typename Q, bool ON_M, typename Y>
SIMA_AVX512 static void tile_vnni_out(const uint8_t* a, int lda, const uint8_t* b, int k4, const GemmOut<Y>& out,
                                      int m, int rows, int n0, int nn) {
  __m512i acc[MR][2];
  vnni_accumulate<!ON_M>(a, lda, b, k4, acc);  // ON_M: A holds the weights
  const Epilogue& e = out.e;
  const __m512i zp = _mm512_set1_epi32((int32_t)e.zp), lo = _mm512_set1_epi32((int32_t)e.lo);
  const __m512i hi = _mm512_set1_epi32((int32_t)e.hi);
  const __mmask16 k0 = first_lanes(nn), k1 = first_lanes(nn - 16 > 0 ? nn - 16 : 0);
  __m512i bias[2], mu[2], s[2];
  if constexpr (!ON_M)
    for (int v = 0; v < 2; ++v) {  // channel per column
      const __mmask16 kv = v ? k1 : k0;
      bias[v] = _mm512_maskz_loadu_epi32(kv, e.bias32 + n0 + 16 * v);
      mu[v] = _mm512_maskz_loadu_epi32(kv, e.mult32 + n0 + 16 * v);
      s[v] = _mm512_maskz_loadu_epi32(kv, e.shift32 + n0 + 16 * v);
    }
  for (int r = 0; r < rows; ++r) {
    if constexpr (ON_M) {  // channel per row
      bias[0] = bias[1] = _mm512_set1_epi32(e.bias32[m + r]);
      mu[0] = mu[1] = _mm512_set1_epi32(e.mult32[m + r]);
      s[0] = s[1] = _mm512_set1_epi32(e.shift32[m + r]);
    }
    Y* y = out.y + (m + r) * out.ym + n0;
    store16(y, k0, requant16<Q::mode>(acc[r][0], bias[0], mu[0], s[0], zp, lo, hi));
    if (nn > 16) store16(y + 16, k1, requant16<Q::mode>(acc[r][1], bias[1], mu[1], s[1], zp, lo, hi));
  }
}

enum Tile { kTileGeneric, kTileAvx2, kTileVnni };

// C = A . B over rows [m0, m1) and panels [p0, p1) (kg groups of K), each tile requantized into out.
// B comes from bs.panel(p, buffer): packed weights, or activations packed a panel at a time by the
// thread that multiplies them (into its own L1-sized buffer: the packing runs on every thread).
template <int TILE, typename Q, bool ON_M, typename T, typename Y, typename S>
SIMA_INLINE void gemm_body(const T* a, int lda, const S& bs, int kg, int M, int N, const GemmOut<Y>& out_ref, int m0,
                           int m1, int p0, int p1) {
  const GemmOut<Y> out = out_ref;
  constexpr int G = group_of<T>();
  alignas(64) int32_t c[MR * PANEL];
  T* buffer = scratch<T>(2, (size_t)kg * G * PANEL);
  for (int p = p0; p < p1; ++p) {
    const int n0 = p * PANEL, nn = N - n0 < PANEL ? N - n0 : PANEL;
    const T* bp = bs.panel(p, buffer);
    for (int m = m0; m < m1; m += MR) {
      const T* am = a + (int64_t)m * lda;
      if constexpr (TILE == kTileVnni && Q::narrow) {  // the epilogue on the tile's registers
        tile_vnni_out<Q, ON_M>(am, lda, bp, kg, out, m, M - m < MR ? M - m : MR, n0, nn);
        continue;
      }
      if constexpr (TILE == kTileVnni) tile_vnni<!ON_M>(am, lda, bp, kg, c);  // ON_M: A holds the weights
      else if constexpr (TILE == kTileAvx2) tile_avx2(am, lda, bp, kg, c);
      else tile_generic(am, lda, bp, kg, c);
      for (int r = 0; r < MR && m + r < M; ++r) {
        Y* y = out.y + (m + r) * out.ym + n0;
        if constexpr (TILE == kTileVnni) {
          if constexpr (ON_M) epilogue_row_avx512<Q, 0>(c + r * PANEL, nn, y, out.e, m + r);
          else epilogue_row_avx512<Q, 1>(c + r * PANEL, nn, y, out.e, n0);
        } else {
          if constexpr (ON_M) epilogue_row<Q, 0>(c + r * PANEL, nn, y, out.e, m + r);
          else epilogue_row<Q, 1>(c + r * PANEL, nn, y, out.e, n0);
        }
      }
    }
  }
}
#define SIMA_GEMM_ARGS(T) \
  const T *a, int lda, const S &bs, int kg, int M, int N, const GemmOut<Y>&out, int m0, int m1, int p0, int p1
template <typename Q, bool ON_M, typename Y, typename S>
SIMA_AVX512 void gemm_vnni(SIMA_GEMM_ARGS(uint8_t)) {
  gemm_body<kTileVnni, Q, ON_M>(a, lda, bs, kg, M, N, out, m0, m1, p0, p1);
}
template <typename Q, bool ON_M, typename Y, typename S>
SIMA_AVX2 void gemm_avx2(SIMA_GEMM_ARGS(int16_t)) {
  gemm_body<kTileAvx2, Q, ON_M>(a, lda, bs, kg, M, N, out, m0, m1, p0, p1);
}
template <typename Q, bool ON_M, typename Y, typename S>
void gemm_generic(SIMA_GEMM_ARGS(int16_t)) {
  gemm_body<kTileGeneric, Q, ON_M>(a, lda, bs, kg, M, N, out, m0, m1, p0, p1);
}

// The block function of this format on this CPU.
template <typename T, typename Q, bool ON_M, typename Y, typename S>
static auto gemm_block() {
  if constexpr (sizeof(T) == 1) return gemm_vnni<Q, ON_M, Y, S>;
  else return host_isa() == kAvx2 ? gemm_avx2<Q, ON_M, Y, S> : gemm_generic<Q, ON_M, Y, S>;
}
#undef SIMA_GEMM_ARGS

// The whole GEMM on the thread pool: panels split between threads, or rows where that shares the work
// more evenly (few panels: a 7 x 7 map is one whole panel and one of 17 columns; every thread then
// packs the activation panels it multiplies, a small cost next to M rows of products).
template <typename Q, bool ON_M, typename T, typename Y, typename S>
static void gemm(const T* a, int lda, const S& bs, int kg, int M, int N, const GemmOut<Y>& out) {
  auto block = gemm_block<T, Q, ON_M, Y, S>();
  const int panels = (N + PANEL - 1) / PANEL, mtiles = (M + MR - 1) / MR;
  parallel([&](int task, int tasks) {
    int lo, hi;
    // the largest share of the columns, or of the rows, that one thread gets
    const int64_t by_panels = std::min<int64_t>((int64_t)(panels + tasks - 1) / tasks * PANEL, N) * M;
    const int64_t by_rows = std::min<int64_t>((int64_t)(mtiles + tasks - 1) / tasks * MR, M) * N;
    if (panels >= tasks && by_panels <= by_rows) {
      split(panels, task, tasks, &lo, &hi);
      block(a, lda, bs, kg, M, N, out, 0, M, lo, hi);
    } else {
      split(mtiles, task, tasks, &lo, &hi);
      block(a, lda, bs, kg, M, N, out, lo * MR, hi * MR < M ? hi * MR : M, 0, panels);
    }
  }, (int64_t)M * N * kg * group_of<T>());
}

// ---- packing ----
template <int G>
SIMA_INLINE size_t panels_size(int K, int N) {
  return (size_t)((N + PANEL - 1) / PANEL) * ((K + G - 1) / G) * G * PANEL;
}
template <int G, typename T>
SIMA_INLINE T* panel_at(T* b, int kg, int k, int n) {
  return b + ((size_t)(n / PANEL) * kg + k / G) * G * PANEL + (n % PANEL) * G + k % G;
}

// The weights w[k * ks + c * ns] (K x N, channel c) as B panels, or as A rows (AS_A: M = N channels).
template <bool AS_A, typename T>
static void pack_weights(const int8_t* w, int K, int N, int64_t ks, int64_t ns, std::vector<T>* out) {
  constexpr int G = group_of<T>();
  const int lda = round_up(K, G), kg = lda / G;
  out->assign(AS_A ? (size_t)round_up(N, MR) * lda : panels_size<G>(K, N), 0);
  for (int c = 0; c < N; ++c)
    for (int k = 0; k < K; ++k) {
      T* at = AS_A ? out->data() + (size_t)c * lda + k : panel_at<G>(out->data(), kg, k, c);
      *at = (T)w[k * ks + c * ns];
    }
}

// A constant operand packed once per format (at the first call) from the kernel's int8 blob; the
// quads with their epilogue, whose bias takes away the activations' shift.
struct Packed {
  std::once_flag once, once_quads;
  std::vector<int16_t> pairs;
  std::vector<uint8_t> quads;
  Epilogue e;
  std::vector<int64_t> bias;
  std::vector<int32_t> bias32;
};

template <bool AS_A, typename T>
static const T* packed(Packed* p, const int8_t* w, int K, int N, int64_t ks, int64_t ns, const Epilogue& e,
                       int64_t shift) {
  if constexpr (sizeof(T) == 2) {
    std::call_once(p->once, [&] { pack_weights<AS_A>(w, K, N, ks, ns, &p->pairs); });
    return p->pairs.data();
  } else {
    std::call_once(p->once_quads, [&] {
      pack_weights<AS_A>(w, K, N, ks, ns, &p->quads);
      p->e = e;
      p->bias.resize(N);
      p->bias32.resize(e.bias32 != nullptr ? N : 0);
      for (int c = 0; c < N; ++c) {
        int64_t sum = 0;
        for (int k = 0; k < K; ++k) sum += w[k * ks + c * ns];
        p->bias[c] = e.bias[c] - shift * sum;
        // the generator's int32 bound covers |bias| + 128 * sum |w|: the shifted bias fits
        if (e.bias32 != nullptr) p->bias32[c] = (int32_t)(e.bias32[c] - shift * sum);
      }
      p->e.bias = p->bias.data();
      if (e.bias32 != nullptr) p->e.bias32 = p->bias32.data();
    });
    return p->quads.data();
  }
}
// ---- convolution, NCHW, groups == 1: A = OIHW weights [oc][c * kh * kw], B = the input's columns ----
// im2col of one image as rows m[k][n] of input codes, k = (ic, ky, kx), n = (oy, ox); padded pixels zp.
// (Then packed as a 1x1 conv's input is: the rows interleave into panels with vector shuffles.)
SIMA_INLINE int ceil_div(int a, int b) { return a > 0 ? (a + b - 1) / b : -((-a) / b); }
template <typename X>
static void im2col_rows(const X* x, const Conv& g, X* __restrict m, int k0, int k1) {
  const int P = g.oh * g.ow;
  for (int k = k0; k < k1; ++k) {
    const int ic = k / (g.kh * g.kw), ky = (k / g.kw) % g.kh, kx = k % g.kw, c0 = kx * g.dw - g.pl;
    // output columns ox whose input column ox * sw + c0 is inside: [ox0, ox1)
    int ox0 = ceil_div(-c0, g.sw), ox1 = ceil_div(g.w - c0, g.sw);
    ox0 = ox0 < 0 ? 0 : (ox0 > g.ow ? g.ow : ox0);
    ox1 = ox1 < ox0 ? ox0 : (ox1 > g.ow ? g.ow : ox1);
    for (int oy = 0; oy < g.oh; ++oy) {
      const int iy = oy * g.sh + ky * g.dh - g.pt;
      X* __restrict d = m + (int64_t)k * P + oy * g.ow;
      const bool row = iy >= 0 && iy < g.h;
      for (int ox = 0; ox < (row ? ox0 : g.ow); ++ox) d[ox] = (X)g.zp;
      if (!row) continue;
      const X* __restrict src = x + ((int64_t)ic * g.h + iy) * g.w + c0;
      if (g.sw == 1)
        for (int ox = ox0; ox < ox1; ++ox) d[ox] = src[ox];
      else
        for (int ox = ox0; ox < ox1; ++ox) d[ox] = src[ox * g.sw];
      for (int ox = ox1; ox < g.ow; ++ox) d[ox] = (X)g.zp;
    }
  }
}

// 1x1, stride 1, no padding: column n of B is pixel n of every channel; G channel rows interleave.
// Sixteen columns of four whole channel rows (r[t][j], j < 16) as quads: two rounds of byte and
// word interleaves (SSE2, in every x86-64 CPU); flip: 0x80 to store int8 codes unsigned.
SIMA_INLINE void quads16(const void* r0, const void* r1, const void* r2, const void* r3, __m128i flip, void* dst) {
  const __m128i a = _mm_xor_si128(_mm_loadu_si128((const __m128i*)r0), flip);
  const __m128i b = _mm_xor_si128(_mm_loadu_si128((const __m128i*)r1), flip);
  const __m128i c = _mm_xor_si128(_mm_loadu_si128((const __m128i*)r2), flip);
  const __m128i d = _mm_xor_si128(_mm_loadu_si128((const __m128i*)r3), flip);
  const __m128i ab0 = _mm_unpacklo_epi8(a, b), ab1 = _mm_unpackhi_epi8(a, b);
  const __m128i cd0 = _mm_unpacklo_epi8(c, d), cd1 = _mm_unpackhi_epi8(c, d);
  __m128i* out = (__m128i*)dst;
  _mm_storeu_si128(out, _mm_unpacklo_epi16(ab0, cd0));
  _mm_storeu_si128(out + 1, _mm_unpackhi_epi16(ab0, cd0));
  _mm_storeu_si128(out + 2, _mm_unpacklo_epi16(ab1, cd1));
  _mm_storeu_si128(out + 3, _mm_unpackhi_epi16(ab1, cd1));
}

// Panel p of B whose column n is the K values m[k * P + n] (a 1x1 conv's input, or im2col rows).
template <typename T, typename X>
static void pack_rows_panel(const X* __restrict m, int K, int P, int p, T* __restrict dst) {
  constexpr int G = group_of<T>();
  const int kg = (K + G - 1) / G, n0 = p * PANEL, nn = P - n0 < PANEL ? P - n0 : PANEL;
  const __m128i flip = _mm_set1_epi8(std::is_signed<X>::value ? (char)0x80 : 0);
  for (int k = 0; k < kg; ++k, dst += G * PANEL) {
    if constexpr (sizeof(T) == 1) {
      if (nn == PANEL && G * k + G <= K) {  // a whole panel of four rows
        const X* r = m + (int64_t)(G * k) * P + n0;
        for (int h = 0; h < PANEL; h += 16)
          quads16(r + h, r + P + h, r + 2 * P + h, r + 3 * P + h, flip, dst + G * h);
        continue;
      }
    }
    for (int t = 0; t < G; ++t) {
      const int row = G * k + t;
      const X* src = m + (int64_t)row * P + n0;
      if (row < K)
        for (int j = 0; j < nn; ++j) dst[G * j + t] = code_of<T>(src[j]);
      else
        for (int j = 0; j < nn; ++j) dst[G * j + t] = 0;
    }
  }
}

// B sources of gemm: weights packed once, or activation rows packed a panel at a time.
template <typename T>
struct PackedB {
  const T* b;
  int kg;
  const T* panel(int p, T*) const { return b + (int64_t)p * kg * group_of<T>() * PANEL; }
};
template <typename T, typename X>
struct RowsB {
  const X* m;
  int K, P;
  const T* panel(int p, T* buffer) const {
    pack_rows_panel(m, K, P, p, buffer);
    return buffer;
  }
};

template <typename T, typename Q, typename X, typename Y>
static void conv_nchw_as(const X* x, Y* y, const T* a, const Conv& g, const Epilogue& e) {
  constexpr int G = group_of<T>();
  const int K = g.c * g.kh * g.kw, P = g.oh * g.ow;
  const bool pointwise = is_pointwise(g);
  for (int bn = 0; bn < g.n; ++bn) {
    const X* rows = x + (int64_t)bn * g.c * g.h * g.w;
    if (!pointwise) {
      X* im2col = scratch<X>(1, (size_t)K * P);
      parallel([&](int task, int tasks) {
        int lo, hi;
        split(K, task, tasks, &lo, &hi);
        im2col_rows(rows, g, im2col, lo, hi);
      }, (int64_t)K * P);
      rows = im2col;
    }
    const GemmOut<Y> out{y + (int64_t)bn * g.oc * P, P, e};
    gemm<Q, true>(a, round_up(K, G), RowsB<T, X>{rows, K, P}, (K + G - 1) / G, g.oc, P, out);
  }
}
template <typename Q, typename X, typename Y>
static void conv_nchw(const X* x, Y* y, const int8_t* w, Packed* wa, const Conv& g, const Epilogue& e) {
  const int K = g.c * g.kh * g.kw;
  if (host_isa() == kAvx512)
    conv_nchw_as<uint8_t, Q>(x, y, packed<true, uint8_t>(wa, w, K, g.oc, 1, K, e, quad_shift<X>()), g, wa->e);
  else
    conv_nchw_as<int16_t, Q>(x, y, packed<true, int16_t>(wa, w, K, g.oc, 1, K, e, 0), g, e);
}

// ---- convolution, NHWC, groups == 1: A = im2col rows of the input (k = ky, kx, ic), B = HWIO [k][oc] ----
// Rows [p0, p1) of A: row p is output pixel p's receptive field, (ky, kx, ic), as codes.
template <typename T, typename X>
static void im2col_nhwc(const X* __restrict x, const Conv& g, int lda, T* __restrict a, int p0, int p1) {
  const T pad = code_of<T>((X)g.zp);
  const bool pointwise = is_pointwise(g);
  if (pointwise && lda == g.c) {  // the rows are the input's pixels: one flat copy
    const X* __restrict src = x + (int64_t)p0 * g.c;
    T* __restrict dst = a + (int64_t)p0 * g.c;
    for (int64_t i = 0, n = (int64_t)(p1 - p0) * g.c; i < n; ++i) dst[i] = code_of<T>(src[i]);
    return;
  }
  for (int p = p0; p < p1; ++p) {
    const int bn = p / (g.oh * g.ow), oy = (p / g.ow) % g.oh, ox = p % g.ow;
    T* row = a + (size_t)p * lda;
    for (int ky = 0; ky < g.kh; ++ky)
      for (int kx = 0; kx < g.kw; ++kx) {
        const int iy = oy * g.sh + ky * g.dh - g.pt, ix = ox * g.sw + kx * g.dw - g.pl;
        T* dst = row + (ky * g.kw + kx) * g.c;
        if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) {
          const X* src = x + (((int64_t)bn * g.h + iy) * g.w + ix) * g.c;
          for (int ic = 0; ic < g.c; ++ic) dst[ic] = code_of<T>(src[ic]);
        } else {
          for (int ic = 0; ic < g.c; ++ic) dst[ic] = pad;
        }
      }
  }
}

template <typename T, typename Q, typename X, typename Y>
static void conv_nhwc_as(const X* x, Y* y, const T* wb, const Conv& g, const Epilogue& e) {
  constexpr int G = group_of<T>();
  const int K = g.kh * g.kw * g.c, P = g.n * g.oh * g.ow, lda = round_up(K, G);
  T* a = scratch<T>(0, (size_t)round_up(P, MR) * lda);
  parallel([&](int task, int tasks) {
    int lo, hi;
    split(P, task, tasks, &lo, &hi);
    im2col_nhwc(x, g, lda, a, lo, hi);
  }, (int64_t)P * K);
  gemm<Q, false>(a, lda, PackedB<T>{wb, lda / G}, lda / G, P, g.oc, GemmOut<Y>{y, g.oc, e});
}
template <typename Q, typename X, typename Y>
static void conv_nhwc(const X* x, Y* y, const int8_t* w, Packed* wb, const Conv& g, const Epilogue& e) {
  const int K = g.kh * g.kw * g.c;
  if (host_isa() == kAvx512)
    conv_nhwc_as<uint8_t, Q>(x, y, packed<false, uint8_t>(wb, w, K, g.oc, g.oc, 1, e, quad_shift<X>()), g, wb->e);
  else
    conv_nhwc_as<int16_t, Q>(x, y, packed<false, int16_t>(wb, w, K, g.oc, g.oc, 1, e, 0), g, e);
}

// ---- dense: A = input rows [rows][k], B = OI weights transposed [k][oc] ----
template <typename T, typename Q, typename X, typename Y>
static void dense_as(const X* x, Y* y, const T* wb, int rows, int K, int oc, const Epilogue& e) {
  constexpr int G = group_of<T>();
  const int lda = round_up(K, G);
  T* pa = scratch<T>(0, (size_t)round_up(rows, MR) * lda);
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < K; ++k) pa[(size_t)r * lda + k] = code_of<T>(x[(int64_t)r * K + k]);
  gemm<Q, false>(pa, lda, PackedB<T>{wb, lda / G}, lda / G, rows, oc, GemmOut<Y>{y, oc, e});
}
template <typename Q, typename X, typename Y>
static void dense(const X* x, Y* y, const int8_t* w, Packed* wb, int rows, int K, int oc, const Epilogue& e) {
  if (host_isa() == kAvx512)
    dense_as<uint8_t, Q>(x, y, packed<false, uint8_t>(wb, w, K, oc, 1, K, e, quad_shift<X>()), rows, K, oc, wb->e);
  else
    dense_as<int16_t, Q>(x, y, packed<false, int16_t>(wb, w, K, oc, 1, K, e, 0), rows, K, oc, e);
}

}  // namespace sima_kernels
