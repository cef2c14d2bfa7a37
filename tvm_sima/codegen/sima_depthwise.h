// ---- sima_depthwise.h ----
namespace sima_kernels {

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

// taps_avx2's pairs on AVX-512 (vpdpwssd: the multiply-add and the sum in one), 64 outputs at a time;
// the even and odd lanes re-interleaved by two permutes per 32 outputs.
SIMA_AVX512 static void taps_avx512(const int16_t* const* src, const int8_t* w, int taps, int64_t n, int32_t* acc) {
  const __m512i first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i second = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  for (int64_t i0 = 0; i0 < n; i0 += 64) {
    __m512i even[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()}, odd[2] = {even[0], even[1]};
    for (int t = 0; t < taps; ++t) {
      const uint32_t wt = (uint16_t)w[t];
      const __m512i we = _mm512_set1_epi32((int32_t)wt), wo = _mm512_set1_epi32((int32_t)(wt << 16));
      for (int v = 0; v < 2; ++v) {
        const __m512i x = _mm512_loadu_si512(src[t] + i0 + 32 * v);
        even[v] = _mm512_dpwssd_epi32(even[v], x, we);
        odd[v] = _mm512_dpwssd_epi32(odd[v], x, wo);
      }
    }
    for (int v = 0; v < 2; ++v) {
      _mm512_storeu_si512(acc + i0 + 32 * v, _mm512_permutex2var_epi32(even[v], first, odd[v]));
      _mm512_storeu_si512(acc + i0 + 32 * v + 16, _mm512_permutex2var_epi32(even[v], second, odd[v]));
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
        int16_t* dst = pl + (int64_t)ry * g.sw * plane + (int64_t)i * wq;
        int16_t* padded = g.sw == 1 ? dst : row;  // stride 1: the padded row is the plane's row
        if (sy >= 0 && sy < g.h) {
          fill16(padded, x0, (int16_t)g.zp);
          widen16(xc + (int64_t)sy * g.w - g.pl + x0, padded + x0, x1 - x0);
          fill16(padded + x1, wide - x1, (int16_t)g.zp);
        } else {
          fill16(padded, wide, (int16_t)g.zp);
        }
        if (g.sw == 2) {
          for (int j = 0; j < wq; ++j) {
            dst[j] = row[2 * j];
            dst[plane + j] = row[2 * j + 1];
          }
        } else if (g.sw > 2) {
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
    if constexpr (ISA == kAvx512) {  // rows of wq accumulators, of which the first ow are outputs
      taps_avx512(tap_src, wc, taps, outputs, pa);
      epilogue_rows_avx512<Q>(pa, g.oh, g.ow, wq, y + (int64_t)nc * g.oh * g.ow, e, ch);
      continue;
    }
    if constexpr (ISA == kAvx2) taps_avx2(tap_src, wc, taps, outputs, pa);
    else taps_generic(tap_src, wc, taps, outputs, pa);
    if (wq != g.ow)  // drop the extra columns: the channel's outputs contiguous, one long epilogue
      for (int oy = 1; oy < g.oh; ++oy)
        for (int ox = 0; ox < g.ow; ++ox) pa[(int64_t)oy * g.ow + ox] = pa[(int64_t)oy * wq + ox];
    epilogue_row<Q, 0>(pa, g.oh * g.ow, y + (int64_t)nc * g.oh * g.ow, e, ch);
  }
}
template <typename Q, typename X, typename Y>
SIMA_AVX512 void depthwise_avx512(const X* x, Y* y, const int8_t* w, const Conv& g, const Epilogue& e, int lo, int hi) {
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

// ---- depthwise NCHW on AVX-512 VNNI: quads of horizontal taps ----
// vpdpbusd adds four u8 x s8 products into an int32 lane, so a lane holds four horizontal taps of one
// output: group q (of ceil(kw / 4)) holds taps kx = 4q..4q+3, weights past kw being 0. Per channel:
//  1. the zero-point padded input, as unsigned codes (int8 shifted by 128; the shift's products are
//     taken away before the epilogue), is split into sh x sw residue planes (row mod sh, column mod
//     sw) of hq rows x wq columns, as the int16 path does;
//  2. per row residue ry and group q, a quad plane over the whole flat residue plane: quad f holds
//     the four bytes of taps 4q..4q+3 at flat position f (contiguous loads, no per-row work);
//  3. tap row ky of every output is then one contiguous run of quads, read at row (ky * dh) / sh of
//     quad plane ((ky * dh) % sh, q); rows of wq >= ow outputs, the last wq - ow thrown away.
struct DepthwiseQuads {
  int groups, hq, wq;
  bool whole;           // dw 1, sw 1 or 2: rows kept whole (one plane per row residue), quads by shuffles
  int64_t wide;         // oh * wq outputs computed, rounded up to a vector
  int64_t rs, qs;       // elements of a residue plane (bytes) and of a quad plane (quads), slack included
};
SIMA_INLINE DepthwiseQuads depthwise_quads(const Conv& g) {
  DepthwiseQuads d;
  d.groups = (g.kw + 3) / 4;
  d.hq = (g.oh - 1) + ((g.kh - 1) * g.dh) / g.sh + 1;
  d.wq = (g.ow - 1) + ((g.kw - 1) * g.dw) / g.sw + 1;
  d.wide = round_up(g.oh * d.wq, 16);
  // a tap run reads up to row offset (hq - oh) * wq plus the rounded run; a quad reads 4 * groups taps on
  d.qs = round_up((int)((d.hq - g.oh) * (int64_t)d.wq + d.wide), 16);
  d.whole = g.dw == 1 && g.sw <= 2;
  // slack: a quad reads 16 (whole: 64 bytes) past its position, a row store writes up to 63 past its row
  d.rs = d.whole ? d.qs * g.sw + 4 * d.groups + 64 : d.qs + ((4 * d.groups - 1) * g.dw) / g.sw + 64;
  return d;
}

// Padded columns [c, c + 64) of a row as unsigned codes, in a register: one masked load (lanes outside
// the input read nothing, not even past its ends) over the zero point. row: the input row, or null.
template <typename X>
SIMA_AVX512_INLINE __m512i padded_chunk(const X* row, const Conv& g, int c, __m512i pad, __m512i flip) {
  if (row == nullptr) return _mm512_xor_si512(pad, flip);
  const int lo = g.pl - c, hi = g.pl + g.w - c;  // lanes [lo, hi) hold input columns
  const __mmask64 below = lo <= 0 ? 0 : (lo >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << lo) - 1));
  const __mmask64 upto = hi <= 0 ? 0 : (hi >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << hi) - 1));
  const __mmask64 inside = upto & ~below;
  if (inside == 0) return _mm512_xor_si512(pad, flip);
  return _mm512_xor_si512(_mm512_mask_loadu_epi8(pad, inside, row + (c - g.pl)), flip);
}

