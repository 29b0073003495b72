/*
 * test_capi.c - drives libdefectrt through its C header for tests/test_capi.py.
 *
 *   gcc -I src/defectrt/capi tests/capi/test_capi.c -L DIR -ldefectrt -Wl,-rpath,DIR -lpthread -o test_capi
 *
 * Sub-commands (the Python test parses the printed lines and makes the assertions):
 *   detect MODEL IMAGE FMT PAD      one detection; FMT bgr|rgb|bgra|rgba (IMAGE: P6) or gray (IMAGE: P5);
 *                                   PAD extra bytes per row (filled with garbage). Prints COUNT/DET/NAME lines.
 *   errors MODEL IMAGE BADONNX DIR  every error path; prints "RESULT name status count | last_error".
 *   threads MODEL IMAGE N ITERS R   N threads with their own detector + N threads sharing one, ITERS calls
 *                                   each, all at once, in R rounds; a warm-up round first.
 *                                   Prints RSS_WARM/RSS_ROUND/RSS_END/ERRORS/MISMATCHES.
 *   cycle MODEL IMAGE K             2K create/detect/destroy cycles; RSS after K and at the end.
 *   race MODEL IMAGE                threads detect on one handle while the main thread destroys it.
 *   init                            drt_init() twice and a create; prints RESULT lines (env var tests).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "defectrt.h"

/* ---- image reading: binary PPM (P6) / PGM (P5), maxval 255 ---------------------------------- */
typedef struct {
    int width, height, channels; /* channels 3 (RGB) or 1 */
    unsigned char* data;
} image;

static int read_token(FILE* f, char* buf, int size)
{
    int c, n = 0;
    for (;;) { /* skip white space and comments */
        c = fgetc(f);
        if (c == '#') {
            while (c != '\n' && c != EOF) c = fgetc(f);
        } else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            break;
        }
    }
    while (c != EOF && c != ' ' && c != '\t' && c != '\r' && c != '\n' && n < size - 1) {
        buf[n++] = (char)c;
        c = fgetc(f);
    }
    buf[n] = '\0';
    return n;
}

static int read_pnm(const char* path, image* img)
{
    char tok[32];
    int maxval;
    size_t size;
    FILE* f = fopen(path, "rb");
    if (!f) return 0;
    read_token(f, tok, sizeof tok);
    img->channels = strcmp(tok, "P6") == 0 ? 3 : strcmp(tok, "P5") == 0 ? 1 : 0;
    read_token(f, tok, sizeof tok); img->width = atoi(tok);
    read_token(f, tok, sizeof tok); img->height = atoi(tok);
    read_token(f, tok, sizeof tok); maxval = atoi(tok);
    if (img->channels == 0 || img->width <= 0 || img->height <= 0 || maxval != 255) { fclose(f); return 0; }
    size = (size_t)img->width * img->height * img->channels;
    img->data = (unsigned char*)malloc(size);
    if (fread(img->data, 1, size, f) != size) { fclose(f); return 0; }
    fclose(f);
    return 1;
}

/* The image in `fmt` with `pad` garbage bytes after each row; *stride receives the row pitch. */
static unsigned char* convert(const image* img, drt_pixel_format fmt, int pad, int* stride)
{
    int ch = fmt == DRT_PIXEL_GRAY ? 1 : (fmt == DRT_PIXEL_BGRA || fmt == DRT_PIXEL_RGBA) ? 4 : 3;
    int x, y;
    unsigned char* out;
    *stride = img->width * ch + pad;
    out = (unsigned char*)malloc((size_t)*stride * img->height);
    memset(out, 0xCD, (size_t)*stride * img->height);
    for (y = 0; y < img->height; ++y) {
        for (x = 0; x < img->width; ++x) {
            const unsigned char* s = img->data + ((size_t)y * img->width + x) * img->channels;
            unsigned char* d = out + (size_t)y * *stride + (size_t)x * ch;
            if (ch == 1) { d[0] = s[0]; continue; }
            if (fmt == DRT_PIXEL_RGB || fmt == DRT_PIXEL_RGBA) { d[0] = s[0]; d[1] = s[1]; d[2] = s[2]; }
            else { d[0] = s[2]; d[1] = s[1]; d[2] = s[0]; }
            if (ch == 4) d[3] = (unsigned char)((x * 7 + y) & 255); /* alpha must be ignored */
        }
    }
    return out;
}

