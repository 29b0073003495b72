// Optional second interface of a backend that can pre-process images itself (the TensorRT backend, on the GPU). The core
// asks for it with dynamic_cast<drt::ImageInput*>(backend) and, when present, hands it the caller's images instead of
// letterboxing them on the CPU and calling Backend::infer. A backend without it needs nothing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend.h"
#include "letterbox_math.h"

namespace drt {

// One caller image: rows of `width` pixels of `format`, `stride` bytes apart, in host memory or (on_device) in the
// backend's GPU memory.
struct InputImage {
  const uint8_t* data = nullptr;
  int width = 0;
  int height = 0;
  size_t stride = 0;
  lb::PixelFormat format = lb::BGR8;
  bool on_device = false;
};

class ImageInput {
 public:
  virtual ~ImageInput() = default;
  // Letterboxes images[0 .. count) into a (max(count, min_batch()), 3, dst_h, dst_w) model input exactly as the CPU
  // path would (drt::lb::sample, RGB, x / 255; the images of a fixed batch beyond `count` are zeros) and runs the model
  // on that batch; count may be 1 .. max_batch(). `geometry` receives each image's letterbox
  // (lb::geometry(width, height, dst_w, dst_h)), for mapping boxes back; `out` as in Backend::infer.
  // Throws drt::Error (InvalidArgument for a bad image or a batch outside [min_batch, max_batch]).
  virtual void infer_images(const InputImage* images, int count, int dst_w, int dst_h,
                            std::vector<lb::Geometry>& geometry, std::vector<HostTensor>& out) = 0;
};

}  // namespace drt
