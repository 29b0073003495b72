/*
 * detect_image.c - run a defectrt detector on one image from plain C.
 *
 * Build the library first (python -m defectrt.capi.build -o build/capi), then:
 *   Linux:   cc -I build/capi examples/c/detect_image.c -L build/capi -ldefectrt -Wl,-rpath,build/capi -o detect_image
 *            (or: make -C examples/c)
 *   Windows: cl /I build\capi examples\c\detect_image.c build\capi\defectrt.lib
 *            (defectrt.dll next to detect_image.exe, or on PATH)
 * Run:
 *   ./detect_image model.onnx part.ppm [conf]
 *
 * The image must be a binary PPM (P6, 8 bits) so that this example needs no image library. Convert
 * with ImageMagick `magick part.jpg part.ppm`, `python -c "import cv2; cv2.imwrite('part.ppm',
 * cv2.imread('part.jpg'))"`, or GIMP (export as PPM, raw). A real application passes the pixels of
 * its camera frame or bitmap directly (see drt_detect's stride and pixel-format arguments).
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defectrt.h"

/* Skip white space and '#' comments of a PNM header; returns the next character. */
static int pnm_skip(FILE* f)
{
    int c = fgetc(f);
    while (c == '#' || c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        if (c == '#')
            while (c != '\n' && c != EOF) c = fgetc(f);
        c = fgetc(f);
    }
    return c;
}

static int pnm_int(FILE* f)
{
    int c = pnm_skip(f), v = 0;
    if (c < '0' || c > '9') return -1;
    while (c >= '0' && c <= '9') {
        v = v * 10 + (c - '0');
        c = fgetc(f);
    }
    return v; /* the single white-space character after the number is consumed */
}

/* Read a binary PPM (P6, maxval 255) into a malloc'd RGB buffer. */
static unsigned char* read_ppm(const char* path, int* width, int* height)
{
    unsigned char* rgb;
    size_t size;
    FILE* f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: cannot open\n", path);
        return NULL;
    }
    if (fgetc(f) != 'P' || fgetc(f) != '6') {
        fprintf(stderr, "%s: not a binary PPM (P6); convert it, e.g. `magick image.jpg image.ppm`\n", path);
        fclose(f);
        return NULL;
    }
    *width = pnm_int(f);
    *height = pnm_int(f);
    if (*width <= 0 || *height <= 0 || pnm_int(f) != 255) {
        fprintf(stderr, "%s: unsupported PPM header (8-bit P6 expected)\n", path);
        fclose(f);
        return NULL;
    }
    size = (size_t)*width * (size_t)*height * 3;
    rgb = (unsigned char*)malloc(size);
    if (rgb == NULL || fread(rgb, 1, size, f) != size) {
        fprintf(stderr, "%s: truncated pixel data\n", path);
        free(rgb);
        fclose(f);
        return NULL;
    }
    fclose(f);
    return rgb;
}

int main(int argc, char** argv)
{
    drt_options opts;
    drt_detector* det = NULL;
    drt_detection* dets;
    drt_status status;
    unsigned char* rgb;
    int width, height, count = 0, capacity = 64, i;

    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL(.onnx|.engine|bundle dir) IMAGE.ppm [conf]\n", argv[0]);
        return 2;
    }
    if ((drt_abi_version() >> 16) != DRT_ABI_VERSION_MAJOR) {
        fprintf(stderr, "libdefectrt has ABI %u.%u, this program was built for %d.%d\n", drt_abi_version() >> 16,
                drt_abi_version() & 0xFFFFu, DRT_ABI_VERSION_MAJOR, DRT_ABI_VERSION_MINOR);
        return 1;
    }
    rgb = read_ppm(argv[2], &width, &height);
    if (rgb == NULL) return 1;

    drt_options_init(&opts);
    if (argc > 3) opts.conf = (float)atof(argv[3]);
    status = drt_detector_create(argv[1], &opts, &det);
    if (status != DRT_OK) {
        fprintf(stderr, "cannot load %s: %s: %s\n", argv[1], drt_status_str(status), drt_last_error());
        free(rgb);
        return 1;
    }

    /* PPM pixels are RGB; the detector takes the layout as an argument (no conversion needed). */
    dets = (drt_detection*)malloc(sizeof(drt_detection) * (size_t)capacity);
    status = drt_detect(det, rgb, width, height, 0, DRT_PIXEL_RGB, dets, capacity, &count);
    if (status == DRT_E_CAPACITY_TOO_SMALL) { /* count says how many there are: grow and run again */
        capacity = count;
        dets = (drt_detection*)realloc(dets, sizeof(drt_detection) * (size_t)capacity);
        status = drt_detect(det, rgb, width, height, 0, DRT_PIXEL_RGB, dets, capacity, &count);
    }
    if (status != DRT_OK) {
        fprintf(stderr, "detection failed: %s: %s\n", drt_status_str(status), drt_last_error());
    } else {
        printf("%d detection(s) in %s (%dx%d), defectrt %s\n", count, argv[2], width, height, drt_version());
        for (i = 0; i < count; ++i) {
            const char* name = "?";
            drt_class_name(det, dets[i].class_id, &name); /* library-owned, valid until destroy */
            printf("%-12s %.3f  x1=%.1f y1=%.1f x2=%.1f y2=%.1f\n", name, dets[i].score, dets[i].x1, dets[i].y1,
                   dets[i].x2, dets[i].y2);
        }
    }
    drt_detector_destroy(det);
    free(dets);
    free(rgb);
    return status == DRT_OK ? 0 : 1;
}