static drt_pixel_format parse_fmt(const char* s)
{
    if (strcmp(s, "rgb") == 0) return DRT_PIXEL_RGB;
    if (strcmp(s, "gray") == 0) return DRT_PIXEL_GRAY;
    if (strcmp(s, "bgra") == 0) return DRT_PIXEL_BGRA;
    if (strcmp(s, "rgba") == 0) return DRT_PIXEL_RGBA;
    return DRT_PIXEL_BGR;
}

static drt_detector* create_or_die(const char* model, int threads)
{
    drt_options opts;
    drt_detector* det = NULL;
    drt_status s;
    drt_options_init(&opts);
    opts.backend = "onnxruntime";
    opts.threads = threads;
    s = drt_detector_create(model, &opts, &det);
    if (s != DRT_OK) {
        printf("FATAL create %s: %s\n", drt_status_str(s), drt_last_error());
        exit(2);
    }
    return det;
}

/* ---- detect --------------------------------------------------------------------------------- */
static int cmd_detect(const char* model, const char* path, const char* fmt_name, int pad)
{
    image img;
    drt_pixel_format fmt = parse_fmt(fmt_name);
    int stride, count = 0, i, n;
    unsigned char* pixels;
    drt_detection dets[1024];
    drt_detector* det;
    drt_status s;
    const char* name;

    if (!read_pnm(path, &img)) { printf("FATAL cannot read %s\n", path); return 2; }
    if ((fmt == DRT_PIXEL_GRAY) != (img.channels == 1)) { printf("FATAL gray needs a P5 image\n"); return 2; }
    pixels = convert(&img, fmt, pad, &stride);
    det = create_or_die(model, 1);
    s = drt_detect(det, pixels, img.width, img.height, pad ? stride : 0, fmt, dets, 1024, &count);
    printf("STATUS %s\n", drt_status_str(s));
    if (s != DRT_OK) { printf("ERROR %s\n", drt_last_error()); return 1; }
    printf("COUNT %d\n", count);
    for (i = 0; i < count; ++i)
        printf("DET %.9g %.9g %.9g %.9g %.9g %d\n", dets[i].x1, dets[i].y1, dets[i].x2, dets[i].y2, dets[i].score,
               dets[i].class_id);
    drt_num_classes(det, &n);
    for (i = 0; i < n; ++i) {
        drt_class_name(det, i, &name);
        printf("NAME %d %s\n", i, name);
    }
    drt_detector_destroy(det);
    free(pixels);
    free(img.data);
    return 0;
}

/* ---- errors --------------------------------------------------------------------------------- */
static void result(const char* check, drt_status s, int count)
{
    printf("RESULT %s %s %d | %s\n", check, drt_status_str(s), count, drt_last_error());
}

/* the call runs first, then `after` is read (argument evaluation order is unspecified in C) */
#define CHECK(check, call, after)         \
    do {                                  \
        drt_status check_s_ = (call);     \
        result((check), check_s_, (after)); \
    } while (0)

static void* other_thread_error(void* arg)
{
    char* out = (char*)arg;
    drt_detector* det = (drt_detector*)1;
    /* a fresh thread starts with no error, and its failures do not touch other threads' text */
    sprintf(out, "%s", drt_last_error()[0] == '\0' ? "empty" : "not-empty");
    drt_detector_create("/nonexistent/other-thread.onnx", NULL, &det);
    return NULL;
}

