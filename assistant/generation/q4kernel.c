/* x @ W.T for a decode step, over the 4-bit weights torch packs for its CPU kernel, as int8 dot products.

   The weights stay exactly as int4.py keeps them (torch's AVX-512 layout, B = 64): a (N, K) matrix is
   uint8 (N / 64, K, 32), byte [b, k, j] holding row 64 b + j in its low nibble and row 64 b + 32 + j in
   its high nibble; scale_zero is bf16 (K / 32, N, 2), and w = (q - 8) * scale + zero per group of 32
   columns.  torch's own kernel turns every nibble into a float and multiplies it with the activation:
   on 2 cores it computes more than it reads.  Here the dot products are integer (vpdpbusd: four byte
   products summed into 32 bits, eight lanes, in one instruction), so one row's step is bound by reading
   the weights.

   Each activation row is written as two int8 values per column, per group of 32 columns: x ~ d (xq + xr /
   254), xq rounded to 1/127 of the group's largest value (llama.cpp's Q8_0) and xr what that rounding
   left, rounded again.  One int8 alone moved the 1.5B model's next-token distribution ten times as far
   from torch's kernel as both do (KL 0.008 against 0.0007 nats over 360 decode steps in six languages);
   with both it is as precise as torch's bf16 activation, and the second product costs no time at one
   row, where reading the weights is the cost (each further row costs more than with one int8).

   Per block of 64 rows and group of 32 columns, the nibbles are put into the order the instruction wants
   (four columns of one row in 32 bits: two byte interleaves) once, and used for every row of x.  The
   high nibble is kept in place (& 0xF0: sixteen times its value) and divided out with the scale.  Every
   row of x is computed on its own, in the same order whatever the other rows: a row's result is bit for
   bit the same alone or in a batch (batched decoding and speculative checks rely on that).

   Where the CPU has AVX-512 VBMI (Ice Lake, Zen 4 and later) the products run on 512-bit registers: two
   byte permutes put four columns of all 64 rows in natural row order, and each instruction does what two
   256-bit ones did.  The integer sums are exact and the float steps after them are the same operations in
   the same order, so both widths give bit for bit the same result (tests/test_q4kernel.py builds the
   256-bit one with -DQ4_NARROW to check); measured on 2 Zen 4 cores, the products of one decode step
   took a tenth less time with four rows and more.

   Built by q4kernel.py with the machine's compiler for the machine's own instructions (-march=native);
   without AVX-512 VNNI it builds to nothing usable (q4_features() == 0), and the Python side keeps
   torch's kernel. */

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define GROUP 32
#define BLOCK 64

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define Q4_KERNEL 1
#else
#define Q4_KERNEL 0
#endif
#if Q4_KERNEL && defined(__AVX512VBMI__) && !defined(Q4_NARROW)
#define Q4_WIDE 1
#else
#define Q4_WIDE 0
#endif

/* 0: not usable here; 1: built with 256-bit products; 2: with 512-bit ones */
int q4_features(void) { return Q4_KERNEL ? 1 + Q4_WIDE : 0; }

#if Q4_KERNEL

/* One group of 32 floats of a row of x into two int8 values per column: x ~ d (xq + xr / 254), xq the
   value rounded to 1/127 of the group's largest, xr what that rounding left, rounded again (x to about
   1/32000 of the group's largest: bf16's precision, which torch's kernel multiplies with), and the sum of
   the group's floats (for the zero term).  Rounding to nearest even, as lrintf. */
static void quantize_group(const float *p, int8_t *xq, int8_t *xr, float *d, float *sx) {
    const __m512 a = _mm512_loadu_ps(p), b = _mm512_loadu_ps(p + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
    *sx = _mm512_reduce_add_ps(_mm512_add_ps(a, b));
    *d = amax / 127.f;
    const __m512 id = _mm512_set1_ps(amax > 0.f ? 127.f / amax : 0.f), lim = _mm512_set1_ps(127.f);
    const __m512 halves[2] = {a, b};
    for (int h = 0; h < 2; h++) {
        __m512 v = _mm512_mul_ps(halves[h], id);
        __m512 q = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q = _mm512_min_ps(_mm512_max_ps(q, _mm512_sub_ps(_mm512_setzero_ps(), lim)), lim);
        __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_sub_ps(v, q), _mm512_set1_ps(254.f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        r = _mm512_min_ps(_mm512_max_ps(r, _mm512_sub_ps(_mm512_setzero_ps(), lim)), lim);
        _mm_storeu_si128((__m128i *)(xq + 16 * h), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(q)));
        _mm_storeu_si128((__m128i *)(xr + 16 * h), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(r)));
    }
}

