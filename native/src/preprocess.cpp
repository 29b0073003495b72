#include "preprocess.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "status.h"
#include "util.h"

// SSE2 is x86-64's baseline (and 32-bit MSVC's with /arch:SSE2): no compiler flag is needed. Define
// DRT_LETTERBOX_NO_SIMD to build the plain C++ path only.
#if !defined(DRT_LETTERBOX_NO_SIMD) && \
    (defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2))
#define DRT_LETTERBOX_SSE2 1
#include <emmintrin.h>
#elif !defined(DRT_LETTERBOX_NO_SIMD) && (defined(__aarch64__) || defined(_M_ARM64))
// NEON is baseline on AArch64 (every Jetson): same structure as the SSE2 pass. Checked bit-exact under qemu-user
// (native/portability.sh, part aarch64); its speed is not measured on an ARM CPU.
#define DRT_LETTERBOX_NEON 1
#include <arm_neon.h>
#endif

namespace drt {

namespace {
constexpr int kMaxImageSide = 1 << 20;
}  // namespace

ImageView make_image_view(const uint8_t* pixels, int width, int height, int stride_bytes, lb::PixelFormat format) {
  if (width <= 0 || height <= 0)
    throw Error(Status::InvalidArgument, "image size " + std::to_string(width) + " x " + std::to_string(height) +
                                             "; width and height must be >= 1");
  if (width > kMaxImageSide || height > kMaxImageSide)
    throw Error(Status::InvalidArgument, "image size " + std::to_string(width) + " x " + std::to_string(height) +
                                             "; each side must be at most " + std::to_string(kMaxImageSide));
  const size_t cn = static_cast<size_t>(lb::detail::channels(format));
  const size_t row = checked_mul(static_cast<size_t>(width), cn, "image row (width x channels)");
  if (stride_bytes < 0)
    throw Error(Status::InvalidArgument, "stride_bytes " + std::to_string(stride_bytes) +
                                             " is negative; bottom-up images must be flipped first");
  const size_t stride = stride_bytes == 0 ? row : static_cast<size_t>(stride_bytes);
  if (stride < row)
    throw Error(Status::InvalidArgument, "stride_bytes " + std::to_string(stride_bytes) + " is smaller than a row (" +
                                             std::to_string(width) + " pixels x " + std::to_string(cn) + " bytes = " +
                                             std::to_string(row) + "); bottom-up (negative stride) images must be "
                                             "flipped first");
  checked_add(checked_mul(stride, static_cast<size_t>(height - 1), "image (stride x height)"), row, "image bytes");
  ImageView v;
  v.pixels = pixels;
  v.width = width;
  v.height = height;
  v.stride = stride;
  v.format = format;
  return v;
}


lb::Geometry letterbox_geometry(const ImageView& image, int dst_w, int dst_h) {
  if (image.width <= 0 || image.height <= 0)
    throw Error(Status::InvalidArgument, "image size " + std::to_string(image.width) + " x " +
                                             std::to_string(image.height) + "; width and height must be >= 1");
  lb::Geometry g = lb::geometry(image.width, image.height, dst_w, dst_h);
  if (g.new_w < 1 || g.new_h < 1 || g.new_w > dst_w || g.new_h > dst_h)
    throw Error(Status::InvalidArgument, "image size " + std::to_string(image.width) + " x " +
                                             std::to_string(image.height) + " is too elongated for the model input " +
                                             std::to_string(dst_w) + " x " + std::to_string(dst_h) +
                                             " (a side would be resized to 0 pixels); crop it first");
  return g;
}

namespace {

// ---------------------------------------------------------------------------------------------------------------------
// The fast CPU path. Same arithmetic as lb::sample (OpenCV's INTER_LINEAR on uint8), laid out the way OpenCV itself
// runs it: a horizontal pass per source row into 16-bit planes (each needed source row computed once and kept in a
// two-row cache), then a vertical pass per destination row that blends two such rows, clamps, divides by 255 and
// writes the three float planes. The horizontal pass has SSE2 (x86-64's baseline: no compiler flag needed) and
// NEON (AArch64's) versions for 3- and 4-channel pixels, the vertical pass and the copy / exact-2x paths of 3-byte
// pixels SSE2 ones; everything else is plain C++ over contiguous arrays that compilers vectorise (the vertical pass
// on ARM, the other copy and 2x paths), and the plain horizontal pass is the fallback for other CPUs, gray images and
// the last columns of a row (Taps::simd_end). native/tests checks every path against lb::sample, the plain one too
// (simd = false).
// The profile of the one-pass version (perf, 1280x720 BGR -> 672x378 of 672x384): ~98 % in the per-pixel loop, which
// computed both horizontal taps of both rows for each of the 3 channels in scalar code (about 60 instructions per
// pixel, the plane pointers spilled to the stack); the pad fill did not show.
// ---------------------------------------------------------------------------------------------------------------------

#if defined(__GNUC__) || defined(_MSC_VER)
#define DRT_RESTRICT __restrict
#else
#define DRT_RESTRICT
#endif

// v / 255.0f for every uint8 v: the same float32 division as the Python runtime's np.divide, done once.
struct Inv255 {
  float v[256];
  Inv255() {
    for (int i = 0; i < 256; ++i) v[i] = static_cast<float>(i) / 255.0f;
  }
};
const Inv255 kInv255;

// Per destination column of the resized image: byte offsets of the two source pixels and their 11-bit weights (the
// numbers of lb::detail::axis). x1 = x0 + one pixel except at the right edge, where it is x0 (weight 0).
struct Taps {
  std::vector<int32_t> x0, x1;
  std::vector<int16_t> a;  // a0, a1 per column
  int simd_end = 0;        // columns [0, simd_end) may read 8 bytes from x0 (inside the row): the SIMD passes
};

Taps horizontal_taps(const lb::Geometry& g, int cn) {
  Taps t;
  const size_t n = static_cast<size_t>(g.new_w);
  t.x0.resize(n);
  t.x1.resize(n);
  t.a.resize(2 * n);
  // new_w <= dst side and src_w <= 2^20, cn <= 4: every byte offset below fits in int32 (make_image_view checked the
  // row size); the row length in bytes is src_w * cn.
  const int64_t row_bytes = static_cast<int64_t>(g.src_w) * cn;
  int simd_end = 0;
  for (int dx = 0; dx < g.new_w; ++dx) {
    int x0, a0, a1;
    lb::detail::axis(dx, g.src_w, g.new_w, true, &x0, &a0, &a1);
    const int x1 = x0 + 1 < g.src_w ? x0 + 1 : g.src_w - 1;
    const size_t i = static_cast<size_t>(dx);
    t.x0[i] = x0 * cn;
    t.x1[i] = x1 * cn;
    t.a[2 * i] = static_cast<int16_t>(a0);
    t.a[2 * i + 1] = static_cast<int16_t>(a1);
    // x0 never decreases with dx, so the columns whose 8-byte read stays inside the row are a prefix.
    if (x1 == x0 + 1 && static_cast<int64_t>(x0) * cn + 8 <= row_bytes) simd_end = dx + 1;
  }
  t.simd_end = simd_end;
  return t;
}

// Horizontal pass, plain C++: (p0 * a0 + p1 * a1) >> 4 for columns [begin, end) of the three planes (R, G, B);
// `off` holds the byte offset of R, G, B inside a source pixel. The >> 4 is the first step of OpenCV's vertical
// pass, done here once per source row instead of twice per destination row; the result fits in int16.
void horizontal_plain(const uint8_t* DRT_RESTRICT row, const Taps& t, const int* off, int begin, int end,
                      int16_t* DRT_RESTRICT h0, int16_t* DRT_RESTRICT h1, int16_t* DRT_RESTRICT h2) {
  const int32_t* x0 = t.x0.data();
  const int32_t* x1 = t.x1.data();
  const int16_t* a = t.a.data();
  const int o0 = off[0], o1 = off[1], o2 = off[2];
  for (int dx = begin; dx < end; ++dx) {
    const uint8_t* p = row + x0[dx];
    const uint8_t* q = row + x1[dx];
    const int w0 = a[2 * dx], w1 = a[2 * dx + 1];
    h0[dx] = static_cast<int16_t>((p[o0] * w0 + q[o0] * w1) >> 4);
    h1[dx] = static_cast<int16_t>((p[o1] * w0 + q[o1] * w1) >> 4);
    h2[dx] = static_cast<int16_t>((p[o2] * w0 + q[o2] * w1) >> 4);
  }
}

// The same for a gray row: one plane.
void horizontal_gray(const uint8_t* DRT_RESTRICT row, const Taps& t, int16_t* DRT_RESTRICT h) {
  const int32_t* x0 = t.x0.data();
  const int32_t* x1 = t.x1.data();
  const int16_t* a = t.a.data();
  const int n = static_cast<int>(t.x0.size());
  for (int dx = 0; dx < n; ++dx)
    h[dx] = static_cast<int16_t>((row[x0[dx]] * a[2 * dx] + row[x1[dx]] * a[2 * dx + 1]) >> 4);
}

#if defined(DRT_LETTERBOX_SSE2)
// The 4 channel sums of one destination pixel: load 8 bytes at the left source pixel (it and its right neighbour),
// pair each channel of the two pixels, then one multiply-add with (a0, a1) per pair. Lane 3 is junk for 3 channels.
template <int CN>
inline __m128i horizontal_pixel(const uint8_t* p, const int16_t* a) {
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i next = _mm_srli_epi64(v, 8 * CN);  // the right neighbour at byte 0
  const __m128i pairs = _mm_unpacklo_epi8(_mm_unpacklo_epi8(v, next), _mm_setzero_si128());
  int32_t w;
  std::memcpy(&w, a, sizeof w);  // a0, a1
  return _mm_madd_epi16(pairs, _mm_set1_epi32(w));
}

// 4 pixels' channel sums -> channel 0, 1, 2 of the 4 pixels (a 4x4 transpose without the 4th row).
inline void transpose3(__m128i p0, __m128i p1, __m128i p2, __m128i p3, __m128i* c0, __m128i* c1, __m128i* c2) {
  const __m128i t0 = _mm_unpacklo_epi32(p0, p1), t1 = _mm_unpacklo_epi32(p2, p3);
  const __m128i t2 = _mm_unpackhi_epi32(p0, p1), t3 = _mm_unpackhi_epi32(p2, p3);
  *c0 = _mm_unpacklo_epi64(t0, t1);
  *c1 = _mm_unpackhi_epi64(t0, t1);
  *c2 = _mm_unpacklo_epi64(t2, t3);
}

// Columns [0, simd_end & ~7) with SSE2; returns where the plain pass must go on. `by_src[k]` is the plane of the source
// pixel's byte k.
template <int CN>
int horizontal_simd(const uint8_t* DRT_RESTRICT row, const Taps& t, int16_t* const* by_src) {
  const int32_t* x0 = t.x0.data();
  const int16_t* a = t.a.data();
  const int end = t.simd_end & ~7;
  for (int dx = 0; dx < end; dx += 8) {
    __m128i c[2][3];
    for (int half = 0; half < 2; ++half) {
      const int d = dx + 4 * half;
      transpose3(horizontal_pixel<CN>(row + x0[d], a + 2 * d), horizontal_pixel<CN>(row + x0[d + 1], a + 2 * d + 2),
                 horizontal_pixel<CN>(row + x0[d + 2], a + 2 * d + 4),
                 horizontal_pixel<CN>(row + x0[d + 3], a + 2 * d + 6), &c[half][0], &c[half][1], &c[half][2]);
    }
    for (int k = 0; k < 3; ++k)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(by_src[k] + dx),
                       _mm_packs_epi32(_mm_srai_epi32(c[0][k], 4), _mm_srai_epi32(c[1][k], 4)));
  }
  return end;
}
#endif

#if defined(DRT_LETTERBOX_NEON)
// As horizontal_pixel (SSE2), already shifted and narrowed: (p0 * a0 + p1 * a1) >> 4 of channels 0..3.
template <int CN>
inline uint16x4_t horizontal_pixel(const uint8_t* p, const int16_t* a) {
  const uint8x8_t v = vld1_u8(p);
  const uint8x8_t next = vext_u8(v, v, CN);  // the right neighbour at byte 0
  uint32x4_t h = vmull_n_u16(vget_low_u16(vmovl_u8(v)), static_cast<uint16_t>(a[0]));
  h = vmlal_n_u16(h, vget_low_u16(vmovl_u8(next)), static_cast<uint16_t>(a[1]));
  return vshrn_n_u32(h, 4);
}

template <int CN>
int horizontal_simd(const uint8_t* DRT_RESTRICT row, const Taps& t, int16_t* const* by_src) {
  const int32_t* x0 = t.x0.data();
  const int16_t* a = t.a.data();
  const int end = t.simd_end & ~7;
  uint16_t pixels[32];  // 8 pixels x 4 channels; vld4q de-interleaves them into 4 x 8 lanes
  for (int dx = 0; dx < end; dx += 8) {
    for (int k = 0; k < 8; ++k) vst1_u16(pixels + 4 * k, horizontal_pixel<CN>(row + x0[dx + k], a + 2 * (dx + k)));
    const uint16x8x4_t c = vld4q_u16(pixels);
    for (int k = 0; k < 3; ++k) vst1q_s16(by_src[k] + dx, vreinterpretq_s16_u16(c.val[k]));
  }
  return end;
}
#endif

// One source row -> its three int16 planes (R, G, B) of new_w columns.
void horizontal_row(const uint8_t* row, int cn, const int* off, const Taps& t, bool simd, int16_t* h0, int16_t* h1,
                    int16_t* h2) {
  if (cn == 1) {  // gray: the three planes are equal; the caller uses h0 only
    horizontal_gray(row, t, h0);
    return;
  }
  int begin = 0;
#if defined(DRT_LETTERBOX_SSE2) || defined(DRT_LETTERBOX_NEON)
  if (simd) {
    int16_t* by_src[3];
    int16_t* planes[3] = {h0, h1, h2};
    for (int p = 0; p < 3; ++p) by_src[off[p]] = planes[p];
    begin = cn == 3 ? horizontal_simd<3>(row, t, by_src) : horizontal_simd<4>(row, t, by_src);
  }
#else
  (void)simd;
#endif
  horizontal_plain(row, t, off, begin, static_cast<int>(t.x0.size()), h0, h1, h2);
}

// Vertical pass of one plane: OpenCV's ((h0 * b0) >> 16) + ((h1 * b1) >> 16) + 2 >> 2 on the 16-bit rows (the
// high half of a 16 x 16-bit product), clamped to uint8, divided by 255 as float32 (IEEE division: the same values
// as kInv255).
void vertical_plane(const int16_t* DRT_RESTRICT r0, const int16_t* DRT_RESTRICT r1, int b0, int b1, int n, bool simd,
                    float* DRT_RESTRICT out) {
  int i = 0;
#if defined(DRT_LETTERBOX_SSE2)
  if (simd) {
    const __m128i w0 = _mm_set1_epi16(static_cast<int16_t>(b0)), w1 = _mm_set1_epi16(static_cast<int16_t>(b1));
    const __m128i two = _mm_set1_epi16(2), zero = _mm_setzero_si128(), max = _mm_set1_epi16(255);
    const __m128 d255 = _mm_set1_ps(255.0f);
    for (; i + 8 <= n; i += 8) {
      const __m128i v0 = _mm_mulhi_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r0 + i)), w0);
      const __m128i v1 = _mm_mulhi_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r1 + i)), w1);
      __m128i v = _mm_srai_epi16(_mm_add_epi16(_mm_add_epi16(v0, v1), two), 2);
      v = _mm_min_epi16(_mm_max_epi16(v, zero), max);
      _mm_storeu_ps(out + i, _mm_div_ps(_mm_cvtepi32_ps(_mm_unpacklo_epi16(v, zero)), d255));
      _mm_storeu_ps(out + i + 4, _mm_div_ps(_mm_cvtepi32_ps(_mm_unpackhi_epi16(v, zero)), d255));
    }
  }