static int cmd_errors(const char* model, const char* path, const char* bad_onnx, const char* plain_dir)
{
    image img;
    int stride, count, i, n, k, dummy_int = 0;
    unsigned char* pixels;
    drt_detection dets[256], sentinel;
    drt_detection full[256];
    drt_detector *det, *det2;
    drt_options opts;
    drt_status s;
    const char* name;
    pthread_t th;
    char thread_saw[32];

    if (!read_pnm(path, &img) || img.channels != 3) { printf("FATAL cannot read %s\n", path); return 2; }
    pixels = convert(&img, DRT_PIXEL_BGR, 0, &stride);

    printf("ABI %u %u VERSION %s\n", drt_abi_version(), (unsigned)DRT_ABI_VERSION, drt_version());
    printf("STATUS_STR %s %s\n", drt_status_str(DRT_E_DESTROYED), drt_status_str((drt_status)999));

    CHECK("options_null", drt_options_init(NULL), -1);
    CHECK("create_null_path", drt_detector_create(NULL, NULL, &det), det == NULL ? 0 : 1);
    CHECK("create_null_out", drt_detector_create(model, NULL, NULL), -1);
    det = (drt_detector*)1;
    s = drt_detector_create("/nonexistent/dir/model.onnx", NULL, &det);
    CHECK("create_bad_path", s, det == NULL ? 0 : 1);
    det = (drt_detector*)1;
    CHECK("create_unsupported_file", drt_detector_create(path, NULL, &det), det == NULL ? 0 : 1);
    CHECK("create_plain_dir", drt_detector_create(plain_dir, NULL, &det), det == NULL ? 0 : 1);
    CHECK("create_corrupt_onnx", drt_detector_create(bad_onnx, NULL, &det), det == NULL ? 0 : 1);
    CHECK("create_non_utf8_path", drt_detector_create("/tmp/\xff\xfe.onnx", NULL, &det), det == NULL ? 0 : 1);
    drt_options_init(&opts);
    opts.backend = "cuda-magic";
    CHECK("create_bad_backend", drt_detector_create(model, &opts, &det), det == NULL ? 0 : 1);
    drt_options_init(&opts);
    opts.conf = 1.5f;
    CHECK("create_bad_conf", drt_detector_create(model, &opts, &det), det == NULL ? 0 : 1);
    drt_options_init(&opts);
    opts.struct_size = 0;
    CHECK("create_struct_size_0", drt_detector_create(model, &opts, &det), det == NULL ? 0 : 1);

    /* a thread's error text is its own */
    drt_detector_create("/nonexistent/main-thread.onnx", NULL, &det);
    pthread_create(&th, NULL, other_thread_error, thread_saw);
    pthread_join(th, NULL);
    printf("THREAD_LOCAL %s | %s\n", thread_saw, drt_last_error());

    det = create_or_die(model, 1);
    printf("AFTER_SUCCESS [%s]\n", drt_last_error());
    s = drt_num_classes(det, &n);
    CHECK("num_classes", s, n);
    s = drt_class_name(det, 0, &name);
    printf("CLASS0 %s %s\n", drt_status_str(s), name ? name : "(null)");
    CHECK("class_name_too_big", drt_class_name(det, n, &name), name == NULL ? 0 : 1);
    CHECK("class_name_negative", drt_class_name(det, -1, &name), name == NULL ? 0 : 1);
    CHECK("class_name_null_out", drt_class_name(det, 0, NULL), -1);

    count = 77;
    CHECK("detect_null_handle", drt_detect(NULL, pixels, img.width, img.height, 0, DRT_PIXEL_BGR, dets, 256, &count), count);
    count = 77;
    CHECK("detect_null_pixels", drt_detect(det, NULL, img.width, img.height, 0, DRT_PIXEL_BGR, dets, 256, &count), count);
    CHECK("detect_null_count", drt_detect(det, pixels, img.width, img.height, 0, DRT_PIXEL_BGR, dets, 256, NULL), -1);
    CHECK("detect_null_out", drt_detect(det, pixels, img.width, img.height, 0, DRT_PIXEL_BGR, NULL, 5, &count), count);
    CHECK("detect_zero_width", drt_detect(det, pixels, 0, img.height, 0, DRT_PIXEL_BGR, dets, 256, &count), count);
    CHECK("detect_small_stride", drt_detect(det, pixels, img.width, img.height, img.width * 3 - 1, DRT_PIXEL_BGR, dets, 256, &count), count);
    CHECK("detect_bad_format", drt_detect(det, pixels, img.width, img.height, 0, (drt_pixel_format)42, dets, 256, &count), count);
    CHECK("detect_negative_capacity", drt_detect(det, pixels, img.width, img.height, 0, DRT_PIXEL_BGR, dets, -1, &count), count);

    /* capacity: full run, then too small (count = needed, only `capacity` written) */
    s = drt_detect(det, pixels, img.width, img.height, 0, DRT_PIXEL_BGR, full, 256, &n);
    CHECK("detect_full", s, n);
    s = drt_detect(det, pixels, img.width, img.height, 0, DRT_PIXEL_BGR, NULL, 0, &count);
    CHECK("detect_capacity_0", s, count);
    memset(dets, 0xAB, sizeof dets);
    memset(&sentinel, 0xAB, sizeof sentinel);
    k = n / 2; /* too small when n >= 1 */
    s = drt_detect(det, pixels, img.width, img.height, 0, DRT_PIXEL_BGR, dets, k, &count);
    CHECK("detect_capacity_half", s, count);
    printf("CAPACITY_K %d\n", k);
    printf("CAPACITY_PREFIX_MATCH %d\n", k >= 1 && memcmp(dets, full, (size_t)k * sizeof(drt_detection)) == 0);
    printf("CAPACITY_UNTOUCHED %d\n", memcmp(&dets[k], &sentinel, sizeof sentinel) == 0);
    s = drt_detect(det, pixels, img.width, img.height, 0, DRT_PIXEL_BGR, dets, n, &count);
    CHECK("detect_capacity_exact", s, count);
    for (i = 1; i < n; ++i)
        if (full[i].score > full[i - 1].score) printf("NOT_SORTED %d\n", i);

    /* handles that are not ours: never dereferenced */
    CHECK("detect_foreign_handle", drt_detect((drt_detector*)&dummy_int, pixels, img.width, img.height, 0,
                                               DRT_PIXEL_BGR, dets, 256, &count), count);
    CHECK("num_classes_foreign_handle", drt_num_classes((drt_detector*)(pixels + 1), &n), n);
    CHECK("destroy_foreign_handle", drt_detector_destroy((drt_detector*)&dummy_int), -1);

    /* a second detector is unaffected by destroying the first */
    det2 = create_or_die(model, 1);
    CHECK("destroy", drt_detector_destroy(det), -1);
    count = 77;
    CHECK("detect_after_destroy", drt_detect(det, pixels, img.width, img.height, 0, DRT_PIXEL_BGR, dets, 256, &count), count);
    CHECK("num_classes_after_destroy", drt_num_classes(det, &n), n);
    CHECK("class_name_after_destroy", drt_class_name(det, 0, &name), name == NULL ? 0 : 1);
    CHECK("destroy_twice", drt_detector_destroy(det), -1);
    CHECK("destroy_null", drt_detector_destroy(NULL), -1);
    s = drt_detect(det2, pixels, img.width, img.height, 0, DRT_PIXEL_BGR, dets, 256, &count);
    CHECK("second_detector_still_works", s, count);
    drt_detector_destroy(det2);
    free(pixels);
    free(img.data);
    printf("DONE\n");
    return 0;
}