#if !Q4_WIDE
/* One row of x, one group: the integer sums of 64 rows (in the unpacking's order) into their scaled
   contribution to the row's 64 outputs ym.  w = (q - 8) s + z, so sum_k w x_k = s sum q x + (z - 8 s) sum x,
   with sum q x = d (sum q xq + sum q xr / 254); the high nibbles' sums are 16 times theirs (their scale in
   sv carries the 1/16).  z8v holds z - 8 s. */
static inline void finish_group(const __m256i acc[8], const __m256i res[8], const __m256 sv[8], const __m256 z8v[8],
                                const float *d, const float *sx, size_t at, float *ym) {
    __m256i nat[8], nar[8];
    nat[0] = _mm256_permute2x128_si256(acc[0], acc[1], 0x20);  /* rows 0-7 */
    nat[1] = _mm256_permute2x128_si256(acc[2], acc[3], 0x20);  /* 8-15 */
    nat[2] = _mm256_permute2x128_si256(acc[0], acc[1], 0x31);  /* 16-23 */
    nat[3] = _mm256_permute2x128_si256(acc[2], acc[3], 0x31);  /* 24-31 */
    nat[4] = _mm256_permute2x128_si256(acc[4], acc[5], 0x20);  /* 32-39 */
    nat[5] = _mm256_permute2x128_si256(acc[6], acc[7], 0x20);
    nat[6] = _mm256_permute2x128_si256(acc[4], acc[5], 0x31);
    nat[7] = _mm256_permute2x128_si256(acc[6], acc[7], 0x31);
    nar[0] = _mm256_permute2x128_si256(res[0], res[1], 0x20);
    nar[1] = _mm256_permute2x128_si256(res[2], res[3], 0x20);
    nar[2] = _mm256_permute2x128_si256(res[0], res[1], 0x31);
    nar[3] = _mm256_permute2x128_si256(res[2], res[3], 0x31);
    nar[4] = _mm256_permute2x128_si256(res[4], res[5], 0x20);
    nar[5] = _mm256_permute2x128_si256(res[6], res[7], 0x20);
    nar[6] = _mm256_permute2x128_si256(res[4], res[5], 0x31);
    nar[7] = _mm256_permute2x128_si256(res[6], res[7], 0x31);
    const __m256 dg = _mm256_set1_ps(d[at]), dr = _mm256_set1_ps(d[at] / 254.f), vsx = _mm256_set1_ps(sx[at]);
    for (int i = 0; i < 8; i++) {
        __m256 t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(nat[i]), dg, _mm256_mul_ps(_mm256_cvtepi32_ps(nar[i]), dr));
        __m256 y = _mm256_load_ps(ym + 8 * i);
        y = _mm256_fmadd_ps(t, sv[i], y);
        y = _mm256_fmadd_ps(z8v[i], vsx, y);
        _mm256_store_ps(ym + 8 * i, y);
    }
}
#endif

#if Q4_WIDE
/* finish_group for 512-bit sums already in natural row order (16 rows a register) */
static inline void finish_group16(const __m512i acc[4], const __m512i res[4], const __m512 sv[4],
                                  const __m512 z8v[4], const float *d, const float *sx, size_t at, float *ym) {
    const __m512 dg = _mm512_set1_ps(d[at]), dr = _mm512_set1_ps(d[at] / 254.f), vsx = _mm512_set1_ps(sx[at]);
    for (int i = 0; i < 4; i++) {
        __m512 t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i]), dg, _mm512_mul_ps(_mm512_cvtepi32_ps(res[i]), dr));
        __m512 y = _mm512_load_ps(ym + 16 * i);
        y = _mm512_fmadd_ps(t, sv[i], y);
        y = _mm512_fmadd_ps(z8v[i], vsx, y);
        _mm512_store_ps(ym + 16 * i, y);
    }
}

