/* Model-free checks of the C ABI, compiled as C (ctest; the full C tests with models run from pytest). */
#include <stdio.h>
#include <string.h>

#include "defectrt.h"

static int failures = 0;
#define EXPECT(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); ++failures; } } while (0)

int main(void) {
    drt_options o;
    drt_detector* det = (drt_detector*)1;
    drt_detection d[4];
    unsigned char px[12] = {0};
    int count = 7, dummy = 0;
    EXPECT((drt_abi_version() >> 16) == DRT_ABI_VERSION_MAJOR);
    EXPECT(strcmp(drt_status_str(DRT_E_NOT_FOUND), "DRT_E_NOT_FOUND") == 0);
    EXPECT(drt_options_init(&o) == DRT_OK && o.conf < 0 && o.max_det == 0 && strcmp(o.backend, "auto") == 0);
    EXPECT(drt_options_init(NULL) == DRT_E_NULL_POINTER);
    EXPECT(drt_detector_create("/nonexistent/model.onnx", NULL, &det) == DRT_E_NOT_FOUND && det == NULL);
    EXPECT(strstr(drt_last_error(), "/nonexistent/model.onnx: no such file") != NULL);
    EXPECT(drt_detector_create("/tmp/\xff\xfe.onnx", NULL, &det) == DRT_E_INVALID_ARGUMENT);
    EXPECT(drt_detector_create("demo:screw", NULL, &det) == DRT_E_NOT_FOUND);
    o.conf = 2.0f;
    EXPECT(drt_detector_create("/tmp", &o, &det) == DRT_E_INVALID_ARGUMENT);
    EXPECT(drt_detector_create("/tmp", NULL, &det) == DRT_E_UNSUPPORTED_FORMAT);
    EXPECT(drt_detect(NULL, px, 2, 2, 0, DRT_PIXEL_BGR, d, 4, &count) == DRT_E_NULL_POINTER && count == 0);
    EXPECT(drt_detect((drt_detector*)&dummy, px, 2, 2, 0, DRT_PIXEL_BGR, d, 4, &count) == DRT_E_INVALID_HANDLE);
    EXPECT(drt_detector_destroy(NULL) == DRT_OK && drt_last_error()[0] == '\0');
    EXPECT(drt_init() == DRT_OK);
    printf("%s\n", failures ? "FAIL" : "PASS");
    return failures ? 1 : 0;
}