/* ---- threads -------------------------------------------------------------------------------- */
typedef struct {
    const char* model;
    drt_detector* shared; /* the handle to use; NULL: create (and destroy) one in the thread */
    const unsigned char* pixels;
    int width, height, iters;
    const drt_detection* ref;
    int ref_count;
    int errors, mismatches, calls, destroyed;
    char first_error[512];
} worker;

static long rss_kb(void)
{
    char line[256];
    long kb = -1;
    FILE* f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = atol(line + 6);
    fclose(f);
    return kb;
}

static int same(const drt_detection* a, const drt_detection* b, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        float d = 0.0f, t;
        t = a[i].x1 - b[i].x1; d += t < 0 ? -t : t;
        t = a[i].y1 - b[i].y1; d += t < 0 ? -t : t;
        t = a[i].x2 - b[i].x2; d += t < 0 ? -t : t;
        t = a[i].y2 - b[i].y2; d += t < 0 ? -t : t;
        if (d > 1e-3f || a[i].class_id != b[i].class_id) return 0;
    }
    return 1;
}

static void* run_worker(void* arg)
{
    worker* w = (worker*)arg;
    drt_detection dets[512];
    drt_detector* det = w->shared;
    int i, count;
    if (det == NULL) {
        drt_options opts;
        drt_status s;
        drt_options_init(&opts);
        opts.threads = 1;
        s = drt_detector_create(w->model, &opts, &det);
        if (s != DRT_OK) {
            w->errors++;
            snprintf(w->first_error, sizeof w->first_error, "create: %s", drt_last_error());
            return NULL;
        }
    }
    for (i = 0; i < w->iters; ++i) {
        drt_status s = drt_detect(det, w->pixels, w->width, w->height, 0, DRT_PIXEL_BGR, dets, 512, &count);
        w->calls++;
        if (s == DRT_E_DESTROYED) { w->destroyed++; break; }
        if (s != DRT_OK) {
            if (w->errors++ == 0) snprintf(w->first_error, sizeof w->first_error, "%s", drt_last_error());
            continue;
        }
        if (w->ref != NULL && (count != w->ref_count || !same(dets, w->ref, count))) w->mismatches++;
    }
    if (w->shared == NULL) drt_detector_destroy(det);
    return NULL;
}