/* Block b's 64 outputs of every row of x into yacc (M x 64), 512 bits at a time. */
static void block_product(int b, int M, int K, int N, const uint8_t *packed, const uint16_t *scale_zero,
                          const int8_t *xq, const int8_t *xr, const float *d, const float *sx, float *yacc) {
    const int G = K / GROUP;
    const __m512i lo_mask = _mm512_set1_epi8(0x0F), hi_mask = _mm512_set1_epi8((char)0xF0);
    const __m512i z_mask = _mm512_set1_epi32((int)0xFFFF0000u);
    /* byte 4 r + c of the first permute's result is row r (< 16), column c; that byte sits at 32 (c % 2) + r
       in the 64 bytes of columns c & ~1 and c | 1 (the first source for c < 2, the second for c >= 2:
       index bit 6) */
    uint8_t order[2][64];
    for (int p = 0; p < 64; p++) {
        order[0][p] = (uint8_t)((p % 4 / 2) * 64 + (p % 2) * 32 + p / 4);
        order[1][p] = (uint8_t)(order[0][p] + 16);
    }
    const __m512i idx0 = _mm512_loadu_si512(order[0]), idx1 = _mm512_loadu_si512(order[1]);
    const uint8_t *pb = packed + (size_t)b * K * (BLOCK / 2);
    __m512i w[8][4];
    for (int g = 0; g < G; g++) {
        const uint8_t *pg = pb + (size_t)g * GROUP * (BLOCK / 2);
        if (g + 1 < G) {  /* the next group's scales: 256 bytes a row of groups away, not a stream */
            const char *next = (const char *)(scale_zero + ((size_t)(g + 1) * N + (size_t)b * BLOCK) * 2);
            for (int l = 0; l < 4; l++) _mm_prefetch(next + 64 * l, _MM_HINT_T0);
        }
        /* four columns at a time: rows 0-15 and 16-31 (low nibbles), 32-47 and 48-63 (high), four
           columns of a row in each 32-bit lane */
        for (int c = 0; c < 8; c++) {
            const uint8_t *pc = pg + (size_t)c * 4 * (BLOCK / 2);
            __m512i a01 = _mm512_loadu_si512((const void *)pc), a23 = _mm512_loadu_si512((const void *)(pc + 64));
            __m512i r0 = _mm512_permutex2var_epi8(a01, idx0, a23), r1 = _mm512_permutex2var_epi8(a01, idx1, a23);
            w[c][0] = _mm512_and_si512(r0, lo_mask);
            w[c][1] = _mm512_and_si512(r1, lo_mask);
            w[c][2] = _mm512_and_si512(r0, hi_mask);
            w[c][3] = _mm512_and_si512(r1, hi_mask);
        }
        const uint16_t *szg = scale_zero + ((size_t)g * N + (size_t)b * BLOCK) * 2;
        __m512 sv[4], z8v[4];
        for (int i = 0; i < 4; i++) {
            __m512i szv = _mm512_loadu_si512((const void *)(szg + 32 * i));
            __m512 sc = _mm512_castsi512_ps(_mm512_slli_epi32(szv, 16));
            z8v[i] = _mm512_fnmadd_ps(_mm512_set1_ps(8.f), sc, _mm512_castsi512_ps(_mm512_and_si512(szv, z_mask)));
            sv[i] = i >= 2 ? _mm512_mul_ps(sc, _mm512_set1_ps(0.0625f)) : sc;
        }
        for (int m = 0; m < M; m++) {
            const int8_t *xm = xq + (size_t)m * K + g * GROUP, *rm = xr + (size_t)m * K + g * GROUP;
            __m512i acc[4], res[4];
            for (int r = 0; r < 4; r++) acc[r] = res[r] = _mm512_setzero_si512();
            for (int c = 0; c < 8; c++) {
                int32_t fq, fr;
                memcpy(&fq, xm + 4 * c, 4);
                memcpy(&fr, rm + 4 * c, 4);
                __m512i bq = _mm512_set1_epi32(fq), br = _mm512_set1_epi32(fr);
                for (int r = 0; r < 4; r++) {
                    acc[r] = _mm512_dpbusd_epi32(acc[r], w[c][r], bq);
                    res[r] = _mm512_dpbusd_epi32(res[r], w[c][r], br);
                }
            }
            finish_group16(acc, res, sv, z8v, d, sx, (size_t)m * G + g, yacc + (size_t)m * BLOCK);
        }
    }
}
#else
/* Block b's 64 outputs of every row of x into yacc (M x 64), 256 bits at a time. */
static void block_product(int b, int M, int K, int N, const uint8_t *packed, const uint16_t *scale_zero,
                          const int8_t *xq, const int8_t *xr, const float *d, const float *sx, float *yacc) {
    const int G = K / GROUP;
    const __m256i lo_mask = _mm256_set1_epi8(0x0F), hi_mask = _mm256_set1_epi8((char)0xF0);
    const __m256i z_mask = _mm256_set1_epi32((int)0xFFFF0000u);
    const uint8_t *pb = packed + (size_t)b * K * (BLOCK / 2);
    __m256i w[8][8];
    for (int g = 0; g < G; g++) {
        const uint8_t *pg = pb + (size_t)g * GROUP * (BLOCK / 2);
        if (g + 1 < G) {  /* the next group's scales: 256 bytes a row of groups away, not a stream */
            const char *next = (const char *)(scale_zero + ((size_t)(g + 1) * N + (size_t)b * BLOCK) * 2);
            for (int l = 0; l < 4; l++) _mm_prefetch(next + 64 * l, _MM_HINT_T0);
        }
        /* four columns at a time: 32 rows (low nibbles) and 32 rows (high) in 32-bit lanes, the rows
           in the order 0-3|16-19, 4-7|20-23, 8-11|24-27, 12-15|28-31 (put back after the sums) */
        for (int c = 0; c < 8; c++) {
            const uint8_t *pc = pg + (size_t)c * 4 * (BLOCK / 2);
            __m256i a0 = _mm256_loadu_si256((const __m256i *)(pc));
            __m256i a1 = _mm256_loadu_si256((const __m256i *)(pc + 32));
            __m256i a2 = _mm256_loadu_si256((const __m256i *)(pc + 64));
            __m256i a3 = _mm256_loadu_si256((const __m256i *)(pc + 96));
            __m256i t0 = _mm256_unpacklo_epi8(a0, a1), t1 = _mm256_unpackhi_epi8(a0, a1);
            __m256i t2 = _mm256_unpacklo_epi8(a2, a3), t3 = _mm256_unpackhi_epi8(a2, a3);
            __m256i r0 = _mm256_unpacklo_epi16(t0, t2), r1 = _mm256_unpackhi_epi16(t0, t2);
            __m256i r2 = _mm256_unpacklo_epi16(t1, t3), r3 = _mm256_unpackhi_epi16(t1, t3);
            w[c][0] = _mm256_and_si256(r0, lo_mask);
            w[c][1] = _mm256_and_si256(r1, lo_mask);
            w[c][2] = _mm256_and_si256(r2, lo_mask);
            w[c][3] = _mm256_and_si256(r3, lo_mask);
            w[c][4] = _mm256_and_si256(r0, hi_mask);
            w[c][5] = _mm256_and_si256(r1, hi_mask);
            w[c][6] = _mm256_and_si256(r2, hi_mask);
            w[c][7] = _mm256_and_si256(r3, hi_mask);
        }
        /* the group's scales and zeros (bf16 pairs) as floats, once for all rows of x: sv the scale
           (over 16 for the high nibbles' rows), z8v = zero - 8 scale */
        const uint16_t *szg = scale_zero + ((size_t)g * N + (size_t)b * BLOCK) * 2;
        __m256 sv[8], z8v[8];
        for (int i = 0; i < 8; i++) {
            __m256i szv = _mm256_loadu_si256((const __m256i *)(szg + 16 * i));
            __m256 sc = _mm256_castsi256_ps(_mm256_slli_epi32(szv, 16));
            z8v[i] = _mm256_fnmadd_ps(_mm256_set1_ps(8.f), sc, _mm256_castsi256_ps(_mm256_and_si256(szv, z_mask)));
            sv[i] = i >= 4 ? _mm256_mul_ps(sc, _mm256_set1_ps(0.0625f)) : sc;
        }
        for (int m = 0; m < M; m++) {
            const int8_t *xm = xq + (size_t)m * K + g * GROUP, *rm = xr + (size_t)m * K + g * GROUP;
            __m256i acc[8], res[8];
            for (int r = 0; r < 8; r++) acc[r] = res[r] = _mm256_setzero_si256();
            for (int c = 0; c < 8; c++) {
                int32_t fq, fr;
                memcpy(&fq, xm + 4 * c, 4);
                memcpy(&fr, rm + 4 * c, 4);
                __m256i bq = _mm256_set1_epi32(fq), br = _mm256_set1_epi32(fr);
                for (int r = 0; r < 8; r++) {
                    acc[r] = _mm256_dpbusd_epi32(acc[r], w[c][r], bq);
                    res[r] = _mm256_dpbusd_epi32(res[r], w[c][r], br);
                }
            }
            finish_group(acc, res, sv, z8v, d, sx, (size_t)m * G + g, yacc + (size_t)m * BLOCK);
        }
    }
}
#endif