#else
  (void)simd;
#endif
  for (; i < n; ++i) {
    int v = (((r0[i] * b0) >> 16) + ((r1[i] * b1) >> 16) + 2) >> 2;
    v = v < 0 ? 0 : (v > 255 ? 255 : v);
    out[i] = static_cast<float>(v) / 255.0f;
  }
}

// The two-row cache of horizontally resized source rows (3 planes of new_w int16 each per slot).
class RowCache {
 public:
  explicit RowCache(int n) : n_(static_cast<size_t>(n)), data_(6 * n_) {}
  // The planes of source row y, computed by `fill` unless cached; never evicts row `keep`.
  template <class Fill>
  int16_t* get(int y, int keep, Fill fill) {
    for (int s = 0; s < 2; ++s)
      if (row_[s] == y) return slot(s);
    const int s = row_[0] == keep ? 1 : 0;
    row_[s] = y;
    fill(slot(s), slot(s) + n_, slot(s) + 2 * n_);
    return slot(s);
  }
  size_t plane() const { return n_; }

 private:
  int16_t* slot(int s) { return data_.data() + static_cast<size_t>(s) * 3 * n_; }
  size_t n_;
  std::vector<int16_t> data_;
  int row_[2] = {-1, -1};
};

// Equal sizes (copy) and exact 2x downscales (OpenCV's 2x2 area average) of one row. Two loop shapes, each the
// faster one here (1280x720 / 672x384 rows, GCC 12 -O3): 1 and 4 bytes per pixel with the channel offsets as
// constants and the division written out (the same float32 values as kInv255), which vectorises; 3 bytes per pixel
// with the table and all channels of a pixel together, which stays scalar (GCC's vectorised stride-3 loads cost ~3x
// more with SSE2): on x86 it only finishes the rows of copy_row3_sse2 / area2_row3_sse2.
template <int CN, int O0, int O1, int O2>
void special_row(const uint8_t* DRT_RESTRICT r0, const uint8_t* DRT_RESTRICT r1, bool copy, int n,
                 float* DRT_RESTRICT d0, float* DRT_RESTRICT d1, float* DRT_RESTRICT d2) {
  if (copy) {
    for (int dx = 0; dx < n; ++dx) {
      const uint8_t* p = r0 + static_cast<size_t>(dx) * CN;
      d0[dx] = static_cast<float>(p[O0]) / 255.0f;
      d1[dx] = static_cast<float>(p[O1]) / 255.0f;
      d2[dx] = static_cast<float>(p[O2]) / 255.0f;
    }
    return;
  }
  for (int dx = 0; dx < n; ++dx) {
    const uint8_t* p = r0 + static_cast<size_t>(2 * dx) * CN;
    const uint8_t* q = r1 + static_cast<size_t>(2 * dx) * CN;
    d0[dx] = static_cast<float>((p[O0] + p[O0 + CN] + q[O0] + q[O0 + CN] + 2) >> 2) / 255.0f;
    d1[dx] = static_cast<float>((p[O1] + p[O1 + CN] + q[O1] + q[O1 + CN] + 2) >> 2) / 255.0f;
    d2[dx] = static_cast<float>((p[O2] + p[O2 + CN] + q[O2] + q[O2 + CN] + 2) >> 2) / 255.0f;
  }
}