// Residue planes of one channel: res[(ry * sw + rx) * rs + i * wq + j] = padded[i * sh + ry][j * sw + rx].
// Whole vectors are stored: the excess lands in the next row (written after) or in the slack.
template <typename X>
SIMA_AVX512_INLINE void residue_planes(const X* xc, const Conv& g, const DepthwiseQuads& d, uint8_t* res,
                                       uint8_t* row) {
  const int width = d.wq * g.sw;  // padded columns, rounded up to whole residues
  const __m512i flip = _mm512_set1_epi8(std::is_signed<X>::value ? (char)0x80 : 0);
  const __m512i pad = _mm512_set1_epi8((char)(X)g.zp);
  for (int ry = 0; ry < g.sh; ++ry)
    for (int i = 0; i < d.hq; ++i) {
      const int sy = i * g.sh + ry - g.pt;
      const X* src = sy >= 0 && sy < g.h ? xc + (int64_t)sy * g.w : nullptr;
      uint8_t* dst = d.whole ? res + (int64_t)ry * d.rs + (int64_t)i * width
                             : res + (int64_t)ry * g.sw * d.rs + (int64_t)i * d.wq;
      for (int c = 0; c < width; c += 64) {
        const __m512i codes = padded_chunk(src, g, c, pad, flip);
        if (g.sw == 1 || d.whole) {
          _mm512_storeu_si512(dst + c, codes);
        } else if (g.sw == 2) {  // even and odd bytes: the low and high halves of 16-bit words, narrowed
          _mm256_storeu_si256((__m256i*)(dst + c / 2), _mm512_cvtepi16_epi8(codes));
          _mm256_storeu_si256((__m256i*)(dst + d.rs + c / 2), _mm512_cvtepi16_epi8(_mm512_srli_epi16(codes, 8)));
        } else {
          _mm512_storeu_si512(row + c, codes);
        }
      }
      if (g.sw > 2)
        for (int rx = 0; rx < g.sw; ++rx)
          for (int j = 0; j < d.wq; ++j) dst[rx * d.rs + j] = row[j * g.sw + rx];
    }
}