/* y (M, N) = x (M, K) @ W.T for W in torch's B = 64 layout; K a multiple of 32, N of 64, M >= 1. */
int q4_mm(const float *x, int M, int K, const uint8_t *packed, const uint16_t *scale_zero, int N, float *y,
          int threads) {
    const int G = K / GROUP, NB = N / BLOCK;
    if (K % GROUP || N % BLOCK || M < 1) return -1;
    if (threads < 1) threads = 1;
    int8_t *xq = (int8_t *)malloc((size_t)M * K * 2);
    float *d = (float *)malloc(sizeof(float) * (size_t)M * G);
    float *sx = (float *)malloc(sizeof(float) * (size_t)M * G);
    float *acc_all = (float *)aligned_alloc(64, sizeof(float) * (size_t)BLOCK * M * threads);
    if (!xq || !d || !sx || !acc_all) {
        free(xq); free(d); free(sx); free(acc_all);
        return -2;
    }
    int8_t *xr = xq + (size_t)M * K;

#pragma omp parallel num_threads(threads)
    {
        /* the activation's groups first (all of them before any block reads one), then the blocks */
#pragma omp for schedule(static)
        for (int mg = 0; mg < M * G; mg++)
            quantize_group(x + (size_t)mg * GROUP, xq + (size_t)mg * GROUP, xr + (size_t)mg * GROUP, d + mg, sx + mg);
#pragma omp for schedule(static)
        for (int b = 0; b < NB; b++) {
#ifdef _OPENMP
            float *yacc = acc_all + (size_t)omp_get_thread_num() * BLOCK * M;
#else
            float *yacc = acc_all;
#endif
            memset(yacc, 0, sizeof(float) * BLOCK * M);
            block_product(b, M, K, N, packed, scale_zero, xq, xr, d, sx, yacc);
            for (int m = 0; m < M; m++)
                memcpy(y + (size_t)m * N + (size_t)b * BLOCK, yacc + (size_t)m * BLOCK, sizeof(float) * BLOCK);
        }
    }
    free(xq); free(d); free(sx); free(acc_all);
    return 0;
}

