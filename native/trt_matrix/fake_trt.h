// What the fake TensorRT / CUDA runtime (fake_trt.cpp) lets a test observe.
#pragma once
#include <vector>

struct FakeCounters {
  int enqueues = 0;            // enqueueV2 / enqueueV3 calls, captured ones included
  int graph_launches = 0;      // cudaGraphLaunch calls
  int kernel_launches = 0;     // letterbox_launch calls
  int image_uploads = 0;       // cudaMemcpy2DAsync calls (host images copied to the "device")
  int device_allocations = 0;  // cudaMalloc calls
};

FakeCounters& fake_counters();
// The input of the last enqueue that ran (float32 values, float16 inputs converted), batch-major.
const std::vector<float>& fake_last_input();