// Columns [begin, n).
void special_row3(const uint8_t* r0, const uint8_t* r1, bool copy, int begin, int n, const int* off, float* d0,
                  float* d1, float* d2) {
  float* dst[3] = {d0, d1, d2};
  if (copy) {
    for (int dx = begin; dx < n; ++dx)
      for (int c = 0; c < 3; ++c) dst[c][dx] = kInv255.v[r0[static_cast<size_t>(dx) * 3 + off[c]]];
    return;
  }
  for (int dx = begin; dx < n; ++dx) {
    const size_t a = static_cast<size_t>(2 * dx) * 3, b = a + 3;
    for (int c = 0; c < 3; ++c) {
      const int o = off[c];
      dst[c][dx] = kInv255.v[(r0[a + o] + r0[b + o] + r1[a + o] + r1[b + o] + 2) >> 2];
    }
  }
}

#if defined(DRT_LETTERBOX_SSE2)
// Exact 2x downscale of 3-byte pixels (1280x720 -> 640x360, the usual camera at imgsz 640) with SSE2: the two source
// rows summed per byte into `sum` (16-bit; at least 6 n + 8 elements), then per destination pixel the two horizontal
// neighbours added, (s + 2) >> 2 (exact integers: the order of the four additions does not matter), 4 pixels
// transposed into the planes, / 255. Returns the first column left to special_row3.
int area2_row3_sse2(const uint8_t* r0, const uint8_t* r1, int n, uint16_t* sum, float* const* by_src) {
  const int len = 6 * n;
  const __m128i zero = _mm_setzero_si128();
  int i = 0;
  for (; i + 16 <= len; i += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r0 + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r1 + i));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(sum + i),
                     _mm_add_epi16(_mm_unpacklo_epi8(a, zero), _mm_unpacklo_epi8(b, zero)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(sum + i + 8),
                     _mm_add_epi16(_mm_unpackhi_epi8(a, zero), _mm_unpackhi_epi8(b, zero)));
  }
  for (; i < len; ++i) sum[i] = static_cast<uint16_t>(r0[i] + r1[i]);
  for (int k = 0; k < 8; ++k) sum[len + k] = 0;  // read (and ignored) by the last pixel's 8-lane load
  const __m128i two = _mm_set1_epi16(2);
  const __m128 d255 = _mm_set1_ps(255.0f);
  int dx = 0;
  for (; dx + 4 <= n; dx += 4) {
    __m128i px[4];
    for (int k = 0; k < 4; ++k) {
      // lanes 0-2: the left source pixel's channels, 3-5: the right one's
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(sum + 6 * (dx + k)));
      const __m128i s = _mm_srli_epi16(_mm_add_epi16(_mm_add_epi16(v, _mm_srli_si128(v, 6)), two), 2);
      px[k] = _mm_unpacklo_epi16(s, zero);
    }
    __m128i c[3];
    transpose3(px[0], px[1], px[2], px[3], &c[0], &c[1], &c[2]);
    for (int k = 0; k < 3; ++k) _mm_storeu_ps(by_src[k] + dx, _mm_div_ps(_mm_cvtepi32_ps(c[k]), d255));
  }
  return dx;
}