/* n own + n shared workers at once; returns the number of failed calls */
static int round_of(const char* model, drt_detector** own, drt_detector* shared, const image* img,
                    const unsigned char* pixels, const drt_detection* ref, int ref_count, int n, int iters,
                    int* mismatches, int* calls)
{
    worker w[64];
    pthread_t th[64];
    int i, errors = 0;
    memset(w, 0, sizeof w);
    for (i = 0; i < 2 * n; ++i) {
        w[i].model = model;
        w[i].shared = i < n ? own[i] : shared;
        w[i].pixels = pixels;
        w[i].width = img->width;
        w[i].height = img->height;
        w[i].iters = iters;
        w[i].ref = ref;
        w[i].ref_count = ref_count;
        pthread_create(&th[i], NULL, run_worker, &w[i]);
    }
    for (i = 0; i < 2 * n; ++i) {
        pthread_join(th[i], NULL);
        errors += w[i].errors;
        *mismatches += w[i].mismatches;
        *calls += w[i].calls;
        if (w[i].errors) printf("WORKER_ERROR %d %s\n", i, w[i].first_error);
    }
    return errors;
}

static int cmd_threads(const char* model, const char* path, int n, int iters, int rounds)
{
    image img;
    int stride, ref_count = 0, errors = 0, mismatches = 0, calls = 0, warm_calls = 0, r;
    unsigned char* pixels;
    drt_detection ref[512];
    drt_detector *shared, *own[32];
    struct timespec t0, t1;
    if (!read_pnm(path, &img) || img.channels != 3 || n > 32 || rounds < 1) { printf("FATAL bad arguments\n"); return 2; }
    pixels = convert(&img, DRT_PIXEL_BGR, 0, &stride);
    shared = create_or_die(model, 1);
    for (r = 0; r < n; ++r) own[r] = create_or_die(model, 1);
    if (drt_detect(shared, pixels, img.width, img.height, 0, DRT_PIXEL_BGR, ref, 512, &ref_count) != DRT_OK) {
        printf("FATAL reference detect: %s\n", drt_last_error());
        return 2;
    }
    printf("REF_COUNT %d\n", ref_count);
    /* warm-up: the same shape of work, so arenas and caches reach their steady size */
    errors += round_of(model, own, shared, &img, pixels, ref, ref_count, n, iters / 4 > 0 ? iters / 4 : 1,
                       &mismatches, &warm_calls);
    printf("RSS_WARM %ld\n", rss_kb());
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (r = 0; r < rounds; ++r) {
        errors += round_of(model, own, shared, &img, pixels, ref, ref_count, n, iters / rounds, &mismatches, &calls);
        printf("RSS_ROUND %d %ld\n", r, rss_kb());
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("RSS_END %ld\n", rss_kb());
    printf("CALLS %d\nERRORS %d\nMISMATCHES %d\n", calls, errors, mismatches);
    printf("SECONDS %.3f\n", (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    drt_detector_destroy(shared);
    for (r = 0; r < n; ++r) drt_detector_destroy(own[r]);
    free(pixels);
    free(img.data);
    return 0;
}

/* ---- create / destroy cycles ---------------------------------------------------------------- */
static int cmd_cycle(const char* model, const char* path, int cycles)
{
    image img;
    int stride, i, count, errors = 0;
    unsigned char* pixels;
    drt_detection dets[512];
    if (!read_pnm(path, &img) || img.channels != 3) { printf("FATAL cannot read %s\n", path); return 2; }
    pixels = convert(&img, DRT_PIXEL_BGR, 0, &stride);
    for (i = 0; i < 2 * cycles; ++i) {
        drt_detector* det = create_or_die(model, 1);
        if (drt_detect(det, pixels, img.width, img.height, 0, DRT_PIXEL_BGR, dets, 512, &count) != DRT_OK) errors++;
        if (drt_detector_destroy(det) != DRT_OK) errors++;
        if (i + 1 == cycles) printf("RSS_WARM %ld\n", rss_kb());
    }
    printf("RSS_END %ld\nERRORS %d\n", rss_kb(), errors);
    free(pixels);
    free(img.data);
    return 0;
}

/* ---- destroy while other threads detect ----------------------------------------------------- */
static int cmd_race(const char* model, const char* path)
{
    image img;
    int stride, i, calls = 0, destroyed = 0, errors = 0;
    unsigned char* pixels;
    worker w[4];
    pthread_t th[4];
    drt_detector* det;
    struct timespec ts = {0, 300 * 1000 * 1000};
    if (!read_pnm(path, &img) || img.channels != 3) { printf("FATAL cannot read %s\n", path); return 2; }
    pixels = convert(&img, DRT_PIXEL_BGR, 0, &stride);
    det = create_or_die(model, 1);
    memset(w, 0, sizeof w);
    for (i = 0; i < 4; ++i) {
        w[i].shared = det;
        w[i].pixels = pixels;
        w[i].width = img.width;
        w[i].height = img.height;
        w[i].iters = 1000000; /* until destroyed */
        pthread_create(&th[i], NULL, run_worker, &w[i]);
    }
    nanosleep(&ts, NULL);
    printf("DESTROY %s\n", drt_status_str(drt_detector_destroy(det)));
    for (i = 0; i < 4; ++i) {
        pthread_join(th[i], NULL);
        calls += w[i].calls;
        destroyed += w[i].destroyed;
        errors += w[i].errors;
        if (w[i].errors) printf("WORKER_ERROR %d %s\n", i, w[i].first_error);
    }
    printf("CALLS %d\nDESTROYED %d\nERRORS %d\n", calls, destroyed, errors);
    free(pixels);
    free(img.data);
    return 0;
}

/* ---- interpreter start / environment -------------------------------------------------------- */
static int cmd_init(const char* model)
{
    drt_detector* det = NULL;
    int n = 0;
    CHECK("init", drt_init(), -1);
    CHECK("init_again", drt_init(), -1);
    CHECK("create", drt_detector_create(model, NULL, &det), det == NULL ? 0 : 1);
    if (det != NULL) {
        CHECK("num_classes", drt_num_classes(det, &n), n);
        drt_detector_destroy(det);
    }
    return 0;
}

int main(int argc, char** argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if ((drt_abi_version() >> 16) != DRT_ABI_VERSION_MAJOR) {
        printf("FATAL ABI mismatch\n");
        return 3;
    }
    if (argc == 6 && strcmp(argv[1], "detect") == 0) return cmd_detect(argv[2], argv[3], argv[4], atoi(argv[5]));
    if (argc == 6 && strcmp(argv[1], "errors") == 0) return cmd_errors(argv[2], argv[3], argv[4], argv[5]);
    if (argc == 7 && strcmp(argv[1], "threads") == 0)
        return cmd_threads(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
    if (argc == 5 && strcmp(argv[1], "cycle") == 0) return cmd_cycle(argv[2], argv[3], atoi(argv[4]));
    if (argc == 4 && strcmp(argv[1], "race") == 0) return cmd_race(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "init") == 0) return cmd_init(argv[2]);
    fprintf(stderr, "usage: see the comment at the top of test_capi.c\n");
    return 64;
}