/* ---- One query position's attention over a bf16 key-value cache (decode steps, speculative checks) ----

   torch spends more time dispatching the dozen small operations of one query's attention than computing
   them (4-5 ms a decode step of the 1.5B model for one conversation, 13-19 ms for four, each on its own).
   Here every row of a batch, every key-value head, in one call: scores in float32 from the bf16 keys
   (exact widening), softmax in float32, the weighted sum of the values in float32, rounded to bf16 once.
   Each query head is computed alone, in the same order whatever the rows and threads around it, so a
   row's result is bit for bit the same alone or in a batch. */

/* e^x for x <= 0 (scores minus their maximum), Cephes' expf polynomial after x = n ln 2 + r: within 2 ulp */
static inline __m512 exp_neg(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-103.f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
    return _mm512_scalef_ps(p, n);
}

static inline __m512 bf16_load(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

/* round to nearest even (finite values) */
static inline __m256i bf16_round(__m512 v) {
    __m512i b = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    b = _mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(b, 16));
}

#define ATT_TILE 8  /* query heads whose scores one pass over the keys computes */

/* Query heads h0 .. h1 - 1 (one key-value head's, fewer than ATT_TILE) of one row over keys first .. last - 1. */
static void attend_heads(const uint16_t *q, const uint16_t *keys, const uint16_t *values, int dim, float scale,
                         int first, int last, int h0, int h1, float *scores, uint16_t *out) {
    const int L = last - first, T = h1 - h0, C = dim / 16;
    for (int j = 0; j < L; j++) {
        const uint16_t *k = keys + (size_t)(first + j) * dim;
        __m512 acc[ATT_TILE];
        for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
        for (int c = 0; c < C; c++) {
            __m512 kf = bf16_load(k + 16 * c);
            for (int t = 0; t < T; t++) acc[t] = _mm512_fmadd_ps(bf16_load(q + (size_t)(h0 + t) * dim + 16 * c), kf, acc[t]);
        }
        for (int t = 0; t < T; t++) scores[(size_t)t * L + j] = _mm512_reduce_add_ps(acc[t]) * scale;
    }
    float inv[ATT_TILE];
    for (int t = 0; t < T; t++) {
        float *s = scores + (size_t)t * L;
        __m512 vmax = _mm512_set1_ps(-INFINITY);
        int j = 0;
        for (; j + 16 <= L; j += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(s + j));
        float mx = _mm512_reduce_max_ps(vmax);
        for (; j < L; j++) mx = s[j] > mx ? s[j] : mx;
        __m512 vm = _mm512_set1_ps(mx), vsum = _mm512_setzero_ps();
        for (j = 0; j + 16 <= L; j += 16) {
            __m512 e = exp_neg(_mm512_sub_ps(_mm512_loadu_ps(s + j), vm));
            _mm512_storeu_ps(s + j, e);
            vsum = _mm512_add_ps(vsum, e);
        }
        if (j < L) {
            __mmask16 m = (__mmask16)((1u << (L - j)) - 1);
            __m512 e = exp_neg(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), vm));
            e = _mm512_maskz_mov_ps(m, e);
            _mm512_mask_storeu_ps(s + j, m, e);
            vsum = _mm512_add_ps(vsum, e);
        }
        inv[t] = 1.f / _mm512_reduce_add_ps(vsum);
    }
    for (int c = 0; c < C; c++) {
        __m512 acc[ATT_TILE];
        for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
        for (int j = 0; j < L; j++) {
            __m512 vf = bf16_load(values + (size_t)(first + j) * dim + 16 * c);
            for (int t = 0; t < T; t++) acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(scores[(size_t)t * L + j]), vf, acc[t]);
        }
        for (int t = 0; t < T; t++)
            _mm256_storeu_si256((__m256i *)(out + (size_t)(h0 + t) * dim + 16 * c),
                                bf16_round(_mm512_mul_ps(acc[t], _mm512_set1_ps(inv[t]))));
    }
}

