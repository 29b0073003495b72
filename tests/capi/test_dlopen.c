/*
 * test_dlopen.c - load libdefectrt the way .NET P/Invoke, LabVIEW and plugin hosts do: dlopen() with
 * RTLD_LOCAL at run time, no link-time dependency. libpython's symbols are then not global, which
 * breaks numpy's import unless the library promotes libpython itself (see start_interpreter()).
 *
 *   gcc -I src/defectrt/capi tests/capi/test_dlopen.c -ldl -o test_dlopen
 *   ./test_dlopen LIB MODEL IMAGE.ppm      prints STATUS / COUNT / DET lines like test_capi detect
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defectrt.h"

/* next header number of a PNM file, skipping white space and # comments */
static int pnm_int(FILE* f)
{
    int c = fgetc(f), v = -1;
    while (c == '#' || c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        if (c == '#')
            while (c != '\n' && c != EOF) c = fgetc(f);
        c = fgetc(f);
    }
    while (c >= '0' && c <= '9') {
        v = (v < 0 ? 0 : v * 10) + (c - '0');
        c = fgetc(f);
    }
    return v;
}

typedef drt_status (*create_fn)(const char*, const drt_options*, drt_detector**);
typedef drt_status (*detect_fn)(drt_detector*, const uint8_t*, int, int, int, drt_pixel_format, drt_detection*,
                                int, int*);
typedef drt_status (*destroy_fn)(drt_detector*);
typedef const char* (*last_error_fn)(void);
typedef drt_status (*options_init_fn)(drt_options*);

int main(int argc, char** argv)
{
    void* lib;
    create_fn create;
    detect_fn detect;
    destroy_fn destroy;
    last_error_fn last_error;
    options_init_fn options_init;
    drt_options opts;
    drt_detector* det = NULL;
    drt_detection dets[1024];
    drt_status s;
    FILE* f;
    char magic[3];
    int w, h, maxval, i, count = 0;
    unsigned char *rgb, *bgr;

    if (argc != 4) {
        fprintf(stderr, "usage: test_dlopen LIB MODEL IMAGE.ppm\n");
        return 64;
    }
    lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        printf("FATAL dlopen: %s\n", dlerror());
        return 2;
    }
    *(void**)&create = dlsym(lib, "drt_detector_create");
    *(void**)&detect = dlsym(lib, "drt_detect");
    *(void**)&destroy = dlsym(lib, "drt_detector_destroy");
    *(void**)&last_error = dlsym(lib, "drt_last_error");
    *(void**)&options_init = dlsym(lib, "drt_options_init");
    if (!create || !detect || !destroy || !last_error || !options_init) {
        printf("FATAL dlsym: %s\n", dlerror());
        return 2;
    }
    /* hidden symbols stay hidden: only the API is exported */
    printf("HIDDEN %d\n", dlsym(lib, "ensure_python") == NULL && dlsym(lib, "g_chunks") == NULL);

    f = fopen(argv[3], "rb");
    if (f == NULL || fread(magic, 1, 2, f) != 2 || magic[0] != 'P' || magic[1] != '6') {
        printf("FATAL cannot read %s (binary PPM P6 expected)\n", argv[3]);
        return 2;
    }
    w = pnm_int(f);
    h = pnm_int(f);
    maxval = pnm_int(f);
    if (w <= 0 || h <= 0 || maxval != 255) {
        printf("FATAL bad PPM header in %s\n", argv[3]);
        return 2;
    }
    rgb = (unsigned char*)malloc((size_t)w * h * 3);
    bgr = (unsigned char*)malloc((size_t)w * h * 3);
    if (fread(rgb, 1, (size_t)w * h * 3, f) != (size_t)w * h * 3) {
        printf("FATAL short read\n");
        return 2;
    }
    fclose(f);
    for (i = 0; i < w * h; ++i) {
        bgr[3 * i] = rgb[3 * i + 2];
        bgr[3 * i + 1] = rgb[3 * i + 1];
        bgr[3 * i + 2] = rgb[3 * i];
    }

    options_init(&opts);
    opts.threads = 1;
    s = create(argv[2], &opts, &det);
    if (s != DRT_OK) {
        printf("STATUS %d\nERROR %s\n", (int)s, last_error());
        return 1;
    }
    s = detect(det, bgr, w, h, 0, DRT_PIXEL_BGR, dets, 1024, &count);
    printf("STATUS %d\n", (int)s);
    if (s != DRT_OK) {
        printf("ERROR %s\n", last_error());
        return 1;
    }
    printf("COUNT %d\n", count);
    for (i = 0; i < count; ++i)
        printf("DET %.9g %.9g %.9g %.9g %.9g %d\n", dets[i].x1, dets[i].y1, dets[i].x2, dets[i].y2, dets[i].score,
               dets[i].class_id);
    destroy(det);
    free(rgb);
    free(bgr);
    return 0;
}