// Quad plane (ry, q): quads[f] = the bytes of taps 4q..4q+3 at flat position f, f < qs.
SIMA_AVX512_INLINE void quad_plane(const uint8_t* res, const Conv& g, const DepthwiseQuads& d, int ry, int q,
                                   uint32_t* quads) {
  if (d.whole) {  // quad f = the four bytes at f * sw + 4q: dwords moved into each 128-bit lane, then bytes
    const uint8_t* base = res + (int64_t)ry * d.rs + 4 * q;
    const __m512i idx = g.sw == 1 ? _mm512_setr_epi32(0, 1, 0, 0, 1, 2, 0, 0, 2, 3, 0, 0, 3, 4, 0, 0)
                                  : _mm512_setr_epi32(0, 1, 2, 0, 2, 3, 4, 0, 4, 5, 6, 0, 6, 7, 8, 0);
    const __m128i lane = g.sw == 1 ? _mm_setr_epi8(0, 1, 2, 3, 1, 2, 3, 4, 2, 3, 4, 5, 3, 4, 5, 6)
                                   : _mm_setr_epi8(0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9);
    const __m512i pattern = _mm512_broadcast_i32x4(lane);
    for (int64_t f = 0; f < d.qs; f += 16) {
      const __m512i v = _mm512_loadu_si512(base + f * g.sw);
      _mm512_storeu_si512(quads + f, _mm512_shuffle_epi8(_mm512_permutexvar_epi32(idx, v), pattern));
    }
    return;
  }
  const uint8_t* src[4];
  for (int t = 0; t < 4; ++t) {
    const int c = (4 * q + t) * g.dw;
    src[t] = res + ((int64_t)ry * g.sw + c % g.sw) * d.rs + c / g.sw;
  }
  for (int64_t f = 0; f < d.qs; f += 16) {
    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(src[0] + f)));
    for (int t = 1; t < 4; ++t)
      v = _mm512_or_si512(v, _mm512_slli_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(src[t] + f))),
                                               8 * t));
    _mm512_storeu_si512(quads + f, v);
  }
}

// The taps of a channel: tap (ky, q) reads the quads at offset[t] (the same for every channel), times
// the four weights of word[t].
SIMA_INLINE void tap_offsets(const Conv& g, const DepthwiseQuads& d, int64_t* offset) {
  for (int ky = 0; ky < g.kh; ++ky)
    for (int q = 0; q < d.groups; ++q) {
      const int r = ky * g.dh;
      offset[ky * d.groups + q] = ((r % g.sh) * d.groups + q) * d.qs + (int64_t)(r / g.sh) * d.wq;
    }
}
SIMA_INLINE void tap_words(const int8_t* wc, const Conv& g, const DepthwiseQuads& d, int32_t* word) {
  for (int ky = 0; ky < g.kh; ++ky)
    for (int q = 0; q < d.groups; ++q) {
      uint8_t b[4];
      for (int t = 0; t < 4; ++t) b[t] = 4 * q + t < g.kw ? (uint8_t)wc[ky * g.kw + 4 * q + t] : 0;
      word[ky * d.groups + q] = word_at(b);
    }
}