/* Attention of R query rows, each over its own cache: q and out (R, heads, dim) bf16; row r's keys and
   values of layer `layer` at kbase[r] / vbase[r] laid out (layers, kv, cap[r], dim); it sees positions
   max(0, stop[r] - window) .. stop[r] - 1 (window 0: from 0).  heads a multiple of kv, dim of 16. */
int q4_attend(int R, int heads, int kv, int dim, float scale, const uint16_t *q, const int64_t *kbase,
              const int64_t *vbase, const int64_t *cap, const int64_t *stop, int layer, int window, uint16_t *out,
              int threads) {
    if (R < 1 || kv < 1 || heads % kv || dim % 16) return -1;
    if (threads < 1) threads = 1;
    const int g = heads / kv;
    int parts = (g + ATT_TILE - 1) / ATT_TILE;  /* query heads of a kv head split so that every thread has work */
    while (R * kv * parts < threads && parts < g) parts++;
    const int tasks = R * kv * parts;
    int status = 0;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int task = 0; task < tasks; task++) {
        const int r = task / (kv * parts), h = task / parts % kv, part = task % parts;
        const int h0 = h * g + part * g / parts, h1 = h * g + (part + 1) * g / parts;
        const int last = (int)stop[r], first = window > 0 && last > window ? last - window : 0;
        if (h1 <= h0 || last < 1) continue;
        float *scores = (float *)malloc(sizeof(float) * (size_t)(h1 - h0) * (last - first));
        if (!scores) {
#pragma omp atomic write
            status = -2;
            continue;
        }
        const size_t at = ((size_t)layer * kv + h) * (size_t)cap[r] * dim;
        attend_heads(q + (size_t)r * heads * dim, (const uint16_t *)(intptr_t)kbase[r] + at,
                     (const uint16_t *)(intptr_t)vbase[r] + at, dim, scale, first, last, h0, h1, scores,
                     out + (size_t)r * heads * dim);
        free(scores);
    }
    return status;
}

/* ---- A prompt's weights: 4-bit groups to bf16, transposed, for torch's matrix product ----

   Output rows start .. stop - 1 (multiples of 64) of W as out (K, stop - start) bf16, out[k][j] =
   W[start + j][k] = (q - 8) scale + zero as int4.Weight.dequantize_t writes it (zero - 8 scale rounded
   to bf16 first, then q scale + that in float32, rounded to bf16 once: q scale is exact in float32, so
   the result is torch's bit for bit).  torch takes three passes over memory for it; here one, both
   threads over the columns k.  Measured on 2 Zen 4 cores, a 720-token prompt of the 1.5B model: 6.65 ->
   6.32 s on a quiet machine (torch's passes ~0.5 s, these 0.19 s), 30 -> 18 s while another process
   used the cores (memory passes suffer most then). */