// Equal sizes, 3-byte pixels: 4 bytes loaded per pixel (so the row's last pixel is left to special_row3), widened to
// 32-bit channels, 4 pixels transposed into the planes, / 255. Returns the first column left.
int copy_row3_sse2(const uint8_t* r0, int n, float* const* by_src) {
  const __m128i zero = _mm_setzero_si128();
  const __m128 d255 = _mm_set1_ps(255.0f);
  int dx = 0;
  for (; dx + 5 <= n; dx += 4) {
    __m128i px[4];
    for (int k = 0; k < 4; ++k) {
      int32_t v;
      std::memcpy(&v, r0 + 3 * (dx + k), sizeof v);
      px[k] = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(v), zero), zero);
    }
    __m128i c[3];
    transpose3(px[0], px[1], px[2], px[3], &c[0], &c[1], &c[2]);
    for (int k = 0; k < 3; ++k) _mm_storeu_ps(by_src[k] + dx, _mm_div_ps(_mm_cvtepi32_ps(c[k]), d255));
  }
  return dx;
}
#endif

}  // namespace

namespace detail {

void letterbox_to_planes(const ImageView& im, const lb::Geometry& g, float* out, bool simd) {
  const int W = g.dst_w, H = g.dst_h;
  const size_t plane = static_cast<size_t>(W) * static_cast<size_t>(H);
  const float pad = kInv255.v[lb::kPadValue];
  const int cn = lb::detail::channels(im.format);
  int off[3];  // byte offset of R, G, B inside a source pixel
  for (int c = 0; c < 3; ++c) off[c] = lb::detail::channel_offset(im.format, 2 - c);
  float* planes[3] = {out, out + plane, out + 2 * plane};
  // Padding: whole rows above and below (one fill each), the two side bands of the rows in between.
  const size_t top = static_cast<size_t>(g.pad_top) * W;
  const size_t bottom = static_cast<size_t>(g.pad_top + g.new_h) * W;
  for (int c = 0; c < 3; ++c) {
    std::fill(planes[c], planes[c] + top, pad);
    std::fill(planes[c] + bottom, planes[c] + plane, pad);
    if (g.new_w < W)
      for (int y = g.pad_top; y < g.pad_top + g.new_h; ++y) {
        float* row = planes[c] + static_cast<size_t>(y) * W;
        std::fill(row, row + g.pad_left, pad);
        std::fill(row + g.pad_left + g.new_w, row + W, pad);
      }
  }
  const bool copy = g.new_w == g.src_w && g.new_h == g.src_h;
  const bool area2 = !copy && g.src_w == 2 * g.new_w && g.src_h == 2 * g.new_h;
  if (copy || area2) {
    std::vector<uint16_t> sum(cn == 3 && area2 ? static_cast<size_t>(g.new_w) * 6 + 8 : 0);
    for (int dy = 0; dy < g.new_h; ++dy) {
      const size_t o = static_cast<size_t>(dy + g.pad_top) * W + g.pad_left;
      const uint8_t* r0 = im.pixels + static_cast<size_t>(copy ? dy : 2 * dy) * im.stride;
      const uint8_t* r1 = copy ? r0 : r0 + im.stride;
      float* d0 = planes[0] + o;
      float* d1 = planes[1] + o;
      float* d2 = planes[2] + o;
      switch (im.format) {
        case lb::GRAY8: special_row<1, 0, 0, 0>(r0, r1, copy, g.new_w, d0, d1, d2); break;
        case lb::BGRA8: special_row<4, 2, 1, 0>(r0, r1, copy, g.new_w, d0, d1, d2); break;
        case lb::RGBA8: special_row<4, 0, 1, 2>(r0, r1, copy, g.new_w, d0, d1, d2); break;
        default: {
          int begin = 0;
#if defined(DRT_LETTERBOX_SSE2)
          if (simd) {
            float* by_src[3];
            float* dst[3] = {d0, d1, d2};
            for (int p = 0; p < 3; ++p) by_src[off[p]] = dst[p];
            begin = copy ? copy_row3_sse2(r0, g.new_w, by_src) : area2_row3_sse2(r0, r1, g.new_w, sum.data(), by_src);
          }
#endif
          special_row3(r0, r1, copy, begin, g.new_w, off, d0, d1, d2);
          break;
        }
      }
    }
    return;
  }
  const Taps taps = horizontal_taps(g, cn);
  RowCache cache(g.new_w);
  const size_t n = cache.plane();
  for (int dy = 0; dy < g.new_h; ++dy) {
    int sy, b0, b1;
    lb::detail::axis(dy, g.src_h, g.new_h, false, &sy, &b0, &b1);
    const int y0 = sy < 0 ? 0 : (sy > g.src_h - 1 ? g.src_h - 1 : sy);
    const int y1 = sy + 1 < 0 ? 0 : (sy + 1 > g.src_h - 1 ? g.src_h - 1 : sy + 1);
    auto fill_row = [&](int y) {
      return [&im, &taps, &off, cn, simd, y](int16_t* h0, int16_t* h1, int16_t* h2) {
        horizontal_row(im.pixels + static_cast<size_t>(y) * im.stride, cn, off, taps, simd, h0, h1, h2);
      };
    };
    const int16_t* s0 = cache.get(y0, y1, fill_row(y0));
    const int16_t* s1 = cache.get(y1, y0, fill_row(y1));
    const size_t o = static_cast<size_t>(dy + g.pad_top) * W + g.pad_left;
    for (int c = 0; c < (cn == 1 ? 1 : 3); ++c)
      vertical_plane(s0 + static_cast<size_t>(c) * n, s1 + static_cast<size_t>(c) * n, b0, b1, g.new_w, simd,
                     planes[c] + o);
    if (cn == 1) {  // gray: G and B are R
      std::copy(planes[0] + o, planes[0] + o + g.new_w, planes[1] + o);
      std::copy(planes[0] + o, planes[0] + o + g.new_w, planes[2] + o);
    }
  }
}

}  // namespace detail

void letterbox_to_planes(const ImageView& im, const lb::Geometry& g, float* out) {
  detail::letterbox_to_planes(im, g, out, true);
}

}  // namespace drt