// acc[f] = correction + sum over taps of dpbusd(quads at offset[t] + f, word[t]), f < wide: four vectors
// at a time, then one.
SIMA_AVX512_INLINE void quad_taps(const uint32_t* quads, const int64_t* offset, const int32_t* word, int taps,
                                  int64_t wide, int32_t correction, int32_t* acc) {
  const __m512i start = _mm512_set1_epi32(correction);
  int64_t f = 0;
  for (; f + 64 <= wide; f += 64) {
    __m512i a0 = start, a1 = start, a2 = start, a3 = start;
    for (int t = 0; t < taps; ++t) {
      const uint32_t* s = quads + offset[t] + f;
      const __m512i wt = _mm512_set1_epi32(word[t]);
      a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(s), wt);
      a1 = _mm512_dpbusd_epi32(a1, _mm512_loadu_si512(s + 16), wt);
      a2 = _mm512_dpbusd_epi32(a2, _mm512_loadu_si512(s + 32), wt);
      a3 = _mm512_dpbusd_epi32(a3, _mm512_loadu_si512(s + 48), wt);
    }
    _mm512_storeu_si512(acc + f, a0);
    _mm512_storeu_si512(acc + f + 16, a1);
    _mm512_storeu_si512(acc + f + 32, a2);
    _mm512_storeu_si512(acc + f + 48, a3);
  }
  for (; f < wide; f += 16) {
    __m512i a0 = start;
    for (int t = 0; t < taps; ++t)
      a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(quads + offset[t] + f), _mm512_set1_epi32(word[t]));
    _mm512_storeu_si512(acc + f, a0);
  }
}

template <typename Q, typename X, typename Y>
SIMA_AVX512 void depthwise_vnni(const X* x, Y* y, const int8_t* w, const Conv& geometry, const Epilogue& e, int lo,
                                int hi) {
  const Conv g = geometry;
  const DepthwiseQuads d = depthwise_quads(g);
  uint8_t* res = scratch<uint8_t>(3, (size_t)(g.sh * g.sw * d.rs + round_up(d.wq * g.sw, 64)));
  uint32_t* quads = scratch<uint32_t>(0, (size_t)(g.sh * d.groups * d.qs));
  int32_t* acc = scratch<int32_t>(2, (size_t)d.wide);
  const int taps = g.kh * d.groups;
  int64_t* offset = scratch<int64_t>(0, (size_t)taps);
  int32_t* word = scratch<int32_t>(1, (size_t)taps);
  tap_offsets(g, d, offset);
  for (int nc = lo; nc < hi; ++nc) {
    const int ch = nc % g.c;
    const int8_t* wc = w + (int64_t)ch * g.kh * g.kw;
    residue_planes(x + (int64_t)nc * g.h * g.w, g, d, res, res + g.sh * g.sw * d.rs);
    for (int ry = 0; ry < g.sh; ++ry)
      for (int q = 0; q < d.groups; ++q) quad_plane(res, g, d, ry, q, quads + (ry * d.groups + q) * d.qs);
    int64_t sum = 0;
    for (int t = 0; t < g.kh * g.kw; ++t) sum += wc[t];
    tap_words(wc, g, d, word);
    quad_taps(quads, offset, word, taps, d.wide, (int32_t)(-quad_shift<X>() * sum), acc);
    // rows of wq accumulators, of which the first ow are outputs
    epilogue_rows_avx512<Q>(acc, g.oh, g.ow, d.wq, y + (int64_t)nc * g.oh * g.ow, e, ch);
  }
}

template <typename Q, typename X, typename Y>
static void depthwise_nchw(const X* x, Y* y, const int8_t* w, const Conv& g, const Epilogue& e) {
  const int isa = host_isa();
  // VNNI's quads hold bytes: int16 codes (the 16-bit mode) take the int16 residue planes
  auto body = isa == kAvx512 ? (sizeof(X) == 1 ? depthwise_vnni<Q, X, Y> : depthwise_avx512<Q, X, Y>)
                             : (isa == kAvx2 ? depthwise_avx2<Q, X, Y> : depthwise_generic<Q, X, Y>);
  parallel([&](int task, int tasks) {
    int lo, hi;
    split(g.n * g.c, task, tasks, &lo, &hi);
    body(x, y, w, g, e, lo, hi);
  }, (int64_t)g.n * g.c * g.oh * g.ow * g.kh * g.kw);
}

}  // namespace sima_kernels