int q4_dequant_t(const uint8_t *packed, const uint16_t *scale_zero, int K, int N, int start, int stop,
                 uint16_t *out, int threads) {
    if (K % GROUP || N % BLOCK || start % BLOCK || stop % BLOCK || start < 0 || stop > N || stop <= start)
        return -1;
    if (threads < 1) threads = 1;
    const int n = stop - start, b0 = start / BLOCK, nb = n / BLOCK;
    const __m512i lo_mask = _mm512_set1_epi32(0x0F);
    float *buf = (float *)malloc(sizeof(float) * 2 * (size_t)n * threads);
    if (!buf) return -2;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int g = 0; g < K / GROUP; g++) {
        /* the group's scales and bf16-rounded lows for all rows start .. stop - 1 */
#ifdef _OPENMP
        float *sc = buf + (size_t)2 * n * omp_get_thread_num();
#else
        float *sc = buf;
#endif
        float *lo = sc + n;
        const uint16_t *szg = scale_zero + ((size_t)g * N + start) * 2;
        for (int j = 0; j < n; j++) {
            uint32_t sbits = (uint32_t)szg[2 * j] << 16, zbits = (uint32_t)szg[2 * j + 1] << 16;
            float s, z;
            memcpy(&s, &sbits, 4);
            memcpy(&z, &zbits, 4);
            float l = z - 8.f * s;
            uint32_t lb;
            memcpy(&lb, &l, 4);
            lb = (lb + 0x7FFF + ((lb >> 16) & 1)) & 0xFFFF0000u;
            memcpy(&l, &lb, 4);
            sc[j] = s;
            lo[j] = l;
        }
        for (int k = g * GROUP; k < (g + 1) * GROUP; k++) {
            uint16_t *row = out + (size_t)k * n;
            for (int b = 0; b < nb; b++) {
                const uint8_t *p = packed + ((size_t)(b0 + b) * K + k) * (BLOCK / 2);
                for (int h = 0; h < 2; h++) {  /* 16 bytes: rows 16 h .. 16 h + 15 (low nibbles), 32 + those (high) */
                    __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 16 * h)));
                    __m512 ql = _mm512_cvtepi32_ps(_mm512_and_si512(bytes, lo_mask));
                    __m512 qh = _mm512_cvtepi32_ps(_mm512_srli_epi32(bytes, 4));
                    const int jl = b * BLOCK + 16 * h, jh = jl + 32;
                    __m512 wl = _mm512_fmadd_ps(ql, _mm512_loadu_ps(sc + jl), _mm512_loadu_ps(lo + jl));
                    __m512 wh = _mm512_fmadd_ps(qh, _mm512_loadu_ps(sc + jh), _mm512_loadu_ps(lo + jh));
                    _mm256_storeu_si256((__m256i *)(row + jl), bf16_round(wl));
                    _mm256_storeu_si256((__m256i *)(row + jh), bf16_round(wh));
                }
            }
        }
    }
    free(buf);
    return 0;
}
#else

int q4_mm(const float *x, int M, int K, const uint8_t *packed, const uint16_t *scale_zero, int N, float *y,
          int threads) {
    (void)x; (void)M; (void)K; (void)packed; (void)scale_zero; (void)N; (void)y; (void)threads;
    return -3;
}

int q4_attend(int R, int heads, int kv, int dim, float scale, const uint16_t *q, const int64_t *kbase,
              const int64_t *vbase, const int64_t *cap, const int64_t *stop, int layer, int window, uint16_t *out,
              int threads) {
    (void)R; (void)heads; (void)kv; (void)dim; (void)scale; (void)q; (void)kbase; (void)vbase; (void)cap;
    (void)stop; (void)layer; (void)window; (void)out; (void)threads;
    return -3;
}

int q4_dequant_t(const uint8_t *packed, const uint16_t *scale_zero, int K, int N, int start, int stop,
                 uint16_t *out, int threads) {
    (void)packed; (void)scale_zero; (void)K; (void)N; (void)start; (void)stop; (void)out; (void)threads;
    return -3;
}

#endif
